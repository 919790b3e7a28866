//! Enrollment tokens: the part of the store behind `backwatch-collector enroll`,
//! `POST /api/v1/enrollments` and the enrollment listener.
//!
//! Invariants every backend keeps (and `suite_enroll` proves for both):
//! - only the SHA-256 of a token is stored, never the token;
//! - a token is used at most once: [`EnrollStore::use_enrollment`] is one conditional UPDATE
//!   (unused and not expired at `now`), so two agents racing with the same token get one
//!   certificate between them;
//! - a used or expired token stays readable, so a refusal can say why.

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
    /// unused and `now` is before its expiry. True when this call used it.
    async fn use_enrollment(
        &self,
        token_sha256: &str,
        now: DateTime<Utc>,
        cert_fingerprint: &str,
    ) -> StoreResult<bool>;
}
