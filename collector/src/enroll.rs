//! Enrollment of new hosts and renewal of agent certificates.
//!
//! Flow: `backwatch-collector enroll --host db42` (or `POST /api/v1/enrollments` with role
//! `admin`) stores the SHA-256 of a fresh random token for `db42` with an expiry and prints the
//! token once. On db42, `backwatch-agent enroll` makes a key pair that never leaves the host and
//! sends a certificate request with the token to the enrollment listener (`[enroll] listen`);
//! the collector signs a certificate for the host *of the token* with the fleet CA. Later the
//! agent renews on the same listener, authenticated by its current certificate.
//!
//! Why a listener of its own: the ingest listener demands a client certificate during the
//! handshake, and a host being enrolled has none. Making the certificate optional there would
//! turn "strangers are refused at the handshake" into a per-RPC check on the listener every
//! agent streams to. The enrollment listener is TLS 1.3 with the collector's certificate (the
//! agent pins the fleet CA given on its command line), and asks for a client certificate
//! without requiring one: `Enroll` needs a token, `Renew` a certificate of the fleet CA.
//!
//! Invariants:
//! - the certificate names exactly the token's host (or, for renewal, the host of the
//!   presenting certificate); a request naming anything else is refused, never rewritten;
//! - a token is used at most once (one conditional UPDATE), only before its expiry, and is
//!   stored only as its SHA-256; tokens never reach logs, errors or the API after creation;
//! - hosts and certificates denied in `[grpc]` (`deny_hosts`, `deny_fingerprints`) can
//!   neither enroll nor renew, nor can a certificate renewed from a denied one;
//! - every certificate handed out is recorded first (host, serial, fingerprint, validity,
//!   what it was renewed from); renewal opens only near expiry, and a certificate replaced
//!   by a newer one for its host stops working after `supersede_grace` (see `standing`).

mod service;
mod signer;
pub mod standing;

pub use service::spawn;
pub use signer::{Issued, Refusal, Signer};

use crate::config::enroll::check_ttl;
use crate::store::Store;
use crate::store::enroll::NewEnrollment;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Token prefix: makes a leaked token recognisable to secret scanners and people.
pub const TOKEN_PREFIX: &str = "bwe_";

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0:?} is not a valid host name (letters, digits, '-', '.', '_')")]
    BadHost(String),
    #[error("token validity {0}")]
    BadTtl(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("generating a token: no randomness available")]
    Random,
    #[error("{path}: {problem}")]
    Ca { path: String, problem: String },
}

/// A token just issued: the only time its value exists outside the agent.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub host: String,
    pub expires_at: DateTime<Utc>,
}

/// SHA-256 of a token, lowercase hex: what the store keeps.
pub fn token_digest(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes()).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_token() -> Result<String, EnrollError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EnrollError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// Store a new one-time token for `host`, valid for `ttl` from `now`.
pub async fn issue_token(
    store: &dyn Store,
    host: &str,
    ttl: Duration,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<NewToken, EnrollError> {
    if !crate::tls::valid_host(host) {
        return Err(EnrollError::BadHost(host.chars().take(80).collect()));
    }
    check_ttl(ttl).map_err(EnrollError::BadTtl)?;
    let token = new_token()?;
    let expires_at = now
        + chrono::Duration::from_std(ttl).map_err(|_| EnrollError::BadTtl("is too long".into()))?;
    store
        .add_enrollment(&NewEnrollment {
            token_sha256: token_digest(&token),
            host: host.to_string(),
            created_by: created_by.to_string(),
            created_at: now,
            expires_at,
        })
        .await?;
    tracing::info!(host = %host, by = %created_by, expires_at = %expires_at, "enrollment token issued");
    Ok(NewToken {
        token,
        host: host.to_string(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::enroll::EnrollStore;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_digest(&a).len(), 64);
        assert_eq!(token_digest(&a), token_digest(&format!(" {a}\n")));
        assert_ne!(token_digest(&a), token_digest(&b));
    }

    #[tokio::test]
    async fn a_token_is_stored_only_as_its_digest() {
        let store = crate::store::SqlStore::open("sqlite::memory:")
            .await
            .unwrap();
        let now = Utc::now();
        let t = issue_token(&store, "db42", Duration::from_secs(60), "cli", now)
            .await
            .unwrap();
        let e = store
            .enrollment(&token_digest(&t.token))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.host, "db42");
        assert!(store.enrollment(&t.token).await.unwrap().is_none());
        assert!(matches!(
            issue_token(&store, "db 42", Duration::from_secs(60), "cli", now).await,
            Err(EnrollError::BadHost(_))
        ));
        assert!(matches!(
            issue_token(&store, "db42", Duration::from_secs(8 * 86_400), "cli", now).await,
            Err(EnrollError::BadTtl(_))
        ));
    }
}
