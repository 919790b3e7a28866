//! Enrollment (`backwatch-agent enroll`) and automatic renewal of the agent's certificate.
//!
//! Invariants:
//! - the private key is made here and never leaves the host: only a certificate request
//!   (public key, host name) is sent; the key file is written with mode 0600;
//! - key and certificate are replaced atomically (temporary file, fsync, rename), and under
//!   [`IDENTITY_FILES`], so the link never reads a new key with an old certificate;
//! - enrollment trusts only the CA given on the command line (`--ca`), never the system roots;
//!   renewal trusts `collector.ca` and proves who we are with the current certificate;
//! - renewal starts when less than a third of the certificate's validity is left (when the
//!   collector opens it by default), retries until it succeeds, and makes the link reconnect
//!   so the new identity is used at once; a collector that opens renewal later (a shorter
//!   `enroll.renew_window`) says when, and the agent waits until then;
//! - the enrollment token is a credential: it is best read from a file or standard input
//!   (`--token-file`), since a command line is visible to every local user in `ps`; it is
//!   sent only to an `https://` collector URL.

use crate::config::{CollectorLink, RawConfig};
use backwatch_common::error::chain;
use backwatch_proto::convert::from_ts;
use backwatch_proto::wire::{EnrollRequest, EnrollmentClient, RENEW_OPENS_AT, RenewRequest};
use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{info, warn};

/// Port of the collector's enrollment listener when `collector.enroll_url` is not set.
pub const DEFAULT_ENROLL_PORT: u16 = 7444;
/// Held while the certificate and key files are read (link) or replaced (renewal).
pub static IDENTITY_FILES: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Config(String),
    #[error("making the key pair or certificate request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("enrollment URL {url}: {source}")]
    Endpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the collector refused: {}", .0.message())]
    Refused(tonic::Status),
    #[error("the collector's answer is unusable: {0}")]
    BadReply(String),
    /// The command line asks for something that cannot work (exit code 64).
    #[error("{0}")]
    Usage(String),
}

/// Where `enroll` takes the token from.
pub enum TokenSource {
    /// `--token`: visible in `ps` to every local user while enrollment runs.
    Arg(String),
    /// `--token-file PATH`, or `-` for standard input.
    File(PathBuf),
}

/// The token, surrounding whitespace trimmed; `stdin` is read for `--token-file -`.
pub fn read_token(source: &TokenSource, stdin: impl std::io::Read) -> Result<String, EnrollError> {
    let (text, from) = match source {
        TokenSource::Arg(t) => (t.clone(), "--token".to_string()),
        TokenSource::File(p) if p.as_os_str() == "-" => {
            let mut text = String::new();
            let mut limited = std::io::Read::take(stdin, 4096);
            std::io::Read::read_to_string(&mut limited, &mut text).map_err(|e| {
                EnrollError::Usage(format!(
                    "reading the enrollment token from standard input: {e}"
                ))
            })?;
            (text, "standard input".to_string())
        }
        TokenSource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                EnrollError::Usage(format!(
                    "reading the enrollment token from {}: {e}",
                    p.display()
                ))
            })?;
            (text, p.display().to_string())
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(EnrollError::Usage(format!(
            "{from}: no enrollment token there (empty); pass the token printed by \
             `backwatch-collector enroll`"
        )));
    }
    Ok(token.to_string())
}

/// The enrollment URL must be `https://`: the token travels on it, and the collector's
/// certificate is what proves the token goes to the collector.
pub fn check_collector_url(url: &str) -> Result<(), EnrollError> {
    if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        Ok(())
    } else {
        Err(EnrollError::Usage(format!(
            "--collector {url:?} must be an https:// URL (the token would cross the network \
             in the clear), e.g. \"https://collector.example:{DEFAULT_ENROLL_PORT}\""
        )))
    }
}

/// The host of the ingest URL on the enrollment port.
pub fn default_enroll_url(ingest_url: &str) -> String {
    let host = ingest_url
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    format!("https://{host}:{DEFAULT_ENROLL_PORT}")
}

fn file_err(path: &Path) -> impl Fn(std::io::Error) -> EnrollError + '_ {
    move |e| EnrollError::File {
        path: path.to_path_buf(),
        problem: e.to_string(),
    }
}

/// Write `data` to `path` through a temporary file in the same directory: readers see the
/// old file or the new one, never a part.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), EnrollError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.new"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(file_err(&tmp))?;
    f.write_all(data).map_err(file_err(&tmp))?;
    f.sync_all().map_err(file_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(file_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A fresh ECDSA P-256 key pair and a request naming `host` (DNS name and common name).
fn key_and_request(host: &str) -> Result<(KeyPair, String), EnrollError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    // Only the host: rcgen's default common name would be a second, foreign name.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// Checks the issued certificate before it replaces anything: it is for `host` and for our
/// key. Returns its expiry.
fn check_issued(cert_pem: &str, host: &str, key: &KeyPair) -> Result<DateTime<Utc>, EnrollError> {
    use x509_parser::prelude::*;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| EnrollError::BadReply(format!("certificate: {e}")))?;
    let x509 = pem
        .parse_x509()
        .map_err(|e| EnrollError::BadReply(format!("certificate: {e}")))?;
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(EnrollError::BadReply(
            "the certificate is not for the key this agent made".into(),
        ));
    }
    let names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names != [host] {
        return Err(EnrollError::BadReply(format!(
            "the certificate names {names:?}, not {host:?}"
        )));
    }
    DateTime::from_timestamp(x509.validity().not_after.timestamp(), 0)
        .ok_or_else(|| EnrollError::BadReply("certificate expiry out of range".into()))
}

/// Replace key and certificate, key first, both under [`IDENTITY_FILES`].
fn install(
    key_path: &Path,
    key: &KeyPair,
    cert_path: &Path,
    cert_pem: &str,
) -> Result<(), EnrollError> {
    let _held = IDENTITY_FILES.lock().unwrap_or_else(|p| p.into_inner());
    write_atomic(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert_path, cert_pem.as_bytes(), 0o644)
}

async fn channel(url: &str, tls: ClientTlsConfig) -> Result<Channel, EnrollError> {
    let endpoint_err = |source| EnrollError::Endpoint {
        url: url.to_string(),
        source,
    };
    Endpoint::from_shared(url.to_string())
        .map_err(endpoint_err)?
        .tls_config(tls)
        .map_err(endpoint_err)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| EnrollError::Connect {
            url: url.to_string(),
            source,
        })
}

// === enroll ===

pub struct EnrollArgs {
    pub config: PathBuf,
    pub collector: String,
    pub token: String,
    pub ca: PathBuf,
    pub host: Option<String>,
    pub server_name: Option<String>,
}

/// Where the agent's configuration keeps its identity. Only `[collector]` is read, and its
/// files need not exist yet: making them is the point.
fn identity_paths(config: &Path) -> Result<(PathBuf, PathBuf, PathBuf), EnrollError> {
    let raw: RawConfig = backwatch_common::config::load_toml(config)
        .map_err(|e| EnrollError::Config(e.to_string()))?;
    let missing = |key: &str| {
        EnrollError::Config(format!(
            "{}: collector.{key} is required: where the agent keeps its identity",
            config.display()
        ))
    };
    let c = raw.collector.ok_or_else(|| missing("cert"))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let rel = |f: PathBuf| if f.is_relative() { base.join(f) } else { f };
    Ok((
        rel(c.ca.ok_or_else(|| missing("ca"))?),
        rel(c.cert.ok_or_else(|| missing("cert"))?),
        rel(c.key.ok_or_else(|| missing("key"))?),
    ))
}

/// `backwatch-agent enroll`: returns the host and the certificate's expiry.
pub async fn enroll(args: &EnrollArgs) -> Result<(String, PathBuf, DateTime<Utc>), EnrollError> {
    check_collector_url(&args.collector)?;
    let (ca_path, cert_path, key_path) = identity_paths(&args.config)?;
    let host = match &args.host {
        Some(h) => h.clone(),
        None => sysinfo::System::host_name()
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                EnrollError::Config("cannot tell this host's name; pass --host".into())
            })?,
    };
    let ca_pem = std::fs::read(&args.ca).map_err(file_err(&args.ca))?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
    if let Some(name) = &args.server_name {
        tls = tls.domain_name(name.clone());
    }
    let (key, csr_pem) = key_and_request(&host)?;
    let reply = EnrollmentClient::new(channel(&args.collector, tls).await?)
        .enroll(EnrollRequest {
            token: args.token.trim().to_string(),
            csr_pem,
        })
        .await
        .map_err(EnrollError::Refused)?
        .into_inner();
    let not_after = check_issued(&reply.cert_pem, &host, &key)?;
    install(&key_path, &key, &cert_path, &reply.cert_pem)?;
    // The CA the agent will trust for ingest: the one we pinned, when none is there yet.
    if !ca_path.exists() {
        write_atomic(&ca_path, &ca_pem, 0o644)?;
    }
    Ok((host, cert_path, not_after))
}

// === renewal ===

/// Validity of the certificate in `path`: (not before, not after).
fn validity(path: &Path) -> Result<(DateTime<Utc>, DateTime<Utc>), EnrollError> {
    let text = {
        let _held = IDENTITY_FILES.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::read(path).map_err(file_err(path))?
    };
    let bad = |e: String| EnrollError::File {
        path: path.to_path_buf(),
        problem: e,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|e| bad(e.to_string()))?;
    let x509 = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let t = |a: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(a.timestamp(), 0).ok_or_else(|| bad("time out of range".into()))
    };
    Ok((
        t(x509.validity().not_before)?,
        t(x509.validity().not_after)?,
    ))
}

/// When to renew: once less than a third of the validity is left.
pub fn renew_at(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    not_after - (not_after - not_before) / 3
}

/// Host of the current certificate (first DNS name, else CN), as the collector reads it.
fn current_host(path: &Path) -> Result<String, EnrollError> {
    let text = std::fs::read(path).map_err(file_err(path))?;
    let bad = |e: String| EnrollError::File {
        path: path.to_path_buf(),
        problem: e,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|e| bad(e.to_string()))?;
    let x509 = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        });
    san.or_else(|| {
        x509.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    })
    .ok_or_else(|| bad("the certificate names no host".into()))
}

/// One renewal over mTLS with the current identity; returns the new expiry.
async fn renew(link: &CollectorLink) -> Result<DateTime<Utc>, EnrollError> {
    let host = current_host(&link.cert)?;
    let (ca, cert, key_pem) = {
        let _held = IDENTITY_FILES.lock().unwrap_or_else(|p| p.into_inner());
        (
            std::fs::read(&link.ca).map_err(file_err(&link.ca))?,
            std::fs::read(&link.cert).map_err(file_err(&link.cert))?,
            std::fs::read(&link.key).map_err(file_err(&link.key))?,
        )
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key_pem));
    if let Some(name) = &link.server_name {
        tls = tls.domain_name(name.clone());
    }
    let (key, csr_pem) = key_and_request(&host)?;
    let reply = EnrollmentClient::new(channel(&link.enroll_url, tls).await?)
        .renew(RenewRequest { csr_pem })
        .await
        .map_err(EnrollError::Refused)?
        .into_inner();
    let not_after = check_issued(&reply.cert_pem, &host, &key)?;
    if let Some(t) = reply.not_after.as_ref().and_then(|t| from_ts(t).ok())
        && t != not_after
    {
        warn!(said = %t, certificate = %not_after, "collector's expiry differs from the certificate's");
    }
    install(&link.key, &key, &link.cert, &reply.cert_pem)?;
    Ok(not_after)
}

/// Renews the certificate before it expires, forever; `renewed` tells the link to reconnect.
pub async fn renew_loop(link: CollectorLink, renewed: Arc<tokio::sync::Notify>) {
    let mut failures = 0u32;
    loop {
        let now = Utc::now();
        let (not_before, not_after) = match validity(&link.cert) {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %chain(&e), "cannot read the agent certificate; renewal waits");
                tokio::time::sleep(Duration::from_secs(600)).await;
                continue;
            }
        };
        let due = renew_at(not_before, not_after);
        if due > now {
            // Wake at least hourly: the files may be replaced by hand meanwhile.
            let wait = (due - now).to_std().unwrap_or_default();
            tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
            continue;
        }
        match renew(&link).await {
            Ok(new_expiry) => {
                info!(old_expiry = %not_after, new_expiry = %new_expiry, url = %link.enroll_url,
                    "agent certificate renewed");
                failures = 0;
                renewed.notify_one();
            }
            Err(e) if opens_at(&e).is_some_and(|t| t > now) => {
                let opens = opens_at(&e).unwrap_or(now);
                // Not a failure: this collector renews later than agents ask. Hourly at most,
                // as above.
                let wait = (opens - now).to_std().unwrap_or_default();
                info!(opens_at = %opens, expires = %not_after, url = %link.enroll_url,
                    "the collector opens renewal later; waiting until then");
                tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
            }
            Err(e) => {
                let left = (not_after - now).to_std().unwrap_or_default();
                failures = failures.saturating_add(1);
                let retry = renew_retry(left, failures);
                warn!(error = %chain(&e), expires = %not_after, url = %link.enroll_url,
                    retry_in = ?retry, "certificate renewal failed");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// How long to wait after the `failures`-th renewal failure in a row with `left` of validity:
/// a minute at first, doubling to ten, never more than a tenth of what is left (at least 5 s).
/// The first retries stay well under the collector's default `enroll.supersede_grace` (10
/// minutes), so a renewal whose reply was lost is followed by another soon.
pub fn renew_retry(left: Duration, failures: u32) -> Duration {
    let backoff = Duration::from_secs(60)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(4))
        .min(Duration::from_secs(600));
    backoff.min(left / 10).max(Duration::from_secs(5))
}

/// When renewal opens, from a refusal that says renewal has not opened yet.
fn opens_at(e: &EnrollError) -> Option<DateTime<Utc>> {
    let EnrollError::Refused(status) = e else {
        return None;
    };
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status
        .metadata()
        .get(RENEW_OPENS_AT)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_early_refusal_says_when_renewal_opens() {
        let at = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let mut s = tonic::Status::failed_precondition("renewal of this certificate opens at");
        s.metadata_mut()
            .insert(RENEW_OPENS_AT, at.to_rfc3339().parse().unwrap());
        assert_eq!(opens_at(&EnrollError::Refused(s.clone())), Some(at));
        // Any other refusal is a failure, retried as such.
        let mut denied = tonic::Status::permission_denied("denied");
        *denied.metadata_mut() = s.metadata().clone();
        assert_eq!(opens_at(&EnrollError::Refused(denied)), None);
        let bare = tonic::Status::failed_precondition("no time");
        assert_eq!(opens_at(&EnrollError::Refused(bare)), None);
    }

    #[test]
    fn the_token_comes_trimmed_from_argument_file_or_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  bwe_abc\n").unwrap();
        let none: &[u8] = b"";
        assert_eq!(
            read_token(&TokenSource::File(file.clone()), none).unwrap(),
            "bwe_abc"
        );
        assert_eq!(
            read_token(&TokenSource::File("-".into()), &b"bwe_def\n"[..]).unwrap(),
            "bwe_def"
        );
        assert_eq!(
            read_token(&TokenSource::Arg(" bwe_x ".into()), none).unwrap(),
            "bwe_x"
        );
        let missing = dir.path().join("nope");
        let err = read_token(&TokenSource::File(missing.clone()), none).unwrap_err();
        assert!(
            matches!(&err, EnrollError::Usage(m) if m.contains(&*missing.to_string_lossy())),
            "{err}"
        );
        std::fs::write(&file, " \n").unwrap();
        let err = read_token(&TokenSource::File(file), none).unwrap_err();
        assert!(err.to_string().contains("(empty)"), "{err}");
        let err = read_token(&TokenSource::File("-".into()), none).unwrap_err();
        assert!(err.to_string().starts_with("standard input: "), "{err}");
    }

    #[test]
    fn only_https_collector_urls_are_enrolled_with() {
        assert!(check_collector_url("https://c:7444").is_ok());
        assert!(check_collector_url("HTTPS://c:7444").is_ok());
        for bad in ["http://c:7444", "c:7444", "", "grpc://c"] {
            let err = check_collector_url(bad).unwrap_err().to_string();
            assert!(err.contains("must be an https:// URL"), "{err}");
        }
    }

    #[test]
    fn a_failed_renewal_is_retried_within_a_minute_then_less_often() {
        let day = Duration::from_secs(86_400);
        let secs = |n| Duration::from_secs(n);
        assert_eq!(renew_retry(10 * day, 1), secs(60));
        assert_eq!(renew_retry(10 * day, 2), secs(120));
        assert_eq!(renew_retry(10 * day, 4), secs(480));
        assert_eq!(renew_retry(10 * day, 5), secs(600));
        assert_eq!(renew_retry(10 * day, u32::MAX), secs(600));
        // Short-lived certificates: a tenth of what is left, never under 5 s.
        assert_eq!(renew_retry(secs(200), 1), secs(20));
        assert_eq!(renew_retry(secs(10), 3), secs(5));
        assert_eq!(renew_retry(Duration::ZERO, 1), secs(5));
    }

    #[test]
    fn renewal_is_due_with_a_third_left() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let t1 = t0 + chrono::Duration::days(30);
        assert_eq!(renew_at(t0, t1), t0 + chrono::Duration::days(20));
    }

    #[test]
    fn enroll_url_defaults_to_the_collector_host() {
        assert_eq!(
            default_enroll_url("https://collector.example:7443"),
            "https://collector.example:7444"
        );
        assert_eq!(
            default_enroll_url("https://[::1]:7443"),
            "https://[::1]:7444"
        );
    }

    #[test]
    fn issued_certificate_must_match_host_and_key() {
        let (key, _) = key_and_request("db42").unwrap();
        let other = KeyPair::generate().unwrap();
        let self_signed = |k: &KeyPair, name: &str| {
            CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .self_signed(k)
                .unwrap()
                .pem()
        };
        assert!(check_issued(&self_signed(&key, "db42"), "db42", &key).is_ok());
        assert!(check_issued(&self_signed(&key, "db43"), "db42", &key).is_err());
        assert!(check_issued(&self_signed(&other, "db42"), "db42", &key).is_err());
    }

    #[test]
    fn files_are_replaced_whole_and_keys_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/key.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
