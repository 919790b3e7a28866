//! The fleet CA as a signer of agent certificates from certificate requests.
//!
//! Only the public key is taken from a request. Names, usages and validity are ours: one DNS
//! name and common name (the host), client authentication only, `[enroll] cert_validity`
//! from a minute ago (clock skew), a random serial. A request naming any other host is refused
//! rather than corrected, so a confused or malicious agent learns that it asked for the wrong
//! thing.

use super::{EnrollError, hex};
use crate::config::enroll::Enroll;
use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use std::time::Duration;

/// Issued certificates start this long before "now", for agents whose clock is a bit behind.
const BACKDATE: Duration = Duration::from_secs(60);

pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    validity: Duration,
}

/// Why a request was not signed; the message goes back to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the certificate request cannot be read or its signature is wrong: {0}")]
    BadRequest(String),
    #[error("the certificate request names {asked}, but this enrollment is for {host}")]
    OtherHost { host: String, asked: String },
    #[error("the certificate request names no host (no DNS name, no common name)")]
    NoName,
    #[error("signing failed: {0}")]
    Sign(String),
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub ca_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex (as `grpc.deny_fingerprints` lists it).
    pub fingerprint: String,
}

impl Signer {
    /// Load the CA certificate and key and check that they belong together.
    pub fn load(cfg: &Enroll) -> Result<Signer, EnrollError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| EnrollError::Ca {
                path: p.display().to_string(),
                problem: e.to_string(),
            })
        };
        let ca_err = |p: &std::path::Path, problem: String| EnrollError::Ca {
            path: p.display().to_string(),
            problem,
        };
        let ca_pem = read(&cfg.ca_cert)?;
        // The message never includes key material, only what kind of problem it is.
        let key = KeyPair::from_pem(&read(&cfg.ca_key)?)
            .map_err(|e| ca_err(&cfg.ca_key, format!("not a private key: {e}")))?;
        let der = crate::tls::read_certs(&cfg.ca_cert)
            .map_err(|e| ca_err(&cfg.ca_cert, e.to_string()))?;
        let spki = {
            use x509_parser::prelude::*;
            let (_, x509) = X509Certificate::from_der(der[0].as_ref())
                .map_err(|e| ca_err(&cfg.ca_cert, e.to_string()))?;
            x509.public_key().raw.to_vec()
        };
        if spki != key.subject_public_key_info() {
            return Err(ca_err(
                &cfg.ca_key,
                format!(
                    "does not belong to the CA certificate {}",
                    cfg.ca_cert.display()
                ),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .map_err(|e| ca_err(&cfg.ca_cert, e.to_string()))?;
        Ok(Signer {
            issuer,
            ca_pem,
            validity: cfg.cert_validity,
        })
    }

    /// Sign `csr_pem` for `host`, valid from a minute before `now` for the configured time.
    pub fn sign(&self, csr_pem: &str, host: &str, now: DateTime<Utc>) -> Result<Issued, Refusal> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        check_names(&csr.params, host)?;
        let mut params = CertificateParams::new(vec![host.to_string()])
            .map_err(|e| Refusal::Sign(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_before = now - chrono::Duration::from_std(BACKDATE).unwrap_or_default();
        let not_after = now + chrono::Duration::from_std(self.validity).unwrap_or_default();
        params.not_before = offset(not_before)?;
        params.not_after = offset(not_after)?;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| Refusal::Sign(e.to_string()))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            ca_pem: self.ca_pem.clone(),
            // Whole seconds, as in the certificate.
            not_before: DateTime::from_timestamp(not_before.timestamp(), 0).unwrap_or(not_before),
            not_after: DateTime::from_timestamp(not_after.timestamp(), 0).unwrap_or(not_after),
            serial: hex(serial.as_ref()),
            fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, cert.der()).as_ref()),
        })
    }
}

/// Every name in the request must be `host`: its DNS names and its common name.
fn check_names(params: &CertificateParams, host: &str) -> Result<(), Refusal> {
    let mut asked: Vec<String> = params
        .subject_alt_names
        .iter()
        .map(|san| match san {
            SanType::DnsName(n) => n.as_str().to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    if let Some(cn) = params.distinguished_name.get(&DnType::CommonName) {
        asked.push(match cn {
            DnValue::Utf8String(s) => s.clone(),
            DnValue::PrintableString(s) => s.as_str().to_string(),
            DnValue::Ia5String(s) => s.as_str().to_string(),
            other => format!("{other:?}"),
        });
    }
    if asked.is_empty() {
        return Err(Refusal::NoName);
    }
    match asked.iter().find(|n| n.as_str() != host) {
        Some(other) => Err(Refusal::OtherHost {
            host: host.to_string(),
            asked: other.chars().take(80).collect(),
        }),
        None => Ok(()),
    }
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, Refusal> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| Refusal::Sign(e.to_string()))
}

/// 16 random bytes, positive (top bit clear), as RFC 5280 asks.
fn random_serial() -> Result<SerialNumber, Refusal> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Refusal::Sign("no randomness available".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::enroll::DEFAULT_TOKEN_TTL;

    fn signer(dir: &std::path::Path) -> Signer {
        crate::certs::issue(dir, &[], &[], 1).unwrap();
        Signer::load(&Enroll {
            listen: "127.0.0.1:0".parse().unwrap(),
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert_validity: Duration::from_secs(3600),
            token_ttl: DEFAULT_TOKEN_TTL,
            renew_window: None,
            supersede_grace: Duration::from_secs(600),
            limits: crate::config::enroll::DEFAULT_LIMITS,
            idle_timeout: crate::config::enroll::DEFAULT_IDLE_TIMEOUT,
            max_connection_age: crate::config::enroll::DEFAULT_MAX_CONNECTION_AGE,
        })
        .unwrap()
    }

    fn csr(names: &[&str], cn: Option<&str>) -> String {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        // rcgen puts a common name of its own in by default.
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn signs_exactly_the_host_for_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer(dir.path());
        let now = Utc::now();
        let issued = s.sign(&csr(&["db42"], Some("db42")), "db42", now).unwrap();
        let der = rustls::pki_types::CertificateDer::from(pem_der(&issued.cert_pem));
        assert_eq!(crate::tls::host_of(&der).unwrap(), "db42");
        assert_eq!(crate::tls::fingerprint(&der), issued.fingerprint);
        let left = issued.not_after - now;
        assert!(left <= chrono::Duration::seconds(3600) && left > chrono::Duration::seconds(3590));
    }

    #[test]
    fn a_request_for_another_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = signer(dir.path());
        let now = Utc::now();
        assert_eq!(
            s.sign(&csr(&["db43"], Some("db43")), "db42", now)
                .unwrap_err(),
            Refusal::OtherHost {
                host: "db42".into(),
                asked: "db43".into()
            }
        );
        // An extra name is as bad as a wrong one.
        assert!(matches!(
            s.sign(&csr(&["db42", "collector"], None), "db42", now),
            Err(Refusal::OtherHost { .. })
        ));
        assert!(matches!(
            s.sign(&csr(&["db42"], Some("db43")), "db42", now),
            Err(Refusal::OtherHost { .. })
        ));
        assert_eq!(
            s.sign(&csr(&[], None), "db42", now).unwrap_err(),
            Refusal::NoName
        );
        assert!(matches!(
            s.sign("not a request", "db42", now),
            Err(Refusal::BadRequest(_))
        ));
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }
}
