//! Whether a fleet certificate still stands, beyond chaining to the fleet CA and the deny
//! lists of `[grpc]`: asked by the ingest listener for every stream and by `Renew`.
//!
//! - Superseded: once a newer certificate for the same host first opened an ingest stream
//!   more than `enroll.supersede_grace` ago, the older one is refused. Counting from first
//!   use, not issue: a renewal whose reply never reached the agent (connection dropped, disk
//!   full) is never used, so the agent keeps its old certificate and renews again. The grace
//!   lets the agent's other streams move over; after it, a copy of the old key is worth
//!   nothing. A certificate the collector did not issue (deploy/ script) counts as issued at
//!   its `not_before`, so it works until a newer one is used.
//! - One live lineage: `Renew` is refused to a certificate that already has a used renewal,
//!   even within the grace, so a stolen key cannot renew a second time beside the agent and
//!   supersede the agent's own renewal. A renewal never used does not block (lost reply).
//! - Deny lineage: a certificate renewed from a denied one is denied, however many renewals
//!   ago (up to [`MAX_LINEAGE`]), so a stolen key cannot renew itself out of a deny.
//! - Renewal window: `Renew` signs only in the last third of the presented certificate's
//!   validity (or `enroll.renew_window` before its expiry), so a stolen key cannot keep
//!   renewing itself ahead of the agent.

use crate::store::Store;
use crate::store::StoreResult;
use crate::store::enroll::IssuedCertificate;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Renewals followed back when looking for a denied ancestor: at the default 30-day validity
/// that is decades; with minute-long test certificates, half a day.
pub const MAX_LINEAGE: u32 = 1_000;

/// The certificate a client presented, as the listener read it.
pub struct Presented<'a> {
    pub host: &'a str,
    pub fingerprint: &'a str,
    pub not_before: DateTime<Utc>,
}

/// The newer certificate that replaced `p`, when it first opened a stream at least `grace`
/// before `now`.
pub async fn superseded(
    store: &dyn Store,
    p: &Presented<'_>,
    now: DateTime<Utc>,
    grace: Duration,
) -> StoreResult<Option<IssuedCertificate>> {
    let until = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|g| now.checked_sub_signed(g))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    store
        .superseding(p.host, p.fingerprint, p.not_before, until)
        .await
}

/// The fingerprints `fingerprint` was renewed from, nearest first (it never changes for a
/// certificate, so a stream reads it once).
pub async fn renewed_from(store: &dyn Store, fingerprint: &str) -> StoreResult<Vec<String>> {
    store.renewed_from(fingerprint, MAX_LINEAGE).await
}

/// A renewal of `fingerprint` that already opened a stream: `Renew` from `fingerprint` is
/// refused then (see the module comment).
pub async fn used_renewal(
    store: &dyn Store,
    fingerprint: &str,
) -> StoreResult<Option<IssuedCertificate>> {
    store.used_renewal(fingerprint).await
}

/// When renewal of a certificate valid from `not_before` to `not_after` opens: `window`
/// before its expiry, else when a third of its validity is left (when agents renew).
pub fn renewal_opens(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    window: Option<Duration>,
) -> DateTime<Utc> {
    match window.and_then(|w| chrono::Duration::from_std(w).ok()) {
        Some(w) => not_after.checked_sub_signed(w).unwrap_or(not_before),
        None => not_after - (not_after - not_before) / 3,
    }
}

/// The refusal message for a superseded certificate (the agent shows it).
pub fn superseded_message(host: &str, by: &IssuedCertificate) -> String {
    format!(
        "this certificate of {host} was replaced by a newer one (serial {}, issued {}); \
         use the newest certificate, or enroll {host} again with a new token",
        by.serial,
        by.issued_at.to_rfc3339()
    )
}

/// The refusal message for a renewal by a certificate whose renewal is already in use.
pub fn renewed_message(host: &str, child: &IssuedCertificate) -> String {
    let used = child
        .first_used_at
        .map_or_else(String::new, |t| format!(" since {}", t.to_rfc3339()));
    format!(
        "this certificate of {host} was already renewed (serial {}, issued {}) and the renewal \
         is in use{used}; it cannot be renewed again: use the newest certificate, or enroll \
         {host} again with a new token",
        child.serial,
        child.issued_at.to_rfc3339()
    )
}

/// The refusal message for a certificate renewed from a denied one.
pub fn lineage_message(host: &str) -> String {
    format!(
        "agent {host} is denied by the collector's configuration \
         (its certificate was renewed from a denied certificate)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn renewal_opens_with_a_third_left_by_default() {
        let day = 86_400;
        assert_eq!(renewal_opens(t(0), t(30 * day), None), t(20 * day));
        // A certificate of the deploy/ script valid for a year: opens four months early.
        assert_eq!(renewal_opens(t(0), t(360 * day), None), t(240 * day));
    }

    #[test]
    fn a_configured_window_counts_back_from_expiry() {
        let day = 86_400;
        let w = |d: u64| Some(Duration::from_secs(d * 86_400));
        assert_eq!(renewal_opens(t(0), t(30 * day), w(10)), t(20 * day));
        assert_eq!(renewal_opens(t(0), t(30 * day), w(2)), t(28 * day));
        // Wider than the validity: open from the start.
        assert!(renewal_opens(t(0), t(30 * day), w(60)) <= t(0));
    }
}
