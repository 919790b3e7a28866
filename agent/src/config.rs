//! Agent configuration: raw TOML (`deny_unknown_fields`) validated into [`Config`].
//!
//! Defaults come from the operations procedure: backup directories `daily` (/backup/daily,
//! 24 h) and `weekly` (/backup/weekly, 7 d) every 6 h; disk space of /backup every hour; WAL
//! archiving every 15 min (needs a `[[wal]]` section with a DSN); the WAL archive directory
//! every hour (needs an `[[archive_dir]]` section, see [`archive_dir`]). Leaving a probe list
//! out means its defaults; writing an empty list (`backup_dir = []`) means none.
//!
//! Each probe kind is one `[[section]]` whose module implements [`Section`]: its raw keys,
//! their validation and its effective settings. [`Config::validate`] registers the sections,
//! one line each; nothing else in the agent names every kind.

pub mod archive_dir;
pub mod backup_dir;
pub mod backup_tool;
pub mod disk;
pub mod drill;
pub mod effective;
pub mod restore;
pub mod settings;
pub mod wal;

use crate::probe::Probe;
use backwatch_common::config::{ConfigError, Problems, de_opt_duration, load_toml};
use backwatch_proto::convert::valid_probe_name;
use backwatch_proto::model::ProbeKind;
use backwatch_proto::model::labels::Labels;
use effective::Settings;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub backup_dir: Option<Vec<backup_dir::RawBackupDir>>,
    pub disk: Option<Vec<disk::RawDisk>>,
    #[serde(default)]
    pub wal: Vec<wal::RawWal>,
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
    #[serde(default)]
    pub settings: Vec<settings::RawSettings>,
    /// What this host is (`env = "prod"`, `cluster = "billing"`), sent to the collector, whose
    /// groups, routes and dashboard can select hosts by it.
    #[serde(default)]
    pub labels: Labels,
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

// === validated ===

pub struct Config {
    pub collector: Option<CollectorLink>,
    pub spool: SpoolConfig,
    pub start_jitter: Duration,
    /// `schedule.timeout`: the file-system probes' default timeout.
    pub probe_timeout: Duration,
    pub probes: Vec<Scheduled>,
    /// Directories where a run killed with the agent may have left its own files (a drill's
    /// scratch copy): cleared before any probe runs.
    pub scratch_dirs: Vec<PathBuf>,
    /// `[labels]`, validated.
    pub labels: Labels,
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
    pub probe: Box<dyn Probe>,
    pub interval: Duration,
    /// A run that takes longer is abandoned and reported as a timeout result.
    pub timeout: Duration,
    /// Runs are expensive (a whole verification, a restore): the schedule resumes across
    /// restarts instead of running again at every start.
    pub resumes: bool,
    /// Its section as `config check` prints it: `[[<section>]]` and the effective keys.
    pub section: &'static str,
    pub settings: Settings,
}

/// One probe kind's `[[section]]` of the file: the raw entry and how it becomes a probe.
/// Implemented once per kind, in `config/<kind>.rs`, and registered by one line in
/// [`Config::validate`].
pub trait Section: Sized {
    /// The section's key: `backup_dir` for `[[backup_dir]]`.
    const KEY: &'static str;
    const KIND: ProbeKind;
    /// Interval when the entry sets none.
    const INTERVAL: Duration;
    /// See [`Scheduled::resumes`].
    const RESUMES: bool = false;

    fn name(&self) -> &str;
    fn interval(&self) -> Option<Duration>;
    /// The probe, or `None` after recording every problem of the entry under `at`'s keys.
    /// Name and interval are already checked.
    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid>;
}

/// A validated entry.
pub struct Valid {
    pub probe: Box<dyn Probe>,
    /// The scheduler's limit for one run.
    pub timeout: Duration,
    /// The entry's keys with defaults filled in, except `name` and `interval`, which
    /// [`Cx`] adds.
    pub settings: Settings,
}

/// Where an entry is in the file, for problem keys: `disk[1]`.
pub struct At {
    section: &'static str,
    index: usize,
}

impl At {
    /// `disk[1].interval`.
    pub fn key(&self, field: &str) -> String {
        format!("{}[{}].{field}", self.section, self.index)
    }
}

/// What validating one section needs of the file as a whole.
pub struct Cx {
    pub problems: Problems,
    /// `schedule.timeout`.
    pub default_timeout: Duration,
    seen: BTreeSet<String>,
    probes: Vec<Scheduled>,
    scratch_dirs: Vec<PathBuf>,
}

impl Cx {
    /// Validate every entry of one section, in file order.
    pub fn section<S: Section>(&mut self, entries: Vec<S>) {
        for (index, entry) in entries.into_iter().enumerate() {
            let at = At {
                section: S::KEY,
                index,
            };
            let name = entry.name().to_string();
            if !valid_probe_name(&name) {
                self.problems.push(
                    at.key("name"),
                    format!("{name:?} is not a valid name (1-64 of a-z, 0-9, '_', '-')"),
                );
            } else if !self
                .seen
                .insert(backwatch_proto::model::check_id(S::KIND, &name))
            {
                self.problems
                    .push(at.key("name"), format!("{name:?} is used twice"));
            }
            let interval = entry.interval().unwrap_or(S::INTERVAL);
            if interval < MIN_INTERVAL {
                self.problems
                    .push(at.key("interval"), "must be at least 1s");
            }
            if let Some(v) = entry.validate(self, &at) {
                debug_assert_eq!(v.probe.kind(), S::KIND, "{} builds its own kind", S::KEY);
                let settings = Settings::named(&name)
                    .duration("interval", interval)
                    .after(v.settings);
                self.probes.push(Scheduled {
                    probe: v.probe,
                    interval,
                    timeout: v.timeout,
                    resumes: S::RESUMES,
                    section: S::KEY,
                    settings,
                });
            }
        }
    }

    /// A run limit: the entry's, else `default`; at least a second.
    pub fn timeout(&mut self, at: &At, value: Option<Duration>, default: Duration) -> Duration {
        let t = value.unwrap_or(default);
        if t < MIN_INTERVAL {
            self.problems.push(at.key("timeout"), "must be at least 1s");
        }
        t
    }

    /// Probes of an earlier section, for an entry that refers to one by name.
    pub fn validated<P: Probe>(&self) -> impl Iterator<Item = &P> {
        self.probes
            .iter()
            .filter_map(|s| s.probe.downcast_ref::<P>())
    }

    /// The `[[wal]]` probe an entry names in its `wal` key (validated before it), or `None`
    /// after naming the problem: the server whose connection the entry borrows.
    pub fn wal(&mut self, at: &At, name: &str) -> Option<crate::probe::wal_archive::WalProbe> {
        use crate::probe::wal_archive::WalProbe;
        let found = self
            .validated::<WalProbe>()
            .find(|w| w.name == name)
            .cloned();
        if found.is_none() {
            let known: Vec<String> = self
                .validated::<WalProbe>()
                .map(|w| w.name.clone())
                .collect();
            self.problems.push(
                at.key("wal"),
                format!(
                    "no [[wal]] probe is named {name:?} (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        found
    }

    /// See [`Config::scratch_dirs`].
    pub fn scratch_dir(&mut self, dir: PathBuf) {
        self.scratch_dirs.push(dir);
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

        let collector = raw.collector.map(|c| collector_link(&mut p, c, rel));

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
        for (name, problem) in backwatch_proto::model::labels::problems(&raw.labels) {
            if name.is_empty() {
                p.push("labels", problem);
            } else {
                p.push(format!("labels.{name}"), problem);
            }
        }
        let default_timeout = raw.schedule.timeout.unwrap_or(PROBE_TIMEOUT);
        if default_timeout < MIN_INTERVAL {
            p.push("schedule.timeout", "must be at least 1s");
        }

        // The registration of every probe kind. Order matters only where a section refers
        // to an earlier one (`archive_dir.wal` names a `[[wal]]`).
        let mut cx = Cx {
            problems: p,
            default_timeout,
            seen: BTreeSet::new(),
            probes: Vec::new(),
            scratch_dirs: Vec::new(),
        };
        cx.section(raw.backup_dir.unwrap_or_else(backup_dir::defaults));
        cx.section(raw.disk.unwrap_or_else(disk::defaults));
        cx.section(raw.wal);
        cx.section(raw.archive_dir);
        cx.section(raw.restore);
        cx.section(raw.pgbackrest);
        cx.section(raw.barman);
        cx.section(raw.drill);
        cx.section(raw.settings);

        cx.problems.finish()?;
        Ok(Config {
            collector,
            spool,
            start_jitter: raw.schedule.start_jitter.unwrap_or(Duration::from_secs(30)),
            probe_timeout: default_timeout,
            probes: cx.probes,
            scratch_dirs: cx.scratch_dirs,
            labels: raw.labels,
        })
    }
}

#[cfg(test)]
impl Config {
    /// The validated probes of one kind, with their schedules.
    pub(crate) fn probes_of<P: Probe>(&self) -> impl Iterator<Item = (&Scheduled, &P)> {
        self.probes
            .iter()
            .filter_map(|s| s.probe.downcast_ref::<P>().map(|p| (s, p)))
    }
}

fn collector_link(
    p: &mut Problems,
    c: RawCollector,
    rel: impl Fn(PathBuf) -> PathBuf,
) -> CollectorLink {
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
                    format!(
                        "{u:?} must be an https:// URL, e.g. \"https://collector.example:7444\""
                    ),
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
}

/// True when `path` exists and is not a directory. Asked on a helper thread with a short
/// deadline: a hung NFS mount under /backup must not stop the agent from starting (the probe
/// reports such a mount as a timeout later, which is the useful place for it).
pub(crate) fn is_file_not_dir(path: &Path) -> bool {
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

/// `text` validated as if read from /etc/backwatch/agent.toml, the error as text: for the
/// tests of the probe sections (`config/*.rs`).
#[cfg(test)]
pub(crate) fn load_str(text: &str) -> Result<Config, String> {
    let path = Path::new("/etc/backwatch/agent.toml");
    backwatch_common::config::parse_toml(path, text)
        .and_then(|raw| Config::validate(path, raw))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_common::config::parse_toml;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("/etc/backwatch/agent.toml");
        Config::validate(path, parse_toml(path, text)?)
    }

    #[test]
    fn defaults_follow_the_procedure() {
        let c = load("").unwrap();
        let ids: Vec<_> = c.probes.iter().map(|s| s.probe.check_id()).collect();
        assert_eq!(ids, ["backup.daily", "backup.weekly", "disk.backup"]);
        assert_eq!(c.probes[0].interval, backup_dir::BACKUP_INTERVAL);
        assert_eq!(c.probes[2].interval, disk::DISK_INTERVAL);
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
    fn labels_are_kept_and_every_bad_one_is_named() {
        let c = load("[labels]\nenv = \"prod\"\ncluster = \"billing (EU)\"\n").unwrap();
        assert_eq!(
            c.labels.get("cluster").map(String::as_str),
            Some("billing (EU)")
        );
        let rendered = effective::render(&c);
        assert!(
            rendered.contains("[labels]\ncluster = \"billing (EU)\"\nenv = \"prod\""),
            "{rendered}"
        );
        let err = load("[labels]\n\"team-name\" = \"x\"\nseverity = \"high\"\nowner = \"\"\n")
            .err()
            .unwrap()
            .to_string();
        for key in ["labels.team-name", "labels.severity", "labels.owner"] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn wal_probe_defaults_to_every_15_minutes() {
        let c = load("[[wal]]\nname = \"main\"\ndsn = \"host=/tmp dbname=postgres\"\n").unwrap();
        let wal = c
            .probes
            .iter()
            .find(|s| s.probe.check_id() == "wal.main")
            .unwrap();
        assert_eq!(wal.interval, wal::WAL_INTERVAL);
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
