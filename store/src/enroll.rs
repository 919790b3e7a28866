//! Enrollment tokens: the part of the store behind `backwatch-collector enroll`,
//! `POST /api/v1/enrollments` and the enrollment listener.
//!
//! Invariants every backend keeps (and `suite_enroll` proves for both):
//! - only the SHA-256 of a token is stored, never the token;
//! - a token is used at most once: [`EnrollStore::use_enrollment`] is one conditional UPDATE
//!   (unused and not expired at `now`), so two agents racing with the same token get one
//!   certificate between them;
//! - a used or expired token stays readable, so a refusal can say why;
//! - every certificate the enrollment listener hands out is recorded first (an enrollment's
//!   in the same transaction that uses the token), with the certificate that authenticated
//!   its renewal: supersession and deny lineage (the collector's `enroll::standing`) read
//!   them;
//! - `first_used_at` is set once, by the first ingest stream of the certificate, and never
//!   moved ([`EnrollStore::mark_certificate_used`]): only a used certificate supersedes or
//!   blocks a renewal, so one whose reply was lost harms nobody.

use super::StoreResult;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollment {
    /// SHA-256 of the token, lowercase hex.
    pub token_sha256: String,
    pub host: String,
    /// Who asked for it: `cli` or the API caller's name.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub host: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of the certificate issued with the token, once used.
    pub cert_fingerprint: Option<String>,
}

#[async_trait::async_trait]
pub trait EnrollStore: Send + Sync {
    async fn add_enrollment(&self, e: &NewEnrollment) -> StoreResult<()>;

    /// The token with this SHA-256, used or not, expired or not.
    async fn enrollment(&self, token_sha256: &str) -> StoreResult<Option<Enrollment>>;

    /// Mark the token used at `now` with the certificate issued for it, only when it is
    /// unused and `now` is before its expiry, and record that certificate in the same
    /// transaction. True when this call used it (and recorded the certificate); false
    /// records nothing, so a certificate never handed out supersedes nothing.
    async fn use_enrollment(
        &self,
        token_sha256: &str,
        now: DateTime<Utc>,
        cert: &IssuedCertificate,
    ) -> StoreResult<bool>;

    /// Record a certificate issued by renewal (before it is handed out).
    async fn record_certificate(&self, cert: &IssuedCertificate) -> StoreResult<()>;

    /// Every certificate recorded for `host`, oldest first.
    async fn certificates(&self, host: &str) -> StoreResult<Vec<IssuedCertificate>>;

    /// The fingerprints `fingerprint` was renewed from, nearest first, following
    /// `renewed_from` at most `max` steps. The last one may be a certificate that is not
    /// recorded itself (made by the deploy/ script, or before certificates were recorded).
    async fn renewed_from(&self, fingerprint: &str, max: u32) -> StoreResult<Vec<String>>;

    /// Record that `fingerprint` opened an ingest stream at `at`, unless it already did (the
    /// first time stays). True when this call set it; false for a certificate already used
    /// or not recorded (deploy/ script).
    async fn mark_certificate_used(
        &self,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// A certificate renewed from `fingerprint` that was used (opened a stream), the
    /// earliest used first; renewals never used do not count.
    async fn used_renewal(&self, fingerprint: &str) -> StoreResult<Option<IssuedCertificate>>;

    /// The newest certificate of `host` other than `fingerprint` that was issued after
    /// `fingerprint`'s own issue (its recorded `issued_at`, or `not_before` when it is not
    /// recorded) and first used at or before `until`. Never used: supersedes nothing.
    async fn superseding(
        &self,
        host: &str,
        fingerprint: &str,
        not_before: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<IssuedCertificate>>;
}

/// A certificate signed by the enrollment listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// SHA-256 of the DER, lowercase hex (as `grpc.deny_fingerprints` lists it).
    pub fingerprint: String,
    pub host: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Fingerprint of the certificate that authenticated the renewal; `None` for an
    /// enrollment.
    pub renewed_from: Option<String>,
    /// When it first opened an ingest stream; `None` until then (the listener records
    /// certificates unused; ingest sets it through [`EnrollStore::mark_certificate_used`]).
    pub first_used_at: Option<DateTime<Utc>>,
}
