//! `[enroll]`: enrollment of new hosts and renewal of agent certificates, validated into
//! [`Enroll`]. Without the section enrollment is off: no listener, no tokens.
//!
//! Invariants:
//! - the CA key is a file only its owner may read (a group- or world-readable CA key is
//!   refused): whoever reads it can mint any agent identity;
//! - the CA certificate and key must belong together, checked at load time, not at the first
//!   enrollment.

use backwatch_common::config::{Problems, de_opt_duration};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:7444";
/// Validity of an issued agent certificate; agents renew when a third of it is left.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// Validity of an enrollment token when the caller does not say.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest a token may be valid: a token is a credential lying around until used.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 86_400);
/// How long a certificate keeps working after a newer one for its host was issued: the
/// agent that renewed reconnects with the new one within seconds; a thief's copy of the old
/// one stops working.
pub const DEFAULT_SUPERSEDE_GRACE: Duration = Duration::from_secs(600);
/// Longest grace accepted: beyond a day, renewal no longer shuts out a copied key in practice.
pub const MAX_SUPERSEDE_GRACE: Duration = Duration::from_secs(86_400);
/// Shortest certificate validity accepted (short ones are for trying renewal out).
pub const MIN_CERT_VALIDITY: Duration = Duration::from_secs(60);
/// Longest certificate validity accepted: 397 days, the CA/Browser Forum limit. A stolen agent
/// key works until its certificate expires (renewal supersedes it only if the real agent
/// renews), so an unbounded validity would make a copied key a lasting credential.
pub const MAX_CERT_VALIDITY: Duration = Duration::from_secs(397 * 86_400);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEnroll {
    /// Enrollment listener: TLS 1.3 with the collector certificate, client certificate
    /// optional (default "0.0.0.0:7444").
    pub listen: Option<String>,
    /// The fleet CA certificate that signs (default: `grpc.ca`).
    pub ca_cert: Option<PathBuf>,
    /// The fleet CA's private key (required; mode 600).
    pub ca_key: Option<PathBuf>,
    /// Validity of issued agent certificates (default "30d").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub cert_validity: Option<Duration>,
    /// Validity of a token when `enroll --ttl` / `ttl_secs` is not given (default "1h").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub token_ttl: Option<Duration>,
    /// How long before its expiry a certificate may be renewed (default: the last third of
    /// its validity, when agents renew).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub renew_window: Option<Duration>,
    /// How long a certificate keeps working after a newer one for the same host first opened
    /// a stream (default "10m").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub supersede_grace: Option<Duration>,
    /// Connections open at once (default 256).
    pub max_connections: Option<usize>,
    /// TLS handshakes in progress at once (default 64).
    pub max_handshakes: Option<usize>,
    /// A connection whose peer sends nothing for this long is closed (default "30s").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Every connection is closed after this long, busy or not (default "2m").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_connection_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enroll {
    pub listen: SocketAddr,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert_validity: Duration,
    pub token_ttl: Duration,
    /// `None`: the last third of the presented certificate's validity.
    pub renew_window: Option<Duration>,
    pub supersede_grace: Duration,
    pub limits: crate::listen::Limits,
    pub idle_timeout: Duration,
    pub max_connection_age: Duration,
}

pub const DEFAULT_LIMITS: crate::listen::Limits = crate::listen::Limits {
    max_connections: 256,
    max_handshakes: 64,
};
/// An enrollment is one short call: a connection quiet this long is not making one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

pub fn validate(p: &mut Problems, raw: RawEnroll, base: &Path, grpc_ca: &Path) -> Enroll {
    let rel = |f: PathBuf| if f.is_relative() { base.join(f) } else { f };
    let text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = text.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.push(
            "enroll.listen",
            format!("{text:?} is not an address (example: \"{DEFAULT_LISTEN}\")"),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let ca_cert = raw.ca_cert.map_or_else(|| grpc_ca.to_path_buf(), rel);
    let ca_key = match raw.ca_key {
        Some(k) => rel(k),
        None => {
            p.push(
                "enroll.ca_key",
                "is required with [enroll]: the fleet CA's private key (ca-key.pem of \
                 `backwatch-collector certs`), mode 600",
            );
            PathBuf::new()
        }
    };
    let cert_validity = raw.cert_validity.unwrap_or(DEFAULT_CERT_VALIDITY);
    if let Err(e) = check_cert_validity(cert_validity) {
        p.push("enroll.cert_validity", e);
    }
    let token_ttl = raw.token_ttl.unwrap_or(DEFAULT_TOKEN_TTL);
    if let Err(e) = check_ttl(token_ttl) {
        p.push("enroll.token_ttl", e);
    }
    if raw.renew_window.is_some_and(|w| w.is_zero()) {
        p.push(
            "enroll.renew_window",
            "must be more than 0 (leave it out for the last third of the validity)",
        );
    }
    let supersede_grace = raw.supersede_grace.unwrap_or(DEFAULT_SUPERSEDE_GRACE);
    if supersede_grace > MAX_SUPERSEDE_GRACE {
        p.push(
            "enroll.supersede_grace",
            "must be at most 1d: the certificate a renewal replaced works that long",
        );
    }
    let limits = crate::config::limits(
        p,
        "enroll",
        raw.max_connections,
        raw.max_handshakes,
        DEFAULT_LIMITS,
    );
    let idle_timeout = raw.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
    if idle_timeout.is_zero() {
        p.push("enroll.idle_timeout", "must be more than 0");
    }
    let max_connection_age = raw.max_connection_age.unwrap_or(DEFAULT_MAX_CONNECTION_AGE);
    if max_connection_age.is_zero() {
        p.push("enroll.max_connection_age", "must be more than 0");
    }
    let out = Enroll {
        limits,
        idle_timeout,
        max_connection_age,
        listen,
        ca_cert,
        ca_key,
        cert_validity,
        token_ttl,
        renew_window: raw.renew_window,
        supersede_grace,
    };
    if !out.ca_key.as_os_str().is_empty() {
        if let Err(e) = key_private(&out.ca_key) {
            p.push("enroll.ca_key", e);
        } else if let Err(e) = crate::enroll::Signer::load(&out) {
            p.push("enroll.ca_key", e.to_string());
        }
    }
    out
}

/// A token lifetime: more than nothing, at most [`MAX_TOKEN_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl.is_zero() {
        Err("must be more than 0".into())
    } else if ttl > MAX_TOKEN_TTL {
        Err("must be at most 7 days".into())
    } else {
        Ok(())
    }
}

/// An issued certificate's validity: [`MIN_CERT_VALIDITY`] to [`MAX_CERT_VALIDITY`].
pub fn check_cert_validity(validity: Duration) -> Result<(), String> {
    if validity < MIN_CERT_VALIDITY {
        Err("must be at least 60s".into())
    } else if validity > MAX_CERT_VALIDITY {
        Err(
            "must be at most 397d (the CA/Browser Forum limit; agents renew on their \
             own, so a short validity costs nothing)"
                .into(),
        )
    } else {
        Ok(())
    }
}

fn key_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} may be read by others (mode {mode:o}); `chmod 600` it",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ttl_is_bounded() {
        assert!(check_ttl(Duration::from_secs(1)).is_ok());
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(MAX_TOKEN_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn cert_validity_is_bounded() {
        assert!(check_cert_validity(MIN_CERT_VALIDITY).is_ok());
        assert!(check_cert_validity(MAX_CERT_VALIDITY).is_ok());
        assert!(check_cert_validity(Duration::from_secs(59)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let raw = RawEnroll {
            cert_validity: Some(MAX_CERT_VALIDITY + Duration::from_secs(86_400)),
            ..Default::default()
        };
        let mut p = Problems::new(&dir.path().join("collector.toml"));
        validate(&mut p, raw, dir.path(), &dir.path().join("ca.pem"));
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("collector.toml"), "{err}");
        assert!(
            err.contains("enroll.cert_validity: must be at most 397d"),
            "{err}"
        );
    }

    #[test]
    fn ca_key_is_required_and_private() {
        let dir = tempfile::tempdir().unwrap();
        crate::certs::issue(dir.path(), &[], &[], 1).unwrap();
        let ca = dir.path().join("ca.pem");
        let mut p = Problems::new(&dir.path().join("c.toml"));
        validate(&mut p, RawEnroll::default(), dir.path(), &ca);
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("enroll.ca_key: is required"), "{err}");

        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("ca-key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let raw = RawEnroll {
            ca_key: Some("ca-key.pem".into()),
            ..Default::default()
        };
        let mut p = Problems::new(&dir.path().join("c.toml"));
        validate(&mut p, raw, dir.path(), &ca);
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("may be read by others (mode 640)"), "{err}");

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let raw = RawEnroll {
            ca_key: Some("ca-key.pem".into()),
            cert_validity: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        let mut p = Problems::new(&dir.path().join("c.toml"));
        let e = validate(&mut p, raw, dir.path(), &ca);
        assert!(p.is_empty());
        assert_eq!(e.ca_cert, ca);
        assert_eq!(e.cert_validity, Duration::from_secs(120));
        assert_eq!(e.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(e.renew_window, None);
        assert_eq!(e.supersede_grace, DEFAULT_SUPERSEDE_GRACE);
    }

    #[test]
    fn renew_window_and_supersede_grace_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        crate::certs::issue(dir.path(), &[], &[], 1).unwrap();
        let ca = dir.path().join("ca.pem");
        let raw = |w: u64, g: u64| RawEnroll {
            ca_key: Some("ca-key.pem".into()),
            renew_window: Some(Duration::from_secs(w)),
            supersede_grace: Some(Duration::from_secs(g)),
            ..Default::default()
        };
        let mut p = Problems::new(&dir.path().join("c.toml"));
        let e = validate(&mut p, raw(86_400, 0), dir.path(), &ca);
        assert!(p.is_empty());
        assert_eq!(e.renew_window, Some(Duration::from_secs(86_400)));
        assert_eq!(e.supersede_grace, Duration::ZERO);
        let mut p = Problems::new(&dir.path().join("c.toml"));
        validate(&mut p, raw(0, 2 * 86_400), dir.path(), &ca);
        let err = p.finish().unwrap_err().to_string();
        assert!(
            err.contains("enroll.renew_window: must be more than 0"),
            "{err}"
        );
        assert!(
            err.contains("enroll.supersede_grace: must be at most 1d"),
            "{err}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        crate::certs::issue(dir.path(), &[], &[], 1).unwrap();
        crate::certs::issue(other.path(), &[], &[], 1).unwrap();
        let raw = RawEnroll {
            ca_key: Some(other.path().join("ca-key.pem")),
            ..Default::default()
        };
        let mut p = Problems::new(&dir.path().join("c.toml"));
        validate(&mut p, raw, dir.path(), &dir.path().join("ca.pem"));
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("does not belong to"), "{err}");
    }
}
