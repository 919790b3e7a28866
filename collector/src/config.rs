//! Collector configuration: raw TOML structs (`deny_unknown_fields`) validated into [`Config`].
//!
//! Thresholds have three layers, merged before a rule runs: built-in defaults from the
//! operations procedure, `[thresholds]`, then every matching `[[overrides]]` in file order
//! (by host name pattern or by group from `[groups]`).

pub mod alerting;
pub mod effective;
pub mod enroll;
pub mod http_auth;
pub mod maintenance;
pub mod reloadable;
pub mod reports;

use crate::rules::{DiskLimits, Limits, RecoveredFailurePolicy, WalLimits};
use backwatch_common::config::{ConfigError, Problems, de_opt_duration, load_toml};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// === raw ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub grpc: RawGrpc,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub silence: RawSilence,
    #[serde(default)]
    pub thresholds: RawThresholds,
    /// Group name -> host names or patterns (`*` matches any run of characters) and label
    /// selectors (`env=prod`, see `labels`).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub overrides: Vec<RawOverride>,
    /// Alerting: lifecycle policy, delivery, SMTP, procedures, routes (see `alerting`).
    #[serde(default)]
    pub alerts: alerting::RawAlerts,
    #[serde(default)]
    pub delivery: alerting::RawDelivery,
    pub smtp: Option<alerting::RawSmtp>,
    #[serde(default)]
    pub procedures: BTreeMap<String, String>,
    #[serde(default)]
    pub routes: Vec<alerting::RawRoute>,
    /// The daily and monthly reports' schedule (see `reports`).
    #[serde(default)]
    pub reports: reports::RawReports,
    /// Enrollment of new hosts and certificate renewal (see `enroll`); off without it.
    pub enroll: Option<enroll::RawEnroll>,
    /// Recurring maintenance windows (see `maintenance`).
    #[serde(default)]
    pub maintenance: Vec<maintenance::RawWindow>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    pub listen: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Agent host names refused even with a valid certificate (a lost or retired host).
    #[serde(default)]
    pub deny_hosts: Vec<String>,
    /// SHA-256 fingerprints (hex) of agent certificates refused (a stolen certificate).
    #[serde(default)]
    pub deny_fingerprints: Vec<String>,
    /// Streams one agent identity may hold open at once (default 4).
    pub max_streams_per_agent: Option<u32>,
    /// Streams one agent identity may open per minute (default 20).
    pub max_streams_per_minute: Option<u32>,
    /// Checks one host may have (default 200); results of further checks are refused.
    pub max_checks_per_host: Option<u32>,
    /// Connections open at once (default 10000: each agent keeps one).
    pub max_connections: Option<usize>,
    /// TLS handshakes in progress at once (default 256).
    pub max_handshakes: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// Base URL of the dashboard as people reach it, for links in notifications.
    pub public_url: Option<String>,
    /// Dashboard and API access (see `http_auth`): bearer tokens, each from a file.
    #[serde(default)]
    pub tokens: Vec<http_auth::RawToken>,
    /// Header naming the user, believed only from `trusted_proxies`.
    pub trusted_user_header: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Proxy users (names or `*` patterns) who may acknowledge; the others read.
    #[serde(default)]
    pub ack_users: Vec<String>,
    /// HTTPS: certificate chain and key (PEM), both or neither; reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections open at once (default 1024).
    pub max_connections: Option<usize>,
    /// TLS handshakes in progress at once (default 64).
    pub max_handshakes: Option<usize>,
    /// A request's headers must arrive within this (default "10s").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub header_timeout: Option<Duration>,
    /// A connection that starts no request for this long is closed (default "60s").
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub retention: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSilence {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub host_after: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub check_grace: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub sweep_every: Option<Duration>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub disk: Option<RawDisk>,
    #[serde(default)]
    pub backup: BTreeMap<String, RawBackup>,
    pub wal: Option<RawWal>,
    pub archive: Option<RawArchive>,
    pub settings: Option<RawSettings>,
    pub drill: Option<RawDrill>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub warning_pct: Option<u8>,
    pub critical_pct: Option<u8>,
    pub hysteresis_pts: Option<u8>,
    pub inode_warning_pct: Option<u8>,
    pub inode_critical_pct: Option<u8>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub grace: Option<Duration>,
    pub min_size_bytes: Option<u64>,
    /// The newest plain base backup taking longer is a warning (default 4 h).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_duration: Option<Duration>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_delay: Option<Duration>,
    pub max_pending: Option<u64>,
    pub expect_archiving: Option<bool>,
    pub on_recovered_failure: Option<String>,
    /// Data at risk older than this is critical (default 15 min).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_data_at_risk: Option<Duration>,
    /// ... and older than this a warning (default off).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub warn_data_at_risk: Option<Duration>,
    /// A base backup sent for longer is a warning (default 4 h).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_base_backup_duration: Option<Duration>,
}

/// `[thresholds.archive]`: the WAL archive directory checks (`archive.<name>`).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    /// Wins over the agents' `min_retention` (default: theirs, else 7 days).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_retention: Option<Duration>,
    /// Warning when the oldest segment kept is older: archive cleanup is not running (off).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_retention: Option<Duration>,
    /// Gaps this close to the newest segment are "probably in flight" (default 4).
    pub in_flight_segments: Option<u64>,
}

/// `[thresholds.settings]`: WAL configuration compliance (`settings.<name>`).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// The longest archive_timeout allowed (default 5 min, the procedure's 300 s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_archive_timeout: Option<Duration>,
}

/// `[thresholds.drill]`: restore drills (`drill.<name>`); unset keys leave the agents'.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    /// Warning when a drill's recovery time (RTO) is above this.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_rto: Option<Duration>,
    /// Critical when the recovered point falls further short of the target.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_shortfall: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub thresholds: RawThresholds,
}

// === validated ===

#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    pub tls: TlsFiles,
    pub access: Access,
    pub http_listen: SocketAddr,
    pub http_auth: http_auth::HttpAuth,
    /// `[http]`: HTTPS, connection caps and timeouts of the HTTP listener.
    pub http: crate::http_serve::HttpListen,
    /// `grpc.max_connections`, `grpc.max_handshakes`.
    pub grpc_limits: crate::listen::Limits,
    pub store_url: String,
    /// Raw results older than this are deleted (default 90 days).
    pub store_retention: Duration,
    pub silence: Silence,
    pub thresholds: Thresholds,
    pub alerting: alerting::Alerting,
    pub reports: reports::Reports,
    /// `[enroll]`, when enrollment is on.
    pub enroll: Option<enroll::Enroll>,
}

/// Who may stream, beyond holding a certificate of the fleet CA. Reloaded on SIGHUP.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    pub deny_hosts: Vec<String>,
    /// Lowercase hex, no separators.
    pub deny_fingerprints: Vec<String>,
    pub max_streams_per_agent: u32,
    /// New streams per identity per minute (a token bucket of this size, refilled evenly).
    pub max_streams_per_minute: u32,
    pub max_checks_per_host: u32,
}

impl Access {
    pub fn denies(&self, host: &str, fingerprint: &str) -> bool {
        self.deny_hosts.iter().any(|h| h == host)
            || self.deny_fingerprints.iter().any(|f| f == fingerprint)
    }

    /// The first of `renewed_from` (the certificates a certificate was renewed from) that
    /// `deny_fingerprints` lists: denying a certificate denies every renewal of it.
    pub fn denied_ancestor<'a>(&self, renewed_from: &'a [String]) -> Option<&'a str> {
        renewed_from
            .iter()
            .find(|a| self.deny_fingerprints.contains(a))
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Silence {
    /// A host with no contact for this long is silent and its checks unknown (default 30 min).
    pub host_after: Duration,
    /// A check is overdue (unknown) after 2 × its interval + this grace (default 5 min).
    pub check_grace: Duration,
    /// How often silence is evaluated (default 30 s).
    pub sweep_every: Duration,
}

/// Global thresholds plus overrides; `for_host` merges them for one host.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub base: Limits,
    /// Group name -> its members: host name patterns and label selectors.
    groups: BTreeMap<String, Vec<crate::labels::Member>>,
    overrides: Vec<(Vec<String>, Vec<String>, RawThresholds)>,
    /// The fleet's labels, for the groups that select by label. Shared with whoever learns
    /// them (ingest, the store refresh), and kept across a configuration reload.
    labels: crate::labels::HostLabels,
}

pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:7443";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";
pub const DEFAULT_STORE_URL: &str = "sqlite:///var/lib/backwatch/collector.db";
/// Raw results, hourly rollups and finished notifications kept by default: a quarter of detail;
/// daily rollups and alerts are kept for good (see `retention`).
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
pub const DEFAULT_GRPC_LIMITS: crate::listen::Limits = crate::listen::Limits {
    max_connections: 10_000,
    max_handshakes: 256,
};
pub const DEFAULT_HTTP_LIMITS: crate::listen::Limits = crate::listen::Limits {
    max_connections: 1024,
    max_handshakes: 64,
};
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A listener's caps from its two keys; a zero is refused (it would refuse everyone).
pub fn limits(
    p: &mut Problems,
    section: &str,
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    default: crate::listen::Limits,
) -> crate::listen::Limits {
    let l = crate::listen::Limits {
        max_connections: max_connections.unwrap_or(default.max_connections),
        max_handshakes: max_handshakes.unwrap_or(default.max_handshakes),
    };
    // tokio's semaphores hold at most this many permits.
    const MAX: usize = 1 << 24;
    for (key, v) in [
        ("max_connections", l.max_connections),
        ("max_handshakes", l.max_handshakes),
    ] {
        if v == 0 || v > MAX {
            p.push(
                format!("{section}.{key}"),
                format!("must be between 1 and {MAX}"),
            );
        }
    }
    l
}

impl Thresholds {
    /// The base limits, or every problem of `[thresholds]`.
    pub fn new(base: &RawThresholds) -> Result<Self, Bad> {
        let mut limits = Limits::default();
        let bad = apply(&mut limits, base);
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(Thresholds {
            base: limits,
            ..Default::default()
        })
    }

    /// The groups `host` belongs to, by its name and its current labels.
    pub fn groups_of(&self, host: &str) -> Vec<&str> {
        let by_label = self.groups.values().flatten().any(|m| m.is_label());
        let labels = if by_label {
            self.labels.of(host)
        } else {
            Default::default()
        };
        self.groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m.matches(host, &labels)))
            .map(|(g, _)| g.as_str())
            .collect()
    }

    /// The registry group membership reads labels from.
    pub fn labels(&self) -> &crate::labels::HostLabels {
        &self.labels
    }

    /// These thresholds reading labels from `labels` (the running collector's registry).
    pub fn with_labels(mut self, labels: crate::labels::HostLabels) -> Self {
        self.labels = labels;
        self
    }

    pub fn for_host(&self, host: &str) -> Limits {
        let groups = self.groups_of(host);
        let mut limits = self.base.clone();
        for (hosts, ogroups, raw) in &self.overrides {
            let hit = hosts.iter().any(|p| glob_match(p, host))
                || ogroups.iter().any(|g| groups.contains(&g.as_str()));
            if hit {
                // Validated at load time: nothing to report here.
                let _ = apply(&mut limits, raw);
            }
        }
        limits
    }
}

pub use backwatch_common::config::glob_match;

/// Every problem of one `[thresholds]` table: the key below it and what is wrong.
type Bad = Vec<(String, String)>;

/// Merges `raw` into `l`, returning every problem found (none: the limits are usable).
fn apply(l: &mut Limits, raw: &RawThresholds) -> Bad {
    let mut bad = Bad::new();
    if let Some(d) = &raw.disk {
        let DiskLimits {
            warning_pct,
            critical_pct,
            hysteresis_pts,
            inode_warning_pct,
            inode_critical_pct,
        } = &mut l.disk;
        set(warning_pct, d.warning_pct);
        set(critical_pct, d.critical_pct);
        set(hysteresis_pts, d.hysteresis_pts);
        set(inode_warning_pct, d.inode_warning_pct);
        set(inode_critical_pct, d.inode_critical_pct);
        if l.disk.warning_pct > 100 || l.disk.critical_pct > 100 {
            bad.push((
                "disk".into(),
                "percentages must be between 0 and 100".into(),
            ));
        }
        if l.disk.warning_pct > l.disk.critical_pct {
            bad.push((
                "disk.warning_pct".into(),
                format!(
                    "{} is above critical_pct ({})",
                    l.disk.warning_pct, l.disk.critical_pct
                ),
            ));
        }
    }
    for (name, b) in &raw.backup {
        let entry = l.backup.entry(name.clone()).or_default();
        if b.max_age.is_some() {
            entry.max_age = b.max_age;
        }
        set(&mut entry.grace, b.grace);
        if b.min_size_bytes.is_some() {
            entry.min_size_bytes = b.min_size_bytes;
        }
        set(&mut entry.max_duration, b.max_duration);
        if entry.max_duration.is_zero() {
            bad.push((
                format!("backup.{name}.max_duration"),
                "must be more than 0".into(),
            ));
        }
        if entry.max_age == Some(Duration::ZERO) {
            bad.push((
                format!("backup.{name}.max_age"),
                "must be more than 0".into(),
            ));
        }
    }
    if let Some(w) = &raw.wal {
        let WalLimits {
            max_delay,
            max_pending,
            expect_archiving,
            on_recovered_failure,
            max_data_at_risk,
            warn_data_at_risk,
            max_base_backup_duration,
        } = &mut l.wal;
        set(max_delay, w.max_delay);
        set(max_base_backup_duration, w.max_base_backup_duration);
        set(max_data_at_risk, w.max_data_at_risk);
        if w.warn_data_at_risk.is_some() {
            *warn_data_at_risk = w.warn_data_at_risk;
        }
        if w.max_pending.is_some() {
            *max_pending = w.max_pending;
        }
        set(expect_archiving, w.expect_archiving);
        if let Some(p) = &w.on_recovered_failure {
            *on_recovered_failure = match p.as_str() {
                "record" => RecoveredFailurePolicy::Record,
                "warn" => RecoveredFailurePolicy::Warn,
                other => {
                    bad.push((
                        "wal.on_recovered_failure".into(),
                        format!("{other:?} is not one of \"record\", \"warn\""),
                    ));
                    *on_recovered_failure
                }
            };
        }
        if l.wal.max_delay.is_zero() {
            bad.push(("wal.max_delay".into(), "must be more than 0".into()));
        }
        if l.wal.max_base_backup_duration.is_zero() {
            bad.push((
                "wal.max_base_backup_duration".into(),
                "must be more than 0".into(),
            ));
        }
        if l.wal.max_data_at_risk.is_zero() {
            bad.push(("wal.max_data_at_risk".into(), "must be more than 0".into()));
        }
        if let Some(w) = l.wal.warn_data_at_risk
            && w >= l.wal.max_data_at_risk
        {
            bad.push((
                "wal.warn_data_at_risk".into(),
                format!(
                    "must be less than max_data_at_risk ({}s)",
                    l.wal.max_data_at_risk.as_secs()
                ),
            ));
        }
    }
    if let Some(a) = &raw.archive {
        if a.min_retention.is_some() {
            l.archive.min_retention = a.min_retention;
        }
        if a.max_retention.is_some() {
            l.archive.max_retention = a.max_retention;
        }
        set(&mut l.archive.in_flight_segments, a.in_flight_segments);
        if l.archive.min_retention == Some(Duration::ZERO) {
            bad.push(("archive.min_retention".into(), "must be more than 0".into()));
        }
        let min = l
            .archive
            .min_retention
            .unwrap_or(crate::rules::archive::DEFAULT_MIN_RETENTION);
        if l.archive.max_retention.is_some_and(|max| max <= min) {
            bad.push((
                "archive.max_retention".into(),
                format!(
                    "must be more than the minimum retention ({}s)",
                    min.as_secs()
                ),
            ));
        }
    }
    if let Some(t) = &raw.settings {
        set(&mut l.settings.max_archive_timeout, t.max_archive_timeout);
        if l.settings.max_archive_timeout.is_zero() {
            bad.push((
                "settings.max_archive_timeout".into(),
                "must be more than 0".into(),
            ));
        }
    }
    if let Some(d) = &raw.drill {
        for (key, v, slot) in [
            ("max_rto", d.max_rto, &mut l.drill.max_rto),
            ("max_shortfall", d.max_shortfall, &mut l.drill.max_shortfall),
        ] {
            if v == Some(Duration::ZERO) {
                bad.push((format!("drill.{key}"), "must be more than 0".into()));
            } else if v.is_some() {
                *slot = v;
            }
        }
    }
    bad
}

fn set<T: Copy>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = load_toml(path)?;
        Config::validate(path, raw)
    }

    pub fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut p = Problems::new(path);
        let base = path.parent().unwrap_or(Path::new("."));
        let addr = |p: &mut Problems, key: &str, v: Option<String>, default: &str| {
            let text = v.unwrap_or_else(|| default.to_string());
            text.parse::<SocketAddr>().unwrap_or_else(|_| {
                p.push(
                    key,
                    format!("{text:?} is not an address (example: \"0.0.0.0:7443\")"),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let grpc_listen = addr(&mut p, "grpc.listen", raw.grpc.listen, DEFAULT_GRPC_LISTEN);
        let http_listen = addr(&mut p, "http.listen", raw.http.listen, DEFAULT_HTTP_LISTEN);
        let file = |p: &mut Problems, key: &str, v: Option<PathBuf>| match v {
            None => {
                p.push(
                    key,
                    "is required (a PEM file; `backwatch-collector certs --dir DIR` makes one)",
                );
                PathBuf::new()
            }
            Some(f) => {
                let f = if f.is_relative() { base.join(f) } else { f };
                if let Err(e) = std::fs::metadata(&f) {
                    p.push(key, format!("cannot read {}: {e}", f.display()));
                }
                f
            }
        };
        let tls = TlsFiles {
            ca: file(&mut p, "grpc.ca", raw.grpc.ca),
            cert: file(&mut p, "grpc.cert", raw.grpc.cert),
            key: file(&mut p, "grpc.key", raw.grpc.key),
        };
        // Files that exist must also be what they claim: say which key holds a bad PEM now,
        // not as a TLS error at the first connection.
        if p.is_empty() {
            if let Err(e) = crate::tls::read_certs(&tls.ca) {
                p.push("grpc.ca", e.to_string());
            }
            if let Err(e) = crate::tls::read_certs(&tls.cert) {
                p.push("grpc.cert", e.to_string());
            }
            if let Err(e) = crate::tls::read_key(&tls.key) {
                p.push("grpc.key", e.to_string());
            }
        }
        let mut deny_fingerprints = Vec::new();
        for (i, f) in raw.grpc.deny_fingerprints.iter().enumerate() {
            let clean: String = f
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_lowercase();
            if clean.len() != 64 || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
                p.push(
                    format!("grpc.deny_fingerprints[{i}]"),
                    format!("{f:?} is not a SHA-256 fingerprint (64 hex digits, ':' allowed)"),
                );
            }
            deny_fingerprints.push(clean);
        }
        let access = Access {
            deny_hosts: raw.grpc.deny_hosts.clone(),
            deny_fingerprints,
            max_streams_per_agent: raw.grpc.max_streams_per_agent.unwrap_or(4),
            max_streams_per_minute: raw.grpc.max_streams_per_minute.unwrap_or(20),
            max_checks_per_host: raw.grpc.max_checks_per_host.unwrap_or(200),
        };
        for (key, v) in [
            ("grpc.max_streams_per_agent", access.max_streams_per_agent),
            ("grpc.max_streams_per_minute", access.max_streams_per_minute),
            ("grpc.max_checks_per_host", access.max_checks_per_host),
        ] {
            if v == 0 {
                p.push(key, "must be at least 1");
            }
        }
        let store_url = raw
            .store
            .url
            .unwrap_or_else(|| DEFAULT_STORE_URL.to_string());
        if !(store_url.starts_with("sqlite:")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            p.push(
                "store.url",
                "must start with sqlite: (sqlite:///var/lib/backwatch/collector.db) or postgres://",
            );
        }
        let store_retention = raw
            .store
            .retention
            .unwrap_or(Duration::from_secs(DEFAULT_RETENTION_DAYS * 86_400));
        // The dashboard's charts read a week of raw results.
        if store_retention < Duration::from_secs(7 * 86_400) {
            p.push(
                "store.retention",
                "must be at least 7d (the dashboard shows 7 days)",
            );
        }
        let silence = Silence {
            host_after: raw
                .silence
                .host_after
                .unwrap_or(Duration::from_secs(30 * 60)),
            check_grace: raw
                .silence
                .check_grace
                .unwrap_or(Duration::from_secs(5 * 60)),
            sweep_every: raw.silence.sweep_every.unwrap_or(Duration::from_secs(30)),
        };
        if silence.sweep_every.is_zero() {
            p.push("silence.sweep_every", "must be more than 0");
        }
        let mut thresholds = Thresholds::new(&raw.thresholds).unwrap_or_else(|bad| {
            for (key, message) in bad {
                p.push(format!("thresholds.{key}"), message);
            }
            Thresholds::default()
        });
        for (i, o) in raw.overrides.into_iter().enumerate() {
            if o.hosts.is_empty() && o.groups.is_empty() {
                p.push(format!("overrides[{i}]"), "needs `hosts` or `groups`");
            }
            for g in &o.groups {
                if !raw.groups.contains_key(g) {
                    p.push(
                        format!("overrides[{i}].groups"),
                        format!("no group {g:?} in [groups]"),
                    );
                }
            }
            let mut probe = thresholds.base.clone();
            for (key, message) in apply(&mut probe, &o.thresholds) {
                p.push(format!("overrides[{i}].thresholds.{key}"), message);
            }
            thresholds.overrides.push((o.hosts, o.groups, o.thresholds));
        }
        let grpc_limits = limits(
            &mut p,
            "grpc",
            raw.grpc.max_connections,
            raw.grpc.max_handshakes,
            DEFAULT_GRPC_LIMITS,
        );
        let http_tls = match (raw.http.tls_cert, raw.http.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let files = crate::http_serve::HttpTlsFiles {
                    cert: if cert.is_relative() {
                        base.join(cert)
                    } else {
                        cert
                    },
                    key: if key.is_relative() {
                        base.join(key)
                    } else {
                        key
                    },
                };
                if let Err(e) = crate::http_serve::load_certified(&files) {
                    p.push("http.tls_cert", e);
                }
                Some(files)
            }
            (Some(_), None) => {
                p.push(
                    "http.tls_key",
                    "is required with http.tls_cert (both or neither)",
                );
                None
            }
            (None, Some(_)) => {
                p.push(
                    "http.tls_cert",
                    "is required with http.tls_key (both or neither)",
                );
                None
            }
        };
        let http = crate::http_serve::HttpListen {
            limits: limits(
                &mut p,
                "http",
                raw.http.max_connections,
                raw.http.max_handshakes,
                DEFAULT_HTTP_LIMITS,
            ),
            header_timeout: raw
                .http
                .header_timeout
                .unwrap_or(DEFAULT_HTTP_HEADER_TIMEOUT),
            idle_timeout: raw.http.idle_timeout.unwrap_or(DEFAULT_HTTP_IDLE_TIMEOUT),
            tls: http_tls,
        };
        if http.header_timeout.is_zero() {
            p.push("http.header_timeout", "must be more than 0");
        }
        if http.idle_timeout.is_zero() {
            p.push("http.idle_timeout", "must be more than 0");
        }
        let mut http_auth = http_auth::validate(
            &mut p,
            http_auth::RawHttpAuth {
                tokens: raw.http.tokens,
                trusted_user_header: raw.http.trusted_user_header,
                trusted_proxies: raw.http.trusted_proxies,
                ack_users: raw.http.ack_users,
                listen: http_listen,
                base,
            },
        );
        // Over plain HTTP beyond this machine a bearer token crosses the network in clear:
        // refused, unless a TLS proxy in front is configured (it terminates TLS).
        http_auth.plain_bearer_refused =
            http.tls.is_none() && !http_listen.ip().is_loopback() && http_auth.proxy.is_none();
        let mut alerting = alerting::validate(
            &mut p,
            alerting::RawAlerting {
                alerts: raw.alerts,
                delivery: raw.delivery,
                smtp: raw.smtp,
                routes: raw.routes,
                procedures: raw.procedures,
                public_url: raw.http.public_url,
                groups: &raw.groups,
                http_listen,
                grpc_listen,
                base,
            },
        );
        let enroll = raw
            .enroll
            .map(|e| enroll::validate(&mut p, e, base, &tls.ca));
        let mut reports = reports::validate(&mut p, raw.reports);
        reports.stale_grace = silence.check_grace;
        alerting.maintenance = maintenance::validate(&mut p, raw.maintenance, &raw.groups);
        thresholds.groups = raw
            .groups
            .into_iter()
            .map(|(name, entries)| {
                let members = entries
                    .iter()
                    .filter_map(|e| {
                        crate::labels::Member::parse(e)
                            .map_err(|problem| p.push(format!("groups.{name}"), problem))
                            .ok()
                    })
                    .collect();
                (name, members)
            })
            .collect();
        p.finish()?;
        Ok(Config {
            grpc_listen,
            tls,
            access,
            http_listen,
            http_auth,
            http,
            grpc_limits,
            store_url,
            store_retention,
            silence,
            thresholds,
            alerting,
            reports,
            enroll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_common::config::parse_toml;

    /// Real PEM files under the names the test configurations use.
    fn write_pems(dir: &Path) {
        crate::certs::issue(dir, &[], &[], 1).unwrap();
        std::fs::copy(dir.join("collector.pem"), dir.join("c.pem")).unwrap();
        std::fs::copy(dir.join("collector-key.pem"), dir.join("k.pem")).unwrap();
    }

    #[test]
    fn pem_files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path());
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let path = dir.path().join("c.toml");
        let raw = parse_toml(
            &path,
            "[grpc]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        let err = Config::validate(&path, raw).unwrap_err().to_string();
        assert!(
            err.contains("grpc.ca: ") && err.contains("no certificate found"),
            "{err}"
        );
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path());
        let path = dir.path().join("collector.toml");
        let full = format!("[grpc]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n{text}");
        let raw = parse_toml(&path, &full)?;
        Config::validate(&path, raw)
    }

    #[test]
    fn defaults_follow_the_procedure() {
        let c = load("").unwrap();
        let l = c.thresholds.for_host("db1");
        assert_eq!((l.disk.warning_pct, l.disk.critical_pct), (75, 85));
        assert_eq!(l.wal.max_delay, Duration::from_secs(900));
        // No collector-side backup limit: the agent's expectation, then the procedure's.
        assert_eq!(l.backup_for("weekly").max_age, None);
        assert_eq!(
            crate::rules::backup::default_max_age("weekly"),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(c.store_url, DEFAULT_STORE_URL);
    }

    #[test]
    fn overrides_apply_by_group_and_host_pattern_in_order() {
        let c = load(
            "[groups]\nreporting = [\"rep-*\"]\n\
             [[overrides]]\ngroups = [\"reporting\"]\n[overrides.thresholds.disk]\nwarning_pct = 90\ncritical_pct = 95\n\
             [[overrides]]\nhosts = [\"rep-2\"]\n[overrides.thresholds.wal]\nmax_delay = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(c.thresholds.for_host("rep-1").disk.warning_pct, 90);
        assert_eq!(
            c.thresholds.for_host("rep-2").wal.max_delay,
            Duration::from_secs(3600)
        );
        assert_eq!(
            c.thresholds.for_host("rep-1").wal.max_delay,
            Duration::from_secs(900)
        );
        assert_eq!(c.thresholds.for_host("db1").disk.warning_pct, 75);
    }

    #[test]
    fn groups_select_by_label_and_a_bad_selector_is_named() {
        let c = load(
            "[groups]\nbilling = [\"cluster=billing*\", \"legacy-db\"]\n\
             [[overrides]]\ngroups = [\"billing\"]\n[overrides.thresholds.disk]\nwarning_pct = 50\ncritical_pct = 60\n",
        )
        .unwrap();
        let labels = c.thresholds.labels();
        labels.set(
            "db1",
            [("cluster".to_string(), "billing-eu".to_string())].into(),
        );
        labels.set(
            "db2",
            [("cluster".to_string(), "orders".to_string())].into(),
        );
        assert_eq!(c.thresholds.groups_of("db1"), ["billing"]);
        assert_eq!(c.thresholds.groups_of("legacy-db"), ["billing"]);
        assert!(c.thresholds.groups_of("db2").is_empty());
        assert_eq!(c.thresholds.for_host("db1").disk.warning_pct, 50);
        assert_eq!(c.thresholds.for_host("db2").disk.warning_pct, 75);

        let e = load("[groups]\nx = [\"2env=prod\", \"env=\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.x: label selector \"2env=prod\""), "{e}");
        assert!(e.contains("\"env=*\" selects any value"), "{e}");
    }

    #[test]
    fn drill_thresholds_are_read_and_overridable() {
        let c = load(
            "[thresholds.drill]\nmax_rto = \"1h\"\n\
             [[overrides]]\nhosts = [\"backup2\"]\n[overrides.thresholds.drill]\nmax_shortfall = \"1m\"\n",
        )
        .unwrap();
        let l = c.thresholds.for_host("backup1").drill;
        assert_eq!(
            (l.max_rto, l.max_shortfall),
            (Some(Duration::from_secs(3600)), None)
        );
        let l = c.thresholds.for_host("backup2").drill;
        assert_eq!(
            (l.max_rto, l.max_shortfall),
            (
                Some(Duration::from_secs(3600)),
                Some(Duration::from_secs(60))
            )
        );
        let err = load("[thresholds.drill]\nmax_rto = \"0s\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("drill.max_rto: must be more than 0"),
            "{err}"
        );
    }

    #[test]
    fn archive_thresholds_are_read_and_overridable() {
        let c = load(
            "[thresholds.archive]\nin_flight_segments = 16\n\
             [[overrides]]\nhosts = [\"db2\"]\n[overrides.thresholds.archive]\nmin_retention = \"14d\"\n",
        )
        .unwrap();
        let l = c.thresholds.for_host("db1");
        assert_eq!(
            (l.archive.in_flight_segments, l.archive.min_retention),
            (16, None)
        );
        assert_eq!(
            c.thresholds.for_host("db2").archive.min_retention,
            Some(Duration::from_secs(14 * 86400))
        );
        assert!(load("[thresholds.archive]\nmin_retention = \"0s\"\n").is_err());
        let err = load("[thresholds.archive]\nmax_retention = \"3d\"\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "archive.max_retention: must be more than the minimum retention (604800s)"
            ),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let err = load(
            "[http]\nlisten = \"nowhere\"\n[store]\nurl = \"mysql://x\"\n\
             [thresholds.disk]\nwarning_pct = 90\ncritical_pct = 80\n\
             [thresholds.wal]\nmax_delay = \"0s\"\non_recovered_failure = \"shout\"\n\
             [[overrides]]\nhosts = [\"db1\"]\n[overrides.thresholds.settings]\nmax_archive_timeout = \"0s\"\n",
        )
        .unwrap_err()
        .to_string();
        // Every threshold problem, not the first only, each under its own key.
        for want in [
            "thresholds.wal.max_delay: must be more than 0",
            "thresholds.wal.on_recovered_failure: \"shout\" is not one of",
            "overrides[0].thresholds.settings.max_archive_timeout: must be more than 0",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
        assert!(
            err.contains("http.listen: \"nowhere\" is not an address"),
            "{err}"
        );
        assert!(err.contains("store.url: must start with sqlite:"), "{err}");
        assert!(
            err.contains("thresholds.disk.warning_pct: 90 is above critical_pct (80)"),
            "{err}"
        );
    }

    #[test]
    fn missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let raw = parse_toml(&path, "[grpc]\nca = \"/nonexistent/ca.pem\"\n").unwrap();
        let err = Config::validate(&path, raw).unwrap_err().to_string();
        assert!(
            err.contains("grpc.ca: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        assert!(err.contains("grpc.cert: is required"), "{err}");
    }

    #[test]
    fn deny_list_normalises_fingerprints_and_refuses_garbage() {
        let fp = "AB:".repeat(31) + "AB";
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path());
        let path = dir.path().join("collector.toml");
        let text = format!(
            "[grpc]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\ndeny_hosts = [\"db7\"]\ndeny_fingerprints = [\"{fp}\"]\n"
        );
        let c = Config::validate(&path, parse_toml(&path, &text).unwrap()).unwrap();
        assert!(c.access.denies("db7", "00"));
        assert!(c.access.denies("db1", &"ab".repeat(32)));
        assert!(!c.access.denies("db1", &"cd".repeat(32)));
        let bad = "[grpc]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\ndeny_fingerprints = [\"xyz\"]\n";
        let err = Config::validate(&path, parse_toml(&path, bad).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grpc.deny_fingerprints[0]: \"xyz\" is not a SHA-256"),
            "{err}"
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("db-*", "db-1"));
        assert!(glob_match("*-prod-*", "eu-prod-7"));
        assert!(!glob_match("db-*", "xdb-1"));
        assert!(glob_match("db1", "db1"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn toml_soup() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("[grpc]\n".to_string()),
                Just("[thresholds.disk]\n".to_string()),
                Just("[thresholds.backup.daily]\n".to_string()),
                Just("[[overrides]]\n".to_string()),
                Just("[groups]\n".to_string()),
                Just("warning_pct = 200\n".to_string()),
                Just("max_delay = \"".to_string()),
                Just("deny_fingerprints = [\"".to_string()),
                ".{0,12}",
                "[0-9a-z_ =\"\\[\\]\n.]{0,20}",
            ];
            proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_file_content_is_a_config_or_a_named_error(text in toml_soup()) {
                let path = Path::new("c.toml");
                match parse_toml::<RawConfig>(path, &text) {
                    Ok(raw) => {
                        if let Err(e) = Config::validate(path, raw) {
                            prop_assert!(e.to_string().starts_with("c.toml"));
                        }
                    }
                    Err(e) => prop_assert!(e.to_string().starts_with("c.toml")),
                }
            }
        }
    }
}
