//! Agent configuration: raw TOML (`deny_unknown_fields`) validated into [`Config`].
//!
//! Defaults come from the operations procedure: backup directories `daily` (/backup/daily,
//! 24 h) and `weekly` (/backup/weekly, 7 d) every 6 h; disk space of /backup every hour; WAL
//! archiving every 15 min (needs a `[[wal]]` section with a DSN); the WAL archive directory
//! every hour (needs an `[[archive_dir]]` section, see [`archive_dir`]). Leaving a probe list
//! out means its defaults; writing an empty list (`backup_dir = []`) means none.

pub mod archive_dir;
pub mod backup_tool;
pub mod drill;
pub mod restore;

use crate::probe::archive_dir::ArchiveDirProbe;
use crate::probe::backup_dir::{
    BackupDirProbe, DEFAULT_MAX_DEPTH, DEFAULT_MAX_ENTRIES, default_ignore_suffixes,
};
use crate::probe::barman::BarmanProbe;
use crate::probe::disk::DiskProbe;
use crate::probe::drill::DrillProbe;
use crate::probe::pgbackrest::PgBackRestProbe;
use crate::probe::restore::RestoreProbe;
use crate::probe::wal_archive::WalProbe;
use backwatch_proto::config::{ConfigError, Problems, de_opt_duration, load_toml};
use backwatch_proto::convert::valid_probe_name;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub const BACKUP_INTERVAL: Duration = Duration::from_secs(6 * 3600);
pub const DISK_INTERVAL: Duration = Duration::from_secs(3600);
pub const WAL_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/backwatch-agent/spool";

// === raw ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub collector: Option<RawCollector>,
    #[serde(default)]
    pub spool: RawSpool,
    #[serde(default)]
    pub schedule: RawSchedule,
    pub backup_dir: Option<Vec<RawBackupDir>>,
    pub disk: Option<Vec<RawDisk>>,
    #[serde(default)]
    pub wal: Vec<RawWal>,
    #[serde(default)]
    pub archive_dir: Vec<archive_dir::RawArchiveDir>,
    #[serde(default)]
    pub restore: Vec<restore::RawRestore>,
    #[serde(default)]
    pub pgbackrest: Vec<backup_tool::RawPgBackRest>,
    #[serde(default)]
    pub barman: Vec<backup_tool::RawBarman>,
    #[serde(default)]
    pub drill: Vec<drill::RawDrill>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCollector {
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// TLS name to expect on the collector certificate, when not the URL's host.
    pub server_name: Option<String>,
    /// The collector's enrollment listener, where the certificate is renewed before it
    /// expires (default: the host of `url`, port 7444).
    pub enroll_url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub dir: Option<PathBuf>,
    pub max_results: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// First run of each probe is delayed by a random time up to this (default 30 s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub start_jitter: Option<Duration>,
    /// Timeout of the file-system probes (backup_dir, disk, archive_dir) that set none
    /// (default 2 min).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackupDir {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// A run taking longer is reported as timed out (default `schedule.timeout`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    pub max_depth: Option<u32>,
    pub max_entries: Option<u64>,
    pub ignore_suffixes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// A run taking longer is reported as timed out (default `schedule.timeout`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    pub name: String,
    /// libpq-style DSN ("host=/var/run/postgresql user=backwatch dbname=postgres") or URL.
    pub dsn: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub statement_timeout: Option<Duration>,
    /// The whole run's limit (default: connect_timeout + 3 × statement_timeout + 5 s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Report WAL not archivable yet with archive_timeout = 0 (docs/checks.md R19; default false).
    pub exposure_advisory: Option<bool>,
}

// === validated ===

pub struct Config {
    pub collector: Option<CollectorLink>,
    pub spool: SpoolConfig,
    pub start_jitter: Duration,
    /// `schedule.timeout`: the file-system probes' default timeout.
    pub probe_timeout: Duration,
    pub probes: Vec<Scheduled>,
}

#[derive(Debug, Clone)]
pub struct CollectorLink {
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_name: Option<String>,
    /// Where renewal goes: `collector.enroll_url`, else the host of `url` on port 7444.
    pub enroll_url: String,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_results: u64,
    pub max_age: Duration,
}

/// A probe with its schedule.
pub struct Scheduled {
    pub probe: ProbeConfig,
    pub interval: Duration,
    /// A run that takes longer is abandoned and reported as a timeout result.
    pub timeout: Duration,
}

/// One variant per probe module.
pub enum ProbeConfig {
    BackupDir(BackupDirProbe),
    Disk(DiskProbe),
    // Boxed: a parsed tokio_postgres::Config is several times larger than the other probes.
    Wal(Box<WalProbe>),
    ArchiveDir(ArchiveDirProbe),
    Restore(RestoreProbe),
    PgBackRest(PgBackRestProbe),
    Barman(BarmanProbe),
    // Boxed: its smoke checks and paths make it the largest probe.
    Drill(Box<DrillProbe>),
}

impl ProbeConfig {
    pub fn check_id(&self) -> String {
        use crate::probe::Probe;
        match self {
            ProbeConfig::BackupDir(p) => {
                backwatch_proto::model::check_id(BackupDirProbe::KIND, p.name())
            }
            ProbeConfig::Disk(p) => backwatch_proto::model::check_id(DiskProbe::KIND, p.name()),
            ProbeConfig::Wal(p) => backwatch_proto::model::check_id(WalProbe::KIND, p.name()),
            ProbeConfig::ArchiveDir(p) => {
                backwatch_proto::model::check_id(ArchiveDirProbe::KIND, p.name())
            }
            ProbeConfig::Restore(p) => {
                backwatch_proto::model::check_id(RestoreProbe::KIND, p.name())
            }
            ProbeConfig::PgBackRest(p) => {
                backwatch_proto::model::check_id(PgBackRestProbe::KIND, p.name())
            }
            ProbeConfig::Barman(p) => backwatch_proto::model::check_id(BarmanProbe::KIND, p.name()),
            ProbeConfig::Drill(p) => backwatch_proto::model::check_id(DrillProbe::KIND, p.name()),
        }
    }

    /// What the probe looks at, for `check` and `print-config` (never a password).
    pub fn target(&self) -> String {
        match self {
            ProbeConfig::BackupDir(p) => p.path.display().to_string(),
            ProbeConfig::Disk(p) => p.path.display().to_string(),
            ProbeConfig::Wal(p) => crate::probe::wal_archive::redacted(&p.pg),
            ProbeConfig::ArchiveDir(p) => p.path.display().to_string(),
            ProbeConfig::Restore(p) => p.backup_dir.display().to_string(),
            ProbeConfig::PgBackRest(p) => p.command.join(" "),
            ProbeConfig::Barman(p) => format!("{} server {}", p.command.join(" "), p.server),
            ProbeConfig::Drill(p) => p.source_shown(),
        }
    }
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default of `schedule.timeout`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = load_toml(path)?;
        Config::validate(path, raw)
    }

    pub fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut p = Problems::new(path);
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |f: PathBuf| if f.is_relative() { base.join(f) } else { f };

        let collector = raw.collector.map(|c| {
            let url = c.url.unwrap_or_default();
            if !url.starts_with("https://") {
                p.push(
                    "collector.url",
                    format!("{url:?} must be an https:// URL (plaintext is refused), e.g. \"https://collector.example:7443\""),
                );
            }
            let enroll_url = match c.enroll_url {
                Some(u) => {
                    if !u.starts_with("https://") {
                        p.push(
                            "collector.enroll_url",
                            format!("{u:?} must be an https:// URL, e.g. \"https://collector.example:7444\""),
                        );
                    }
                    u
                }
                None => crate::enroll::default_enroll_url(&url),
            };
            let mut file = |key: &str, f: Option<PathBuf>| match f {
                None => {
                    p.push(key, "is required (a PEM file)");
                    PathBuf::new()
                }
                Some(f) => {
                    let f = rel(f);
                    match std::fs::metadata(&f) {
                        Ok(m) if m.is_file() => {}
                        Ok(_) => p.push(key, format!("{} is not a file", f.display())),
                        Err(e) => p.push(key, format!("cannot read {}: {e}", f.display())),
                    }
                    f
                }
            };
            let link = CollectorLink {
                ca: file("collector.ca", c.ca),
                cert: file("collector.cert", c.cert),
                key: file("collector.key", c.key),
                url,
                server_name: c.server_name,
                enroll_url,
            };
            // Existing files must also parse: name the key now, not a TLS error later.
            for (key, path, is_key) in [
                ("collector.ca", &link.ca, false),
                ("collector.cert", &link.cert, false),
                ("collector.key", &link.key, true),
            ] {
                if path.is_file()
                    && let Some(problem) = pem_problem(path, is_key)
                {
                    p.push(key, problem);
                }
            }
            link
        });

        let spool = SpoolConfig {
            dir: raw
                .spool
                .dir
                .map(rel)
                .unwrap_or_else(|| DEFAULT_SPOOL_DIR.into()),
            max_results: raw.spool.max_results.unwrap_or(10_000),
            max_age: raw.spool.max_age.unwrap_or(Duration::from_secs(7 * 86400)),
        };
        if spool.max_results == 0 {
            p.push("spool.max_results", "must be at least 1");
        }

        let mut probes = Vec::new();
        let mut seen = BTreeSet::new();
        let interval_of = |p: &mut Problems, key: String, v: Option<Duration>, d: Duration| {
            let i = v.unwrap_or(d);
            if i < MIN_INTERVAL {
                p.push(key, "must be at least 1s");
            }
            i
        };
        let mut name_ok = |p: &mut Problems, key: String, kind: &str, name: &str| {
            if !valid_probe_name(name) {
                p.push(
                    key,
                    format!("{name:?} is not a valid name (1-64 of a-z, 0-9, '_', '-')"),
                );
            } else if !seen.insert(format!("{kind}.{name}")) {
                p.push(key, format!("{name:?} is used twice"));
            }
        };

        let default_timeout = raw.schedule.timeout.unwrap_or(PROBE_TIMEOUT);
        if default_timeout < MIN_INTERVAL {
            p.push("schedule.timeout", "must be at least 1s");
        }
        let timeout_of = |p: &mut Problems, key: String, v: Option<Duration>, d: Duration| {
            let t = v.unwrap_or(d);
            if t < MIN_INTERVAL {
                p.push(key, "must be at least 1s");
            }
            t
        };

        let dirs = raw.backup_dir.unwrap_or_else(|| {
            vec![
                default_dir("daily", "/backup/daily", 24 * 3600),
                default_dir("weekly", "/backup/weekly", 7 * 24 * 3600),
            ]
        });
        for (i, d) in dirs.into_iter().enumerate() {
            let k = |f: &str| format!("backup_dir[{i}].{f}");
            name_ok(&mut p, k("name"), "backup", &d.name);
            if is_file_not_dir(&d.path) {
                p.push(
                    k("path"),
                    format!("{} is not a directory", d.path.display()),
                );
            }
            let interval = interval_of(&mut p, k("interval"), d.interval, BACKUP_INTERVAL);
            let timeout = timeout_of(&mut p, k("timeout"), d.timeout, default_timeout);
            let max_age = d.max_age.or(match d.name.as_str() {
                "daily" => Some(Duration::from_secs(24 * 3600)),
                "weekly" => Some(Duration::from_secs(7 * 24 * 3600)),
                _ => None,
            });
            probes.push(Scheduled {
                probe: ProbeConfig::BackupDir(BackupDirProbe {
                    name: d.name,
                    path: d.path,
                    max_age,
                    max_depth: d.max_depth.unwrap_or(DEFAULT_MAX_DEPTH),
                    max_entries: d.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
                    ignore_suffixes: d.ignore_suffixes.unwrap_or_else(default_ignore_suffixes),
                }),
                interval,
                timeout,
            });
        }

        let disks = raw.disk.unwrap_or_else(|| {
            vec![RawDisk {
                name: "backup".into(),
                path: "/backup".into(),
                interval: None,
                timeout: None,
            }]
        });
        for (i, d) in disks.into_iter().enumerate() {
            let k = |f: &str| format!("disk[{i}].{f}");
            name_ok(&mut p, k("name"), "disk", &d.name);
            if d.name == crate::spool::check::NAME {
                p.push(
                    k("name"),
                    format!(
                        "{:?} is reserved for the agent's report on its own spool",
                        d.name
                    ),
                );
            }
            let interval = interval_of(&mut p, k("interval"), d.interval, DISK_INTERVAL);
            let timeout = timeout_of(&mut p, k("timeout"), d.timeout, default_timeout);
            probes.push(Scheduled {
                probe: ProbeConfig::Disk(DiskProbe {
                    name: d.name,
                    path: d.path,
                }),
                interval,
                timeout,
            });
        }

        for (i, w) in raw.wal.into_iter().enumerate() {
            let k = |f: &str| format!("wal[{i}].{f}");
            name_ok(&mut p, k("name"), "wal", &w.name);
            let interval = interval_of(&mut p, k("interval"), w.interval, WAL_INTERVAL);
            let connect_timeout = w.connect_timeout.unwrap_or(Duration::from_secs(5));
            let statement_timeout = w.statement_timeout.unwrap_or(Duration::from_secs(10));
            let timeout = timeout_of(
                &mut p,
                k("timeout"),
                w.timeout,
                connect_timeout + statement_timeout * 3 + Duration::from_secs(5),
            );
            let pg = match tokio_postgres::Config::from_str(&w.dsn) {
                Ok(c) => c,
                Err(e) => {
                    // The DSN may hold a password: name the problem, never echo the value.
                    p.push(
                        k("dsn"),
                        format!("is not a valid PostgreSQL connection string: {e}"),
                    );
                    continue;
                }
            };
            probes.push(Scheduled {
                probe: ProbeConfig::Wal(Box::new(WalProbe {
                    name: w.name,
                    pg,
                    connect_timeout,
                    statement_timeout,
                    exposure_advisory: w.exposure_advisory.unwrap_or(false),
                    unswitched: Default::default(),
                })),
                interval,
                timeout,
            });
        }

        let wal_probes: Vec<WalProbe> = probes
            .iter()
            .filter_map(|s| match &s.probe {
                ProbeConfig::Wal(w) => Some(w.as_ref().clone()),
                _ => None,
            })
            .collect();
        let wal_refs: Vec<&WalProbe> = wal_probes.iter().collect();
        for (i, d) in raw.archive_dir.into_iter().enumerate() {
            let k = |f: &str| format!("archive_dir[{i}].{f}");
            name_ok(&mut p, k("name"), "archive", &d.name);
            if is_file_not_dir(&d.path) {
                p.push(
                    k("path"),
                    format!("{} is not a directory", d.path.display()),
                );
            }
            let interval = interval_of(
                &mut p,
                k("interval"),
                d.interval,
                archive_dir::ARCHIVE_INTERVAL,
            );
            let raw_timeout = d.timeout;
            if let Some(probe) = archive_dir::validate(&mut p, i, d, &wal_refs) {
                // The directory listing, plus the linked server's two statements.
                let listing = timeout_of(&mut p, k("timeout"), raw_timeout, default_timeout);
                let timeout = match &probe.wal {
                    Some(w) => listing + w.connect_timeout + w.effective_statement_timeout() * 3,
                    None => listing,
                };
                probes.push(Scheduled {
                    probe: ProbeConfig::ArchiveDir(probe),
                    interval,
                    timeout,
                });
            }
        }

        for (i, r) in raw.restore.into_iter().enumerate() {
            let k = |f: &str| format!("restore[{i}].{f}");
            name_ok(&mut p, k("name"), "restore", &r.name);
            let interval =
                interval_of(&mut p, k("interval"), r.interval, restore::RESTORE_INTERVAL);
            if let Some((probe, timeout)) = restore::validate(&mut p, i, r) {
                probes.push(Scheduled {
                    probe: ProbeConfig::Restore(probe),
                    interval,
                    timeout,
                });
            }
        }

        for (i, r) in raw.pgbackrest.into_iter().enumerate() {
            let k = |f: &str| format!("pgbackrest[{i}].{f}");
            name_ok(&mut p, k("name"), "pgbackrest", &r.name);
            let interval = interval_of(
                &mut p,
                k("interval"),
                r.interval,
                backup_tool::TOOL_INTERVAL,
            );
            let (probe, timeout) = backup_tool::pgbackrest(&mut p, i, r);
            probes.push(Scheduled {
                probe: ProbeConfig::PgBackRest(probe),
                interval,
                timeout,
            });
        }
        for (i, r) in raw.barman.into_iter().enumerate() {
            let k = |f: &str| format!("barman[{i}].{f}");
            name_ok(&mut p, k("name"), "barman", &r.name);
            let interval = interval_of(
                &mut p,
                k("interval"),
                r.interval,
                backup_tool::TOOL_INTERVAL,
            );
            let (probe, timeout) = backup_tool::barman(&mut p, i, r);
            probes.push(Scheduled {
                probe: ProbeConfig::Barman(probe),
                interval,
                timeout,
            });
        }

        for (i, r) in raw.drill.into_iter().enumerate() {
            let k = |f: &str| format!("drill[{i}].{f}");
            name_ok(&mut p, k("name"), "drill", &r.name);
            let interval = interval_of(&mut p, k("interval"), r.interval, drill::DRILL_INTERVAL);
            if let Some((probe, timeout)) = drill::validate(&mut p, i, r) {
                probes.push(Scheduled {
                    probe: ProbeConfig::Drill(Box::new(probe)),
                    interval,
                    timeout,
                });
            }
        }

        p.finish()?;
        Ok(Config {
            collector,
            spool,
            start_jitter: raw.schedule.start_jitter.unwrap_or(Duration::from_secs(30)),
            probe_timeout: default_timeout,
            probes,
        })
    }
}

/// True when `path` exists and is not a directory. Asked on a helper thread with a short
/// deadline: a hung NFS mount under /backup must not stop the agent from starting (the probe
/// reports such a mount as a timeout later, which is the useful place for it).
fn is_file_not_dir(path: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(
            std::fs::metadata(&owned)
                .map(|m| !m.is_dir())
                .unwrap_or(false),
        );
    });
    rx.recv_timeout(std::time::Duration::from_secs(2))
        .unwrap_or(false)
}

/// Why a PEM file is unusable, if it is.
fn pem_problem(path: &Path, is_key: bool) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = path.display();
    if is_key {
        return PrivateKeyDer::from_pem_file(path)
            .err()
            .map(|e| format!("{shown}: not a private key in PEM form ({e})"));
    }
    match CertificateDer::pem_file_iter(path).map(|it| it.collect::<Result<Vec<_>, _>>()) {
        Ok(Ok(certs)) if !certs.is_empty() => None,
        Ok(Ok(_)) => Some(format!("{shown}: no certificate found")),
        Ok(Err(e)) | Err(e) => Some(format!("{shown}: not a PEM certificate ({e})")),
    }
}

fn default_dir(name: &str, path: &str, max_age_secs: u64) -> RawBackupDir {
    RawBackupDir {
        name: name.into(),
        path: path.into(),
        max_age: Some(Duration::from_secs(max_age_secs)),
        interval: None,
        timeout: None,
        max_depth: None,
        max_entries: None,
        ignore_suffixes: None,
    }
}

/// `text` validated as if read from /etc/backwatch/agent.toml, the error as text: for the
/// tests of the probe sections (`config/*.rs`).
#[cfg(test)]
pub(crate) fn load_str(text: &str) -> Result<Config, String> {
    let path = Path::new("/etc/backwatch/agent.toml");
    backwatch_proto::config::parse_toml(path, text)
        .and_then(|raw| Config::validate(path, raw))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::config::parse_toml;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("/etc/backwatch/agent.toml");
        Config::validate(path, parse_toml(path, text)?)
    }

    #[test]
    fn defaults_follow_the_procedure() {
        let c = load("").unwrap();
        let ids: Vec<_> = c.probes.iter().map(|s| s.probe.check_id()).collect();
        assert_eq!(ids, ["backup.daily", "backup.weekly", "disk.backup"]);
        assert_eq!(c.probes[0].interval, BACKUP_INTERVAL);
        assert_eq!(c.probes[2].interval, DISK_INTERVAL);
        assert!(c.collector.is_none());
    }

    #[test]
    fn timeouts_come_from_the_section_then_the_schedule_then_two_minutes() {
        let c = load("[[disk]]\nname = \"a\"\npath = \"/\"\ntimeout = \"5s\"\n[[disk]]\nname = \"b\"\npath = \"/\"\n").unwrap();
        let t: Vec<_> = c.probes.iter().map(|s| s.timeout.as_secs()).collect();
        assert_eq!(t, [120, 120, 5, 120]);
        let c =
            load("[schedule]\ntimeout = \"30s\"\n[[disk]]\nname = \"a\"\npath = \"/\"\n").unwrap();
        let t: Vec<_> = c.probes.iter().map(|s| s.timeout.as_secs()).collect();
        assert_eq!(t, [30, 30, 30]);
        let err = load("[schedule]\ntimeout = \"0s\"\n[[disk]]\nname = \"agent-spool\"\npath = \"/\"\ntimeout = \"0s\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("schedule.timeout: must be at least 1s"),
            "{err}"
        );
        assert!(
            err.contains("disk[0].timeout: must be at least 1s"),
            "{err}"
        );
        assert!(
            err.contains("disk[0].name: \"agent-spool\" is reserved"),
            "{err}"
        );
    }

    #[test]
    fn wal_probe_defaults_to_every_15_minutes() {
        let c = load("[[wal]]\nname = \"main\"\ndsn = \"host=/tmp dbname=postgres\"\n").unwrap();
        let wal = c
            .probes
            .iter()
            .find(|s| s.probe.check_id() == "wal.main")
            .unwrap();
        assert_eq!(wal.interval, WAL_INTERVAL);
    }

    #[test]
    fn bad_interval_names_file_line_and_key() {
        let err = load("[[disk]]\nname = \"backup\"\npath = \"/backup\"\ninterval = \"fifteen\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(
                "/etc/backwatch/agent.toml:4:12 disk[0].interval: \"fifteen\" is not a duration"
            ),
            "{err}"
        );
    }

    #[test]
    fn plaintext_collector_and_missing_files_are_all_reported() {
        let err = load("[collector]\nurl = \"http://c:7443\"\nca = \"/nonexistent/ca.pem\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("collector.url: \"http://c:7443\" must be an https:// URL"),
            "{err}"
        );
        assert!(
            err.contains("collector.ca: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        assert!(err.contains("collector.cert: is required"), "{err}");
    }

    #[test]
    fn certificate_files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "a.pem", "a-key.pem"] {
            std::fs::write(dir.path().join(f), "garbage").unwrap();
        }
        let path = dir.path().join("agent.toml");
        let text = "[collector]\nurl = \"https://c:7443\"\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n";
        let err = Config::validate(&path, parse_toml(&path, text).unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("collector.ca: ") && err.contains("no certificate found"),
            "{err}"
        );
        assert!(
            err.contains("collector.key: ") && err.contains("not a private key"),
            "{err}"
        );
    }

    #[test]
    fn malformed_dsn_is_refused_without_echoing_it() {
        let err =
            load("[[wal]]\nname = \"main\"\ndsn = \"host=/tmp password=s3cret port=notaport\"\n")
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.contains("wal[0].dsn: is not a valid PostgreSQL connection string"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn duplicate_and_invalid_names_are_refused() {
        let err = load(
            "[[disk]]\nname = \"a\"\npath = \"/\"\n[[disk]]\nname = \"a\"\npath = \"/tmp\"\n[[backup_dir]]\nname = \"Daily Set\"\npath = \"/b\"\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("disk[1].name: \"a\" is used twice"), "{err}");
        assert!(
            err.contains("backup_dir[0].name: \"Daily Set\" is not a valid name"),
            "{err}"
        );
    }

    #[test]
    fn backup_path_that_is_a_file_is_refused() {
        let err = load("[[backup_dir]]\nname = \"daily\"\npath = \"/etc/hostname\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("backup_dir[0].path: /etc/hostname is not a directory"),
            "{err}"
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Fragments that make the parser go deep: real keys, real sections, odd values.
        fn toml_soup() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("[collector]\n".to_string()),
                Just("[[wal]]\nname = \"main\"\n".to_string()),
                Just("[[disk]]\n".to_string()),
                Just("[[backup_dir]]\n".to_string()),
                Just("[spool]\n".to_string()),
                Just("interval = \"".to_string()),
                Just("dsn = \"host=/tmp port=".to_string()),
                Just("path = \"/\"\n".to_string()),
                Just("url = \"https://x:1\"\n".to_string()),
                Just("max_results = 0\n".to_string()),
                ".{0,12}",
                "[0-9a-z =\"\\[\\]\n.]{0,20}",
            ];
            proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_file_content_is_a_config_or_a_named_error(text in toml_soup()) {
                let path = Path::new("/etc/backwatch/agent.toml");
                match parse_toml::<RawConfig>(path, &text) {
                    Ok(raw) => {
                        if let Err(e) = Config::validate(path, raw) {
                            prop_assert!(e.to_string().starts_with("/etc/backwatch/agent.toml"));
                        }
                    }
                    Err(e) => prop_assert!(e.to_string().starts_with("/etc/backwatch/agent.toml")),
                }
            }
        }
    }
}
