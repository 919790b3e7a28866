//! Alerting configuration: `[alerts]`, `[delivery]`, `[smtp]`, `[procedures]`, `[[routes]]`
//! and `http.public_url`, validated into [`Alerting`].
//!
//! Invariants: every problem is reported with its key; the SMTP password is read from its
//! file here and only ever shown as `<redacted>`; `delivery.lease` is longer than twice the
//! longest single delivery attempt, so a live worker never loses a claim mid-attempt.

use crate::alerts::lifecycle::Policy;
use crate::alerts::routes::{Route, Target};
use crate::store::alerts::Severity;
use backwatch_common::config::{Problems, de_opt_duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// === raw ===

/// Two weeks: longer than any maintenance window a team plans at once, short enough that a
/// forgotten silence ends by itself.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(14 * 86_400);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub evaluate_every: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub reminder_every: Option<Duration>,
    pub flap_changes: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub flap_window: Option<Duration>,
    pub unknown_severity: Option<String>,
    pub silent_severity: Option<String>,
    /// Longest silence the API accepts (default 14 days).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_silence: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub retry_initial: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub retry_max: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub give_up_after: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lease: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub poll_every: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub webhook_timeout: Option<Duration>,
    /// How often Alertmanager routes get the open alerts again (default 30 s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub alertmanager_every: Option<Duration>,
    pub worker_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    pub ca_file: Option<PathBuf>,
    pub hello_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub channel: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    pub url: Option<String>,
    /// A file holding the webhook URL (the URL is a credential: keep it out of the main file).
    pub url_file: Option<PathBuf>,
    /// PagerDuty's Events v2 integration key, or a file holding it.
    pub routing_key: Option<String>,
    pub routing_key_file: Option<PathBuf>,
    pub min_status: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub checks: Vec<String>,
    pub alerts: Option<bool>,
    pub daily_summary: Option<bool>,
}

/// What `RawConfig` holds for alerting, handed over as one piece.
pub struct RawAlerting<'a> {
    pub alerts: RawAlerts,
    pub delivery: RawDelivery,
    pub smtp: Option<RawSmtp>,
    pub routes: Vec<RawRoute>,
    pub procedures: BTreeMap<String, String>,
    pub public_url: Option<String>,
    pub groups: &'a BTreeMap<String, Vec<String>>,
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Directory of the configuration file: relative paths are taken from there.
    pub base: &'a Path,
}

// === validated ===

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (refused if the server cannot).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a local relay or a test server only.
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The From mailbox ("Backwatch <backwatch@example.com>").
    pub from: String,
    /// Longest a whole delivery attempt (connect to final answer) may take.
    pub timeout: Duration,
    /// Extra root certificate (PEM) for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
    pub hello_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
    pub lease: Duration,
    pub poll_every: Duration,
    pub webhook_timeout: Duration,
    /// How often Alertmanager routes get the open alerts again: Alertmanager ends an alert
    /// that is not re-sent.
    pub alertmanager_every: Duration,
    /// Names this collector's claims; a restart releases the claims of its previous life.
    pub worker_id: String,
}

#[derive(Debug, Clone)]
pub struct Alerting {
    pub policy: Policy,
    pub evaluate_every: Duration,
    pub routes: Vec<Route>,
    /// Response procedure per check id or check kind (`wal`, `disk.backup`).
    pub procedures: BTreeMap<String, String>,
    /// Base of dashboard links (`{public_url}/hosts/{host}`), no trailing slash.
    pub public_url: String,
    /// Base of the HTTP API for the acknowledge instructions (the public URL: same listener).
    pub api_url: String,
    /// Right-hand side of Message-IDs (the From address's domain).
    pub message_domain: String,
    pub delivery: Delivery,
    pub smtp: Option<Smtp>,
    pub group_names: Vec<String>,
    /// Longest silence accepted: a forgotten silence must end by itself.
    pub max_silence: Duration,
    /// Recurring maintenance windows (`[[maintenance]]`): silences by the calendar.
    pub maintenance: Vec<super::maintenance::Window>,
}

impl Default for Alerting {
    fn default() -> Self {
        let mut p = Problems::new(Path::new(""));
        validate(
            &mut p,
            RawAlerting {
                alerts: RawAlerts::default(),
                delivery: RawDelivery::default(),
                smtp: None,
                routes: Vec::new(),
                procedures: BTreeMap::new(),
                public_url: None,
                groups: &BTreeMap::new(),
                http_listen: SocketAddr::from(([127, 0, 0, 1], 7080)),
                grpc_listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
                base: Path::new("."),
            },
        )
    }
}

fn severity(p: &mut Problems, key: &str, v: Option<String>, default: Severity) -> Severity {
    match v.as_deref().map(str::parse::<Severity>) {
        None => default,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            p.push(key, e);
            default
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "collector".into())
}

pub fn validate(p: &mut Problems, raw: RawAlerting<'_>) -> Alerting {
    let a = raw.alerts;
    let unknown = match a.unknown_severity.as_deref() {
        None => Some(Severity::Warning),
        Some("none") => None,
        Some(s) => match s.parse::<Severity>() {
            Ok(s) => Some(s),
            Err(_) => {
                let msg = format!("{s:?} is not one of \"warning\", \"critical\", \"none\"");
                p.push("alerts.unknown_severity", msg);
                Some(Severity::Warning)
            }
        },
    };
    let reminder = a.reminder_every.unwrap_or(Duration::from_secs(24 * 3600));
    let policy = Policy {
        unknown,
        silent: severity(
            p,
            "alerts.silent_severity",
            a.silent_severity,
            Severity::Critical,
        ),
        flap_changes: a.flap_changes.unwrap_or(5),
        flap_window: a.flap_window.unwrap_or(Duration::from_secs(3600)),
        reminder_every: (!reminder.is_zero()).then_some(reminder),
    };
    if policy.flap_changes == 1 {
        p.push("alerts.flap_changes", "must be 0 (off) or at least 2");
    }
    let max_silence = a.max_silence.unwrap_or(DEFAULT_MAX_SILENCE);
    if max_silence.is_zero() {
        p.push("alerts.max_silence", "must be more than 0");
    }
    let evaluate_every = a.evaluate_every.unwrap_or(Duration::from_secs(2));
    if evaluate_every.is_zero() {
        p.push("alerts.evaluate_every", "must be more than 0");
    }

    let smtp = raw.smtp.map(|s| smtp(p, s, raw.base));
    let routes = routes(p, raw.routes, raw.groups, smtp.is_some(), raw.base);

    let d = raw.delivery;
    let delivery = Delivery {
        retry_initial: d.retry_initial.unwrap_or(Duration::from_secs(30)),
        retry_max: d.retry_max.unwrap_or(Duration::from_secs(30 * 60)),
        give_up_after: d.give_up_after.unwrap_or(Duration::from_secs(3 * 86400)),
        lease: d.lease.unwrap_or(Duration::from_secs(5 * 60)),
        poll_every: d.poll_every.unwrap_or(Duration::from_secs(5)),
        webhook_timeout: d.webhook_timeout.unwrap_or(Duration::from_secs(30)),
        alertmanager_every: d
            .alertmanager_every
            .unwrap_or(crate::notify::alertmanager::RESEND),
        worker_id: d
            .worker_id
            .unwrap_or_else(|| format!("{}:{}", host_name(), raw.grpc_listen.port())),
    };
    for (key, v) in [
        ("delivery.retry_initial", delivery.retry_initial),
        ("delivery.poll_every", delivery.poll_every),
        ("delivery.webhook_timeout", delivery.webhook_timeout),
        ("delivery.alertmanager_every", delivery.alertmanager_every),
    ] {
        if v.is_zero() {
            p.push(key, "must be more than 0");
        }
    }
    if delivery.retry_max < delivery.retry_initial {
        p.push(
            "delivery.retry_max",
            "must be at least delivery.retry_initial",
        );
    }
    // The longest single attempt over the channels the routes use.
    let uses = |email: bool| {
        routes
            .iter()
            .any(|r| matches!(r.target, Target::Email(_)) == email)
    };
    let smtp_attempt = smtp.as_ref().map_or(Duration::ZERO, |s| s.timeout);
    let attempt = match (uses(true), uses(false)) {
        (true, true) => smtp_attempt.max(delivery.webhook_timeout),
        (true, false) => smtp_attempt,
        (false, true) => delivery.webhook_timeout,
        (false, false) => Duration::ZERO,
    };
    if delivery.lease <= attempt * 2 {
        p.push(
            "delivery.lease",
            format!(
                "must be more than twice the longest attempt ({} = smtp.timeout or \
                 delivery.webhook_timeout)",
                humantime::format_duration(attempt)
            ),
        );
    }

    let listen_url = format!("http://{}", raw.http_listen);
    let public_url = match raw.public_url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            u.trim_end_matches('/').to_string()
        }
        Some(u) => {
            p.push("http.public_url", format!("{u:?} is not an http(s) URL"));
            listen_url
        }
        None => listen_url,
    };
    // The API is served by the same listener as the dashboard will be.
    let api_url = public_url.clone();
    for (key, text) in &raw.procedures {
        if key.is_empty() || text.trim().is_empty() {
            p.push(
                format!("procedures.{key}"),
                "needs a check id or kind and a text",
            );
        }
    }
    let message_domain = smtp
        .as_ref()
        .and_then(|s| s.from.rsplit_once('@'))
        .map(|(_, d)| d.trim_end_matches('>').to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "backwatch.invalid".into());
    Alerting {
        policy,
        evaluate_every,
        routes,
        procedures: raw.procedures,
        public_url,
        api_url,
        message_domain,
        delivery,
        smtp,
        group_names: raw.groups.keys().cloned().collect(),
        max_silence,
        maintenance: Vec::new(),
    }
}

fn smtp(p: &mut Problems, s: RawSmtp, base: &Path) -> Smtp {
    let tls = match s.tls.as_deref() {
        None | Some("starttls") => SmtpTls::Starttls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            p.push(
                "smtp.tls",
                format!("{other:?} is not one of \"starttls\", \"tls\", \"none\""),
            );
            SmtpTls::Starttls
        }
    };
    let port = s.port.unwrap_or(match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    let host = s.host.unwrap_or_else(|| "localhost".into());
    let from = s.from.unwrap_or_default();
    if from.parse::<lettre::message::Mailbox>().is_err() {
        p.push(
            "smtp.from",
            format!("{from:?} is not a mailbox (example: \"Backwatch <backwatch@example.com>\")"),
        );
    }
    let resolve = |f: PathBuf| if f.is_relative() { base.join(f) } else { f };
    if s.password_file.is_some() != s.username.is_some() {
        p.push("smtp.username", "username and password_file go together");
    }
    let password = s.password_file.map(resolve).and_then(|f| {
        match std::fs::read_to_string(&f) {
            // One trailing newline is the editor's, not the password's.
            Ok(text) => Some(Secret(text.strip_suffix('\n').unwrap_or(&text).to_string())),
            Err(e) => {
                p.push(
                    "smtp.password_file",
                    format!("cannot read {}: {e}", f.display()),
                );
                None
            }
        }
    });
    let ca_file = s.ca_file.map(resolve);
    if let Some(f) = &ca_file
        && let Err(e) = std::fs::metadata(f)
    {
        p.push("smtp.ca_file", format!("cannot read {}: {e}", f.display()));
    }
    let timeout = s.timeout.unwrap_or(Duration::from_secs(60));
    if timeout.is_zero() {
        p.push("smtp.timeout", "must be more than 0");
    }
    Smtp {
        host,
        port,
        tls,
        username: s.username,
        password,
        from,
        timeout,
        ca_file,
        hello_name: s.hello_name,
    }
}

/// The webhook URL of a route, from `url` or from the file `url_file` names (relative to the
/// configuration file; one trailing newline is the editor's), and which key it came from.
/// Exactly one of them must be given.
fn webhook_url(
    p: &mut Problems,
    key: &dyn Fn(&str) -> String,
    url: Option<String>,
    url_file: Option<PathBuf>,
    base: &Path,
) -> (String, &'static str) {
    secret(p, key, ("url", url), ("url_file", url_file), base)
}

/// A credential of a route, given in the file (`value`) or in a file of its own (`file`,
/// relative to the configuration file; one trailing newline is the editor's): exactly one of
/// them. Its value and which key it came from; problems never echo it.
fn secret(
    p: &mut Problems,
    key: &dyn Fn(&str) -> String,
    (value_key, value): (&'static str, Option<String>),
    (file_key, file): (&'static str, Option<PathBuf>),
    base: &Path,
) -> (String, &'static str) {
    match (value, file) {
        (Some(_), Some(_)) => {
            p.push(
                key(file_key),
                format!("give either {value_key} or {file_key}, not both"),
            );
            (String::new(), value_key)
        }
        (None, None) => {
            p.push(
                key(value_key),
                format!("this route needs {value_key} or {file_key}"),
            );
            (String::new(), value_key)
        }
        (Some(v), None) => (v, value_key),
        (None, Some(f)) => {
            let f = if f.is_relative() { base.join(f) } else { f };
            match std::fs::read_to_string(&f) {
                Ok(text) if !text.trim().is_empty() => (text.trim().to_string(), file_key),
                Ok(_) => {
                    p.push(key(file_key), format!("{} is empty", f.display()));
                    (String::new(), file_key)
                }
                Err(e) => {
                    p.push(key(file_key), format!("cannot read {}: {e}", f.display()));
                    (String::new(), file_key)
                }
            }
        }
    }
}

/// PagerDuty's Events API v2, where `pagerduty` routes send unless `url` says otherwise.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

fn routes(
    p: &mut Problems,
    raw: Vec<RawRoute>,
    groups: &BTreeMap<String, Vec<String>>,
    have_smtp: bool,
    base: &Path,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        if r.name.trim().is_empty() {
            p.push(key("name"), "must not be empty");
        }
        if out.iter().any(|o| o.name == r.name) {
            p.push(
                key("name"),
                format!("{:?} is used by an earlier route", r.name),
            );
        }
        let target = match r.channel.as_deref().unwrap_or("email") {
            "email" => {
                if r.to.is_empty() {
                    p.push(key("to"), "needs at least one address");
                }
                for (j, addr) in r.to.iter().enumerate() {
                    if addr.parse::<lettre::message::Mailbox>().is_err() {
                        p.push(
                            format!("routes[{i}].to[{j}]"),
                            format!("{addr:?} is not an email address"),
                        );
                    }
                }
                if !have_smtp {
                    p.push(key("channel"), "email routes need an [smtp] section");
                }
                if r.url.is_some() || r.url_file.is_some() {
                    p.push(key("url"), "is for webhook routes (email routes use `to`)");
                }
                Target::Email(r.to)
            }
            "webhook" => {
                let (url, from) = webhook_url(p, &key, r.url, r.url_file, base);
                // Never echo the URL: its path or query is the credential.
                if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                    p.push(
                        key(from),
                        format!(
                            "{} is not an http(s) URL (it must start with http:// or https://)",
                            if from == "url" {
                                "the value"
                            } else {
                                "the file's content"
                            }
                        ),
                    );
                }
                if !r.to.is_empty() {
                    p.push(key("to"), "is for email routes (webhook routes use `url`)");
                }
                Target::Webhook(url)
            }
            "slack" => {
                let (url, from) = webhook_url(p, &key, r.url, r.url_file, base);
                if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
                    p.push(
                        key(from),
                        "is not an http(s) URL (a Slack incoming webhook)",
                    );
                }
                Target::Slack(url)
            }
            "pagerduty" => {
                let (routing_key, _) = secret(
                    p,
                    &key,
                    ("routing_key", r.routing_key),
                    ("routing_key_file", r.routing_key_file),
                    base,
                );
                let url = r.url.unwrap_or_else(|| PAGERDUTY_EVENTS.to_string());
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    p.push(
                        key("url"),
                        "is not an http(s) URL (PagerDuty's Events API v2)",
                    );
                }
                Target::PagerDuty { url, routing_key }
            }
            "alertmanager" => {
                let (url, from) = webhook_url(p, &key, r.url, r.url_file, base);
                if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                    p.push(
                        key(from),
                        "is not an http(s) URL: Alertmanager's base, e.g. http://alertmanager:9093",
                    );
                }
                if !r.to.is_empty() {
                    p.push(
                        key("to"),
                        "is for email routes (alertmanager routes use `url`)",
                    );
                }
                Target::Alertmanager(url)
            }
            other => {
                p.push(
                    key("channel"),
                    format!(
                        "{other:?} is not one of \"email\", \"webhook\", \"slack\", \"pagerduty\", \"alertmanager\""
                    ),
                );
                Target::Email(r.to)
            }
        };
        for g in &r.groups {
            if !groups.contains_key(g) {
                p.push(key("groups"), format!("no group {g:?} in [groups]"));
            }
        }
        let alerts = r.alerts.unwrap_or(true);
        let daily_summary = r.daily_summary.unwrap_or(false);
        if daily_summary
            && matches!(
                target,
                Target::Alertmanager(_) | Target::Slack(_) | Target::PagerDuty { .. }
            )
        {
            p.push(
                key("daily_summary"),
                "this channel takes alerts, not reports: send the daily summary to an email or webhook route",
            );
        }
        if !alerts && !daily_summary {
            p.push(
                key("alerts"),
                "a route with alerts = false needs daily_summary = true",
            );
        }
        out.push(Route {
            name: r.name,
            target,
            min_status: severity(p, &key("min_status"), r.min_status, Severity::Warning),
            hosts: r.hosts,
            groups: r.groups,
            checks: r.checks,
            alerts,
            daily_summary,
        });
    }
    out
}

#[cfg(test)]
#[path = "alerting_tests.rs"]
mod tests;
