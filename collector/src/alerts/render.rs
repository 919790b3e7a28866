//! Notification text: subject, plain text, HTML and the webhook document. Pure.
//!
//! Invariants:
//! - subjects start with the state in capitals, then host, then check
//!   (`[CRITICAL] db1 wal.main: …`), so an inbox sorted by subject groups them; they are one
//!   line (control characters become spaces) of bounded length;
//! - every value that came from outside (host, check, summaries, measured values, paths,
//!   procedure texts) is escaped in HTML: markup in a backup path arrives as text;
//! - the body says what was measured, the threshold, since when, where to look (dashboard
//!   link) and what to do (the check's response procedure).

use super::lifecycle::NoticeKind;
use crate::human;
use crate::status::Status;
use crate::store::alerts::{AGENT_CHECK, AlertFields};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Detail keys that are limits rather than measurements.
const THRESHOLD_KEYS: &[&str] = &[
    "warning_pct",
    "critical_pct",
    "inode_warning_pct",
    "inode_critical_pct",
    "hysteresis_pts",
    "max_age_secs",
    "max_delay_secs",
    "max_data_at_risk_secs",
    "max_pending",
    "min_size_bytes",
];
const SUBJECT_TAIL_MAX: usize = 140;

/// Everything a notification says, gathered by the engine.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub alert_id: i64,
    pub alert: &'a AlertFields,
    pub kind: NoticeKind,
    /// What this notice is about ("still open after 24 h: …", "changed state 5 times …").
    pub event_summary: &'a str,
    /// The verdict's details (measured values and thresholds); `Null` when unknown.
    pub details: &'a Value,
    pub procedure: &'a str,
    pub host_url: &'a str,
    /// Base URL of the collector's HTTP API, for the acknowledge instructions.
    pub api_url: &'a str,
    pub route: &'a str,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn label(c: &Context<'_>) -> String {
    match c.kind {
        NoticeKind::Resolved => "RESOLVED".into(),
        NoticeKind::Flapping => "FLAPPING".into(),
        // Its state of the moment says little: it keeps changing.
        NoticeKind::Reminder if c.alert.flapping => "FLAPPING".into(),
        _ => state(c.alert),
    }
}

/// The check's state in capitals. A silent agent is "unknown" by status but an alert of its
/// configured severity (`alerts.silent_severity`), and that is what its reader needs to see.
fn state(a: &AlertFields) -> String {
    if a.check == AGENT_CHECK && a.status != Status::Ok {
        a.severity.as_str().to_uppercase()
    } else {
        a.status.as_str().to_uppercase()
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn lasted(c: &Context<'_>) -> String {
    let end = c.alert.resolved_at.unwrap_or(c.now);
    human::duration((end - c.alert.opened_at).num_seconds())
}

/// One line, bounded: no header injection, no wall of text in the inbox.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub fn subject(c: &Context<'_>) -> String {
    let a = c.alert;
    let tail = match c.kind {
        NoticeKind::Opened | NoticeKind::Escalated => one_line(&a.summary, SUBJECT_TAIL_MAX),
        // The duration stays visible however long the summary is.
        NoticeKind::Resolved => format!(
            "{} (after {})",
            one_line(&a.summary, SUBJECT_TAIL_MAX - 20),
            lasted(c)
        ),
        NoticeKind::Reminder | NoticeKind::Flapping | NoticeKind::Stable => {
            one_line(c.event_summary, SUBJECT_TAIL_MAX)
        }
    };
    one_line(
        &format!("[{}] {} {}: {tail}", label(c), a.host, a.check),
        SUBJECT_TAIL_MAX + 120,
    )
}

fn headline(c: &Context<'_>) -> String {
    let a = c.alert;
    let status = state(a);
    match c.kind {
        NoticeKind::Opened => format!("{status}: {} on {}", a.check, a.host),
        NoticeKind::Escalated => format!("{status}: {} on {} (escalated)", a.check, a.host),
        NoticeKind::Reminder if a.flapping => {
            format!("REMINDER, still flapping: {} on {}", a.check, a.host)
        }
        NoticeKind::Reminder => format!("REMINDER, still {status}: {} on {}", a.check, a.host),
        NoticeKind::Flapping => format!("FLAPPING: {} on {}", a.check, a.host),
        NoticeKind::Stable => format!("{status}: {} on {} stopped flapping", a.check, a.host),
        NoticeKind::Resolved => format!("RESOLVED: {} on {} after {}", a.check, a.host, lasted(c)),
    }
}

/// (label, value) pairs as shown to a reader.
type Facts = Vec<(String, String)>;

/// The details split into measured values and thresholds.
fn facts(details: &Value) -> (Facts, Facts) {
    let (mut measured, mut limits) = (Vec::new(), Vec::new());
    let Some(map) = details.as_object() else {
        return (measured, limits);
    };
    for (key, value) in map {
        let Some(shown) = show(key, value) else {
            continue;
        };
        if THRESHOLD_KEYS.contains(&key.as_str()) {
            limits.push(shown);
        } else {
            measured.push(shown);
        }
    }
    (measured, limits)
}

/// A detail as a person reads it: units from the key's suffix, nulls left out.
fn show(key: &str, value: &Value) -> Option<(String, String)> {
    let int = value.as_i64();
    let (name, text) = if let (Some(name), Some(n)) = (key.strip_suffix("_secs"), int) {
        (name, human::duration(n))
    } else if let (Some(name), Some(n)) = (key.strip_suffix("_bytes"), value.as_u64()) {
        (name, human::bytes(n))
    } else if let (Some(name), Some(n)) = (key.strip_suffix("_pct"), value.as_f64()) {
        (name, format!("{n} %"))
    } else {
        let text = match value {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            Value::Array(_) | Value::Object(_) => one_line(&value.to_string(), 300),
        };
        (key, text)
    };
    Some((name.replace('_', " "), text))
}

/// The procedure's steps: it is written as one sentence of `;`-separated steps.
fn steps(procedure: &str) -> Vec<String> {
    procedure
        .split(';')
        .map(|s| s.trim().trim_end_matches('.').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn since_line(c: &Context<'_>) -> String {
    let a = c.alert;
    match a.resolved_at {
        Some(end) => format!(
            "Open from {} to {} ({})",
            when(a.opened_at),
            when(end),
            lasted(c)
        ),
        None => format!("Open since {} ({} ago)", when(a.opened_at), lasted(c)),
    }
}

fn ack_line(c: &Context<'_>) -> String {
    let (verb, path) = match c.kind {
        NoticeKind::Resolved => ("False alarm? Mark it", "false-positive"),
        _ => ("Acknowledge", "ack"),
    };
    format!(
        "{verb}: curl -X POST {}/api/v1/alerts/{}/{path} -H 'content-type: application/json' \
         -d '{{\"by\": \"your name\", \"comment\": \"...\"}}'",
        c.api_url, c.alert_id
    )
}

pub fn text(c: &Context<'_>) -> String {
    let a = c.alert;
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(c));
    let _ = writeln!(out, "{}\n", c.event_summary);
    let _ = writeln!(out, "{}", since_line(c));
    let _ = writeln!(
        out,
        "Alert #{} · check {} · severity {}",
        c.alert_id, a.check, a.severity
    );
    let (measured, limits) = facts(c.details);
    for (title, rows) in [("Measured", &measured), ("Threshold", &limits)] {
        if !rows.is_empty() {
            let _ = writeln!(out, "\n{title}:");
            for (k, v) in rows {
                let _ = writeln!(out, "  {k}: {v}");
            }
        }
    }
    let _ = writeln!(out, "\nHost on the dashboard: {}", c.host_url);
    // In every message (A13); a resolution's is for the record: nothing is to be done now.
    let _ = writeln!(out, "\n{}:", procedure_title(c.kind));
    for s in steps(c.procedure) {
        let _ = writeln!(out, "  - {s}");
    }
    let _ = writeln!(out, "\n{}", ack_line(c));
    let _ = write!(out, "\n-- \nBackwatch, route {}", c.route);
    out
}

/// The heading of the response procedure: what to do, or, in a resolution, the procedure for
/// the record (A13: in every message).
fn procedure_title(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Resolved => "Response procedure of this check (nothing to do now)",
        _ => "What to do",
    }
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

fn colour(c: &Context<'_>) -> &'static str {
    match (c.kind, c.alert.status) {
        (NoticeKind::Resolved, _) | (_, Status::Ok) => "#1a7f37",
        (_, Status::Critical) => "#b3261e",
        (_, Status::Warning) => "#9a6700",
        _ => "#57606a",
    }
}

pub fn html(c: &Context<'_>) -> String {
    let e = escape_html;
    let a = c.alert;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; line-height: 1.4\">\n",
    );
    let _ = writeln!(
        out,
        "<h2 style=\"color: {}\">{}</h2>",
        colour(c),
        e(&headline(c))
    );
    let _ = writeln!(out, "<p><strong>{}</strong></p>", e(c.event_summary));
    let _ = writeln!(
        out,
        "<p>{}<br>Alert #{} · check <code>{}</code> · severity {}</p>",
        e(&since_line(c)),
        c.alert_id,
        e(&a.check),
        a.severity
    );
    let (measured, limits) = facts(c.details);
    for (title, rows) in [("Measured", &measured), ("Threshold", &limits)] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<h3>{title}</h3>\n<table>");
        for (k, v) in rows {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                e(k),
                e(v)
            );
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(
        out,
        "<p><a href=\"{}\">{} on the dashboard</a></p>",
        e(c.host_url),
        e(&a.host)
    );
    let _ = writeln!(out, "<h3>{}</h3>\n<ul>", e(procedure_title(c.kind)));
    for s in steps(c.procedure) {
        let _ = writeln!(out, "<li>{}</li>", e(&s));
    }
    out.push_str("</ul>\n");
    let _ = writeln!(
        out,
        "<p style=\"color: #57606a\"><small>{}<br>Backwatch, route {}</small></p>",
        e(&ack_line(c)),
        e(c.route)
    );
    out.push_str("</body></html>\n");
    out
}

pub fn render(c: &Context<'_>) -> Rendered {
    Rendered {
        subject: subject(c),
        text: text(c),
        html: html(c),
    }
}

/// The JSON document a webhook receives; `message_id` doubles as its idempotency key.
pub fn webhook_payload(c: &Context<'_>, r: &Rendered, message_id: &str) -> String {
    let a = c.alert;
    json!({
        "message_id": message_id,
        "kind": c.kind.as_str(),
        "route": c.route,
        "subject": r.subject,
        "text": r.text,
        "event": c.event_summary,
        "alert": {
            "id": c.alert_id,
            "host": a.host,
            "check": a.check,
            "status": a.status,
            "severity": a.severity,
            "peak_severity": a.peak_severity,
            "summary": a.summary,
            "opened_at": a.opened_at,
            "resolved_at": a.resolved_at,
            "duration_secs": (a.resolved_at.unwrap_or(c.now) - a.opened_at).num_seconds(),
            "flapping": a.flapping,
        },
        "details": c.details,
        "procedure": c.procedure,
        "dashboard_url": c.host_url,
    })
    .to_string()
}

/// What Slack's incoming webhooks take: `text` (the notification's fallback) and blocks: a
/// header with the subject, the summary, severity, host and check as fields, what to do
/// (unless resolved) and a button to the host's page. Text is escaped for Slack's mrkdwn
/// (`&`, `<`, `>`), which would otherwise turn a summary into a link or a mention.
pub fn slack_payload(c: &Context<'_>, r: &Rendered) -> String {
    let a = c.alert;
    let mrkdwn = |t: &str| json!({ "type": "mrkdwn", "text": slack_escape(t) });
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": clip(&r.subject, 150) } }),
        json!({
            "type": "section",
            "text": mrkdwn(&clip(c.event_summary, 2900)),
            "fields": [
                mrkdwn(&format!("*Severity*\n{}", a.severity.as_str())),
                mrkdwn(&format!("*Status*\n{}", a.status.as_str())),
                mrkdwn(&format!("*Host*\n{}", a.host)),
                mrkdwn(&format!("*Check*\n{}", a.check)),
            ],
        }),
    ];
    if !c.procedure.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": mrkdwn(&clip(
                &format!("*{}*\n{}", procedure_title(c.kind), c.procedure),
                2900
            )),
        }));
    }
    blocks.push(json!({
        "type": "actions",
        "elements": [{
            "type": "button",
            "text": { "type": "plain_text", "text": "Open in Backwatch" },
            "url": c.host_url,
        }],
    }));
    json!({ "text": slack_escape(&r.subject), "blocks": blocks }).to_string()
}

fn slack_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, an ellipsis marking a cut.
fn clip(t: &str, max: usize) -> String {
    if t.chars().count() <= max {
        return t.to_string();
    }
    let mut out: String = t.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// PagerDuty Events API v2: `trigger` for every notice of an open alert (PagerDuty updates
/// the incident of the same `dedup_key`), `resolve` when it resolves. The dedup key is the
/// alert's own id, stable through escalations, reminders and retries.
pub fn pagerduty_payload(
    c: &Context<'_>,
    r: &Rendered,
    routing_key: &str,
    groups: &[&str],
) -> String {
    let a = c.alert;
    let dedup_key = pagerduty_dedup_key(c.alert_id);
    if c.kind == NoticeKind::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })
        .to_string();
    }
    let severity = match a.severity {
        crate::store::alerts::Severity::Critical => "critical",
        crate::store::alerts::Severity::Warning => "warning",
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "Backwatch",
        "client_url": c.host_url,
        "links": [{ "href": c.host_url, "text": format!("{} on Backwatch", a.host) }],
        "payload": {
            "summary": clip(&r.subject, 1024),
            "source": a.host,
            "severity": severity,
            "timestamp": a.opened_at,
            "component": a.check,
            "group": groups.join(","),
            "class": a.check.split('.').next().unwrap_or_default(),
            "custom_details": {
                "summary": a.summary,
                "event": c.event_summary,
                "procedure": c.procedure,
                "details": c.details,
            },
        },
    })
    .to_string()
}

/// The one PagerDuty incident of an alert: trigger, acknowledge and resolve all name it.
fn pagerduty_dedup_key(alert_id: i64) -> String {
    format!("backwatch-alert-{alert_id}")
}

/// PagerDuty Events v2 `acknowledge` of the incident an alert triggered (same dedup key).
pub fn pagerduty_acknowledge(alert_id: i64, routing_key: &str) -> String {
    json!({
        "routing_key": routing_key,
        "event_action": "acknowledge",
        "dedup_key": pagerduty_dedup_key(alert_id),
    })
    .to_string()
}

/// `{public_url}/hosts/{host}` with the host as one percent-encoded path segment.
pub fn host_url(public_url: &str, host: &str) -> String {
    let mut out = format!("{}/hosts/", public_url.trim_end_matches('/'));
    for b in host.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
