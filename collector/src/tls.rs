//! Mutual TLS for the ingest listener, and the agent identity taken from its certificate.
//!
//! The rustls `ServerConfig` is built by hand rather than through tonic's `ServerTlsConfig`
//! because that one cannot restrict the protocol to TLS 1.3 and has no hook for revocation:
//! here only TLS 1.3 is offered and every client must present a certificate chaining to the
//! fleet CA. The host an agent reports for is the first DNS name of its certificate (or its
//! common name when there is none): never a field of the messages it sends.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {problem}")]
    Read { path: PathBuf, problem: String },
    #[error("{path}: no certificate found")]
    NoCert { path: PathBuf },
    #[error("building TLS configuration: {0}")]
    Config(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("client certificate names no host (no DNS name, no common name)")]
    NoHost,
    #[error("client certificate names {0:?}, which is not a valid host name")]
    BadHost(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Read {
            path: path.into(),
            problem: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.into(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.into() });
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error text never contains key material, only the path and the parse problem.
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.into(),
        problem: e.to_string(),
    })
}

/// TLS 1.3 only, client certificate required and verified against the fleet CA, ALPN h2.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(&files.ca)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::Config(format!("fleet CA {}: {e}", files.ca.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&files.cert)?, read_key(&files.key)?)
        .map_err(|e| TlsError::Config(format!("collector certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The host an agent certificate names: its first DNS subject alternative name, else its CN.
pub fn host_of(cert: &CertificateDer<'_>) -> Result<String, IdentityError> {
    use x509_parser::prelude::*;
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let from_san = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        });
    let host = match from_san {
        Some(h) => h,
        None => x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .ok_or(IdentityError::NoHost)?,
    };
    if valid_host(&host) {
        Ok(host)
    } else {
        Err(IdentityError::BadHost(host.chars().take(80).collect()))
    }
}

/// A certificate's validity: (not before, not after).
pub fn validity_of(
    cert: &CertificateDer<'_>,
) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), IdentityError> {
    use x509_parser::prelude::*;
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let t = |a: ASN1Time| {
        chrono::DateTime::from_timestamp(a.timestamp(), 0)
            .ok_or_else(|| IdentityError::Unparsable("validity out of range".into()))
    };
    Ok((
        t(x509.validity().not_before)?,
        t(x509.validity().not_after)?,
    ))
}

/// SHA-256 of a certificate's DER, lowercase hex: what `grpc.deny_fingerprints` lists and
/// what `openssl x509 -noout -fingerprint -sha256` prints (without the colons).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Host names as DNS allows them (letters, digits, '-', '.', '_'), at most 253 characters.
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}
