//! `backwatch-collector config check`: the effective configuration, defaults filled in, as a
//! TOML document (serialized with `toml`, so it is always well-formed).
//!
//! Invariants: secrets never appear (the store URL is redacted, tokens are named, not shown,
//! the SMTP password is left out); what has no TOML shape of its own (access, routes) is
//! described in comments. `[thresholds]` is the merged base threshold set with durations in
//! seconds, as the rules see it; per-host overrides are listed by `[groups]` in the file.

use super::Config;
use crate::alerts::routes::Target;
use crate::store::{redact_url, redact_webhook};
use backwatch_common::config::fmt_duration;
use std::fmt::Write;
use toml::{Table, Value};

fn table(pairs: Vec<(&str, Value)>) -> Value {
    Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

fn count(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(s).collect())
}

/// The whole document, starting with a comment naming the file.
pub fn render(path: &std::path::Path, c: &Config) -> String {
    let mut doc = Table::new();
    doc.insert(
        "grpc".into(),
        table(vec![
            ("listen", s(c.grpc_listen)),
            ("ca", s(c.tls.ca.display())),
            ("cert", s(c.tls.cert.display())),
            ("key", s(c.tls.key.display())),
            ("deny_hosts", strings(&c.access.deny_hosts)),
            ("deny_fingerprints", strings(&c.access.deny_fingerprints)),
            (
                "max_streams_per_agent",
                Value::Integer(i64::from(c.access.max_streams_per_agent)),
            ),
            (
                "max_streams_per_minute",
                Value::Integer(i64::from(c.access.max_streams_per_minute)),
            ),
            (
                "max_checks_per_host",
                Value::Integer(i64::from(c.access.max_checks_per_host)),
            ),
            ("max_connections", count(c.grpc_limits.max_connections)),
            ("max_handshakes", count(c.grpc_limits.max_handshakes)),
        ]),
    );
    let mut http = vec![
        ("listen", s(c.http_listen)),
        ("public_url", s(&c.alerting.public_url)),
        ("max_connections", count(c.http.limits.max_connections)),
        ("max_handshakes", count(c.http.limits.max_handshakes)),
        ("header_timeout", s(fmt_duration(c.http.header_timeout))),
        ("idle_timeout", s(fmt_duration(c.http.idle_timeout))),
    ];
    if let Some(t) = &c.http.tls {
        http.push(("tls_cert", s(t.cert.display())));
        http.push(("tls_key", s(t.key.display())));
    }
    doc.insert("http".into(), table(http));
    doc.insert(
        "store".into(),
        table(vec![
            ("url", s(redact_url(&c.store_url))),
            ("retention", s(fmt_duration(c.store_retention))),
        ]),
    );
    doc.insert(
        "silence".into(),
        table(vec![
            ("host_after", s(fmt_duration(c.silence.host_after))),
            ("check_grace", s(fmt_duration(c.silence.check_grace))),
            ("sweep_every", s(fmt_duration(c.silence.sweep_every))),
        ]),
    );
    if let Some(e) = &c.enroll {
        let mut pairs = vec![
            ("listen", s(e.listen)),
            ("ca_cert", s(e.ca_cert.display())),
            ("ca_key", s(e.ca_key.display())),
            ("cert_validity", s(fmt_duration(e.cert_validity))),
            ("token_ttl", s(fmt_duration(e.token_ttl))),
            ("supersede_grace", s(fmt_duration(e.supersede_grace))),
            ("max_connections", count(e.limits.max_connections)),
            ("max_handshakes", count(e.limits.max_handshakes)),
            ("idle_timeout", s(fmt_duration(e.idle_timeout))),
            ("max_connection_age", s(fmt_duration(e.max_connection_age))),
        ];
        // Unset, the window is not one duration but the last third of each certificate.
        if let Some(w) = e.renew_window {
            pairs.push(("renew_window", s(fmt_duration(w))));
        }
        doc.insert("enroll".into(), table(pairs));
    }
    let mut out = format!("# {}: ok\n", path.display());
    if c.enroll.as_ref().is_some_and(|e| e.renew_window.is_none()) {
        out.push_str("# enroll.renew_window not set: renewal opens in the last third of a certificate's validity\n");
    }
    let _ = writeln!(out, "# http access: {}", c.http_auth.describe());
    match &c.alerting.smtp {
        Some(m) => {
            let tls = format!("{:?}", m.tls).to_lowercase();
            let _ = writeln!(
                out,
                "# smtp: {}:{} (tls {tls}), from {}",
                m.host, m.port, m.from
            );
        }
        None => out.push_str("# smtp: none\n"),
    }
    if c.alerting.routes.is_empty() {
        out.push_str("# routes: none (alerts are recorded, nobody is notified)\n");
    }
    for r in &c.alerting.routes {
        let to = match &r.target {
            Target::Email(to) => format!("email {}", to.join(", ")),
            Target::Webhook(url) => format!("webhook {}", redact_webhook(url)),
            Target::Alertmanager(url) => format!("alertmanager {}", redact_webhook(url)),
            Target::Slack(url) => format!("slack {}", redact_webhook(url)),
            // The routing key is the credential: never shown.
            Target::PagerDuty { url, .. } => format!("pagerduty {}", redact_webhook(url)),
        };
        let what = match (r.alerts, r.daily_summary) {
            (true, true) => format!("alerts from {} and the daily summary", r.min_status),
            (true, false) => format!("alerts from {}", r.min_status),
            _ => "the daily summary only".to_string(),
        };
        let _ = writeln!(out, "# route {}: {what} -> {to}", r.name);
    }
    for w in &c.alerting.maintenance {
        let days: Vec<String> = w.every.iter().map(|d| d.to_string()).collect();
        let list = |k: &str, v: &[String]| (!v.is_empty()).then(|| format!("{k} {}", v.join(", ")));
        let covers: Vec<String> = [
            list("hosts", &w.hosts),
            list("groups", &w.groups),
            list("checks", &w.checks),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(
            out,
            "# maintenance {}: {} {}-{} {}, covers {} ({})",
            w.name,
            days.join(","),
            w.from.format("%H:%M"),
            w.to.format("%H:%M"),
            w.timezone.name(),
            if covers.is_empty() {
                "everything".to_string()
            } else {
                covers.join("; ")
            },
            w.reason
        );
    }
    match toml::to_string(&doc) {
        Ok(t) => out.push_str(&t),
        Err(e) => {
            let _ = writeln!(out, "# cannot print the settings: {e}");
        }
    }
    out.push_str("\n# thresholds with the defaults merged (durations in seconds)\n");
    let mut th = Table::new();
    match Value::try_from(&c.thresholds.base) {
        Ok(v) => {
            th.insert("thresholds".into(), v);
            match toml::to_string(&th) {
                Ok(t) => out.push_str(&t),
                Err(e) => {
                    let _ = writeln!(out, "# cannot print the thresholds: {e}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "# cannot print the thresholds: {e}");
        }
    }
    out
}
