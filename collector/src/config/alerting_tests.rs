//! Alerting keys validated on their own: the rest of the file (certificates) is
//! `config.rs`'s business.

use super::{Alerting, RawAlerting, validate};
use crate::config::RawConfig;
use crate::store::alerts::Severity;
use backwatch_common::config::{ConfigError, Problems, parse_toml};
use std::time::Duration;

fn load(text: &str) -> Result<Alerting, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp-password"), "s3cret-value\n").unwrap();
    std::fs::write(
        dir.path().join("hook-url"),
        "https://hooks.example.com/services/T0/B0/HOOKSECRET\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad-hook-url"), "ftp://x/HOOKSECRET\n").unwrap();
    let path = dir.path().join("collector.toml");
    let raw: RawConfig = parse_toml(&path, text)?;
    let mut p = Problems::new(&path);
    let alerting = validate(
        &mut p,
        RawAlerting {
            alerts: raw.alerts,
            delivery: raw.delivery,
            smtp: raw.smtp,
            routes: raw.routes,
            procedures: raw.procedures,
            public_url: raw.http.public_url,
            groups: &raw.groups,
            http_listen: "127.0.0.1:7080".parse().unwrap(),
            grpc_listen: "0.0.0.0:7443".parse().unwrap(),
            base: dir.path(),
        },
    );
    p.finish()?;
    Ok(alerting)
}

const PROCEDURE_ROUTES: &str = r#"
[smtp]
host = "mail.example.com"
username = "backwatch"
password_file = "smtp-password"
from = "Backwatch <backwatch@example.com>"

[[routes]]
name = "dba"
to = ["dba@example.com"]

[[routes]]
name = "sysadmin"
to = ["Sysadmins <sysadmin@example.com>"]
min_status = "critical"

[[routes]]
name = "management"
to = ["management@example.com"]
alerts = false
daily_summary = true

[[routes]]
name = "chat"
channel = "webhook"
url = "https://chat.example.com/hook"
checks = ["wal.*"]
"#;

#[test]
fn defaults_without_any_alerting_keys() {
    let a = load("").unwrap();
    assert!(a.routes.is_empty() && a.smtp.is_none());
    assert_eq!(a.policy.unknown, Some(Severity::Warning));
    assert_eq!(a.policy.silent, Severity::Critical);
    assert_eq!(a.policy.reminder_every, Some(Duration::from_secs(86400)));
    assert_eq!(
        (a.policy.flap_changes, a.policy.flap_window),
        (5, Duration::from_secs(3600))
    );
    assert_eq!(a.public_url, "http://127.0.0.1:7080");
    assert_eq!(a.delivery.lease, Duration::from_secs(300));
    assert!(
        a.delivery.worker_id.ends_with(":7443"),
        "{}",
        a.delivery.worker_id
    );
}

#[test]
fn procedure_routes_are_accepted() {
    let a = load(PROCEDURE_ROUTES).unwrap();
    let names: Vec<_> = a
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.min_status, r.alerts, r.daily_summary))
        .collect();
    assert_eq!(
        names,
        [
            ("dba", Severity::Warning, true, false),
            ("sysadmin", Severity::Critical, true, false),
            ("management", Severity::Warning, false, true),
            ("chat", Severity::Warning, true, false),
        ]
    );
    let smtp = a.smtp.expect("smtp");
    assert_eq!(
        (smtp.port, smtp.tls),
        (587, crate::config::alerting::SmtpTls::Starttls)
    );
    assert_eq!(
        smtp.password.as_ref().map(|p| p.expose()),
        Some("s3cret-value")
    );
    assert_eq!(a.message_domain, "example.com");
}

#[test]
fn the_password_never_shows() {
    let c = load(PROCEDURE_ROUTES).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn every_problem_is_named() {
    let err = load(
        r#"
[http]
public_url = "bw.example.com"
[alerts]
unknown_severity = "loud"
flap_changes = 1
[delivery]
lease = "1m"
[smtp]
tls = "maybe"
from = "nobody"
password_file = "/nonexistent/pw"
[[routes]]
name = "dba"
to = ["not an address"]
groups = ["nope"]
[[routes]]
name = "dba"
channel = "webhook"
url = "ftp://x"
[[routes]]
name = "quiet"
to = ["q@example.com"]
alerts = false
"#,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "http.public_url: \"bw.example.com\" is not an http(s) URL",
        "alerts.unknown_severity: \"loud\" is not one of",
        "alerts.flap_changes: must be 0 (off) or at least 2",
        "delivery.lease: must be more than twice the longest attempt",
        "smtp.tls: \"maybe\" is not one of",
        "smtp.from: \"nobody\" is not a mailbox",
        "smtp.password_file: cannot read /nonexistent/pw",
        "smtp.username: username and password_file go together",
        "routes[0].to[0]: \"not an address\" is not an email address",
        "routes[0].groups: no group \"nope\" in [groups]",
        "routes[1].name: \"dba\" is used by an earlier route",
        "routes[1].url: the value is not an http(s) URL",
        "routes[2].alerts: a route with alerts = false needs daily_summary = true",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn email_routes_need_smtp() {
    let err = load("[[routes]]\nname = \"dba\"\nto = [\"dba@example.com\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes[0].channel: email routes need an [smtp] section"),
        "{err}"
    );
}

#[test]
fn a_webhook_url_is_read_from_url_file() {
    let a = load("[[routes]]\nname = \"pager\"\nchannel = \"webhook\"\nurl_file = \"hook-url\"\n")
        .unwrap();
    assert_eq!(
        a.routes[0].target,
        crate::alerts::routes::Target::Webhook(
            "https://hooks.example.com/services/T0/B0/HOOKSECRET".into()
        )
    );
}

#[test]
fn webhook_url_problems_are_named_without_the_url() {
    let err = load(
        r#"
[[routes]]
name = "a"
channel = "webhook"
url = "https://x/1"
url_file = "hook-url"
[[routes]]
name = "b"
channel = "webhook"
[[routes]]
name = "c"
channel = "webhook"
url_file = "missing-file"
[[routes]]
name = "d"
channel = "webhook"
url_file = "bad-hook-url"
[[routes]]
name = "e"
channel = "webhook"
url = "hxxps://hooks.example.com/HOOKSECRET"
"#,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "routes[0].url_file: give either url or url_file, not both",
        "routes[1].url: this route needs url or url_file",
        "routes[2].url_file: cannot read ",
        "routes[3].url_file: the file's content is not an http(s) URL",
        "routes[4].url: the value is not an http(s) URL",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("HOOKSECRET"), "{err}");
}

#[test]
fn slack_and_pagerduty_routes_need_their_credential_and_take_no_reports() {
    let a = load(
        "[[routes]]\nname = \"pager\"\nchannel = \"pagerduty\"\nrouting_key = \"KEYSECRET\"\n",
    )
    .unwrap();
    assert_eq!(
        a.routes[0].target,
        crate::alerts::routes::Target::PagerDuty {
            url: super::PAGERDUTY_EVENTS.into(),
            routing_key: "KEYSECRET".into()
        }
    );
    let err = load(
        "[[routes]]\nname = \"pager\"\nchannel = \"pagerduty\"\n\
         [[routes]]\nname = \"chat\"\nchannel = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\ndaily_summary = true\n",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "routes[0].routing_key: this route needs routing_key or routing_key_file",
        "routes[1].daily_summary: this channel takes alerts, not reports",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
