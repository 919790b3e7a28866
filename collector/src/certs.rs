//! A small certificate authority for the demo and small installations (`certs` command).
//!
//! Files in the target directory: `ca.pem`, `ca-key.pem`, `collector.pem`,
//! `collector-key.pem`, and `agents/<host>.pem`, `agents/<host>-key.pem` per agent. An existing
//! CA is reused, so running the command again with new `--agent` names issues more agent
//! certificates from the same CA. Private keys are written with mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {problem}")]
    Io { path: PathBuf, problem: String },
    #[error("generating certificate for {name}: {source}")]
    Generate {
        name: String,
        #[source]
        source: rcgen::Error,
    },
}

pub struct Issued {
    pub written: Vec<PathBuf>,
    pub reused_ca: bool,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |e| CertError::Io {
        path: path.to_path_buf(),
        problem: e.to_string(),
    }
}

fn write_file(path: &Path, data: &str, private: bool) -> Result<(), CertError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(data.as_bytes()).map_err(io_err(path))
}

fn gen_err(name: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Generate {
        name: name.to_string(),
        source,
    }
}

/// Create (or reuse) the CA in `dir`, then a collector certificate (when none exists yet, or
/// anew when `collector_names` are given) and one certificate per agent host.
pub fn issue(
    dir: &Path,
    collector_names: &[String],
    agents: &[String],
    valid_days: u32,
) -> Result<Issued, CertError> {
    std::fs::create_dir_all(dir.join("agents")).map_err(io_err(dir))?;
    let ca_pem = dir.join("ca.pem");
    let ca_key_pem = dir.join("ca-key.pem");
    let mut written = Vec::new();
    let reused_ca = ca_pem.exists() && ca_key_pem.exists();
    let issuer = if reused_ca {
        let key_text = std::fs::read_to_string(&ca_key_pem).map_err(io_err(&ca_key_pem))?;
        let cert_text = std::fs::read_to_string(&ca_pem).map_err(io_err(&ca_pem))?;
        let key = KeyPair::from_pem(&key_text).map_err(gen_err("CA key"))?;
        Issuer::from_ca_cert_pem(&cert_text, key).map_err(gen_err("CA"))?
    } else {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA"))?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Backwatch fleet CA {}", unique_suffix()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(3650);
        let key = KeyPair::generate().map_err(gen_err("CA"))?;
        let cert = params.self_signed(&key).map_err(gen_err("CA"))?;
        write_file(&ca_pem, &cert.pem(), false)?;
        write_file(&ca_key_pem, &key.serialize_pem(), true)?;
        written.extend([ca_pem.clone(), ca_key_pem.clone()]);
        Issuer::new(params, key)
    };

    let leaf = |names: &[String],
                purpose: ExtendedKeyUsagePurpose,
                cert_path: PathBuf,
                key_path: PathBuf,
                written: &mut Vec<PathBuf>|
     -> Result<(), CertError> {
        let label = names.first().cloned().unwrap_or_default();
        let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err(&label))?;
        params
            .distinguished_name
            .push(DnType::CommonName, label.as_str());
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(i64::from(valid_days));
        let key = KeyPair::generate().map_err(gen_err(&label))?;
        let cert = params.signed_by(&key, &issuer).map_err(gen_err(&label))?;
        write_file(&cert_path, &cert.pem(), false)?;
        write_file(&key_path, &key.serialize_pem(), true)?;
        written.extend([cert_path, key_path]);
        Ok(())
    };

    let collector_pem = dir.join("collector.pem");
    // Names given explicitly mean "this is what the collector is called now": re-issue.
    if !collector_pem.exists() || !collector_names.is_empty() {
        let mut names = collector_names.to_vec();
        if names.is_empty() {
            names = vec!["localhost".into(), "127.0.0.1".into()];
        }
        leaf(
            &names,
            ExtendedKeyUsagePurpose::ServerAuth,
            collector_pem,
            dir.join("collector-key.pem"),
            &mut written,
        )?;
    }
    for host in agents {
        leaf(
            std::slice::from_ref(host),
            ExtendedKeyUsagePurpose::ClientAuth,
            dir.join("agents").join(format!("{host}.pem")),
            dir.join("agents").join(format!("{host}-key.pem")),
            &mut written,
        )?;
    }
    Ok(Issued { written, reused_ca })
}

/// Two fleets' CAs must not share a subject name: a verifier looks issuers up by name, and a
/// clash turns "unknown CA" into a confusing signature error.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}",
        (nanos as u64 ^ u64::from(std::process::id()).rotate_left(32)) as u32
    )
}

/// rcgen takes a `time::OffsetDateTime`; build it from the system clock via chrono, at day
/// precision (midnight UTC), which is all a certificate's validity needs.
fn days_from_now(days: i64) -> time::OffsetDateTime {
    use chrono::Datelike;
    let d = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
    rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
}
