//! The alert lifecycle as pure functions: (current alert, what happened, policy) → the new
//! alert, the event to record and whom to notify. No I/O and no clock: times are arguments,
//! so every rule below is a row in the tables at the end of this file.
//!
//! Rules (docs/checks.md R28–R30):
//! - a check going warning/critical opens an alert; warning → critical escalates (notified);
//!   critical → warning de-escalates (recorded, not notified); ok resolves it, and the
//!   resolution goes to everyone who heard of the alert;
//! - a check turning unknown while its host talks is an alert of `Policy::unknown` severity;
//!   while the host is silent it is not: the host has one "agent silent" alert instead
//!   (pseudo-check `agent.contact`, `Policy::silent` severity);
//! - repeated results in one state are not transitions, so they never reach this module;
//! - `flap_changes` changes within `flap_window` make the alert flapping: one "flapping"
//!   notice, then the alert stays open (even through ok) and says nothing per change (only
//!   its reminders, to those told) until no change happened for a whole window; then it
//!   resolves (ok) or says once that it is stable (not ok);
//! - a silence withholds a notice but not the record; a notice withheld from an alert that
//!   is still open is sent when the silence is over (a resolution is not sent late);
//! - an open alert nobody acknowledged is repeated every `reminder_every`;
//! - retiring a host resolves its open alerts, saying who retired it and why.

use crate::status::Status;
use crate::store::alerts::{AGENT_CHECK, AlertFields, Severity};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Severity of a check that is unknown while its host still talks; `None`: no alert.
    pub unknown: Option<Severity>,
    /// Severity of "agent silent".
    pub silent: Severity,
    /// This many changes within `flap_window` mean flapping; 0 turns detection off.
    pub flap_changes: u32,
    pub flap_window: Duration,
    /// Repeat open, unacknowledged alerts this often; `None`: never.
    pub reminder_every: Option<Duration>,
}

impl Policy {
    pub fn flap_window_delta(&self) -> TimeDelta {
        TimeDelta::from_std(self.flap_window).unwrap_or(TimeDelta::MAX)
    }
}

/// What a new status means for alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Not this check's own news (unknown because the host is silent; unknown not alerted).
    Ignore,
    Good,
    Bad(Severity),
}

pub fn effect(check: &str, to: Status, host_silent: bool, p: &Policy) -> Effect {
    if check == AGENT_CHECK {
        return match to {
            Status::Ok => Effect::Good,
            _ => Effect::Bad(p.silent),
        };
    }
    match to {
        Status::Ok => Effect::Good,
        Status::Warning => Effect::Bad(Severity::Warning),
        Status::Critical => Effect::Bad(Severity::Critical),
        Status::Unknown if host_silent => Effect::Ignore,
        Status::Unknown => p.unknown.map_or(Effect::Ignore, Effect::Bad),
    }
}

/// One status change of a check, as the engine hands it over.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub host: &'a str,
    pub check: &'a str,
    pub status: Status,
    pub effect: Effect,
    pub summary: &'a str,
    pub at: DateTime<Utc>,
    /// Changes of this check within the flap window, this one included.
    pub recent_changes: u32,
    /// A silence covers this host and check now.
    pub silenced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Opened,
    Escalated,
    Reminder,
    Flapping,
    Stable,
    Resolved,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Opened => "opened",
            NoticeKind::Escalated => "escalated",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Flapping => "flapping",
            NoticeKind::Stable => "stable",
            NoticeKind::Resolved => "resolved",
        }
    }
}

/// A notification to send: routes whose `min_status` is at most `audience` hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub audience: Severity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub fields: AlertFields,
    /// Event kind to record (see `AlertEvent::kind`).
    pub event: &'static str,
    pub summary: String,
    pub notice: Option<Notice>,
}

/// Decide on a status change of a check; `None` when there is nothing to record.
pub fn on_change(alert: Option<&AlertFields>, c: &Change<'_>, p: &Policy) -> Option<Outcome> {
    let flapping_now = p.flap_changes > 0 && c.recent_changes >= p.flap_changes;
    let flap_summary = || {
        format!(
            "changed state {} times within {}; notifications paused until it is stable",
            c.recent_changes,
            crate::human::duration(p.flap_window.as_secs() as i64)
        )
    };
    match (alert, c.effect) {
        (_, Effect::Ignore) | (None, Effect::Good) => None,
        (None, Effect::Bad(s)) => {
            let fields = AlertFields {
                host: c.host.to_string(),
                check: c.check.to_string(),
                status: c.status,
                severity: s,
                peak_severity: s,
                notified_severity: None,
                summary: c.summary.to_string(),
                opened_at: c.at,
                updated_at: c.at,
                last_change_at: c.at,
                last_notified_at: None,
                resolved_at: None,
                flapping: flapping_now,
                silenced: false,
            };
            if flapping_now {
                Some(notify(
                    fields,
                    "flapping",
                    flap_summary(),
                    NoticeKind::Flapping,
                    s,
                    c,
                ))
            } else {
                let summary = c.summary.to_string();
                Some(notify(fields, "opened", summary, NoticeKind::Opened, s, c))
            }
        }
        (Some(a), Effect::Bad(s)) => {
            let mut f = a.clone();
            f.status = c.status;
            f.severity = s;
            f.peak_severity = a.peak_severity.max(s);
            f.summary = c.summary.to_string();
            f.updated_at = c.at;
            f.last_change_at = c.at;
            let quiet = |event| Some(record(f.clone(), event, c.summary.to_string()));
            if a.flapping {
                quiet(direction(a.severity, s))
            } else if flapping_now {
                f.flapping = true;
                let audience = f.peak_severity;
                Some(notify(
                    f,
                    "flapping",
                    flap_summary(),
                    NoticeKind::Flapping,
                    audience,
                    c,
                ))
            } else if s > a.severity {
                let summary = c.summary.to_string();
                Some(notify(f, "escalated", summary, NoticeKind::Escalated, s, c))
            } else {
                quiet(direction(a.severity, s))
            }
        }
        (Some(a), Effect::Good) => {
            let mut f = a.clone();
            f.status = c.status;
            f.summary = c.summary.to_string();
            f.updated_at = c.at;
            f.last_change_at = c.at;
            if a.flapping {
                Some(record(f, "changed", c.summary.to_string()))
            } else if flapping_now {
                f.flapping = true;
                let audience = f.peak_severity;
                Some(notify(
                    f,
                    "flapping",
                    flap_summary(),
                    NoticeKind::Flapping,
                    audience,
                    c,
                ))
            } else {
                f.resolved_at = Some(c.at);
                Some(resolve(f, c.summary.to_string(), c.silenced, c.at))
            }
        }
    }
}

/// A retired host's open alert ends: resolved with who retired the host and why, and the
/// resolution goes to those who heard of the alert (their incident is closed, not forgotten).
pub fn on_retired(a: &AlertFields, by: &str, reason: &str, now: DateTime<Utc>) -> Outcome {
    let mut f = a.clone();
    f.updated_at = now;
    f.last_change_at = now;
    f.resolved_at = Some(now);
    f.flapping = false;
    f.summary = format!("host retired by {by}: {reason}");
    let summary = f.summary.clone();
    resolve(f, summary, false, now)
}

/// Decide what time alone does to an open alert: flapping ends, a withheld notice goes
/// out, a reminder is due. `silenced`: a silence covers the alert now.
pub fn on_tick(
    a: &AlertFields,
    acknowledged: bool,
    now: DateTime<Utc>,
    silenced: bool,
    p: &Policy,
) -> Option<Outcome> {
    let mut f = a.clone();
    if a.flapping {
        if now - a.last_change_at < p.flap_window_delta() {
            // Still changing: no notice per change, but reminders as for any open alert (one
            // flapping for days must not be forgotten), to those told of it so far (a severity
            // reached while flapping told no one new).
            if silenced {
                return None;
            }
            let Some(told) = a.notified_severity else {
                // Its notices were withheld by a silence that is over: the flapping notice
                // goes out now, to whom it would have gone.
                let summary = format!("no longer silenced, still flapping: {}", a.summary);
                let audience = a.peak_severity;
                return Some(notify_at(
                    f,
                    "notified",
                    summary,
                    NoticeKind::Flapping,
                    audience,
                    false,
                    now,
                ));
            };
            return reminder(f, acknowledged, now, p, "still flapping", told);
        }
        f.flapping = false;
        f.updated_at = now;
        let stable = format!(
            "stable for {}: {}",
            crate::human::duration(p.flap_window.as_secs() as i64),
            a.summary
        );
        if a.status == Status::Ok {
            f.resolved_at = Some(now);
            return Some(resolve(f, stable, silenced, now));
        }
        let audience = f.severity;
        return Some(notify_at(
            f,
            "stable",
            stable,
            NoticeKind::Stable,
            audience,
            silenced,
            now,
        ));
    }
    if a.status == Status::Ok || silenced {
        return None;
    }
    if a.notified_severity < Some(a.severity) {
        let kind = match a.notified_severity {
            None => NoticeKind::Opened,
            Some(_) => NoticeKind::Escalated,
        };
        let summary = format!("no longer silenced: {}", a.summary);
        return Some(notify_at(
            f, "notified", summary, kind, a.severity, false, now,
        ));
    }
    let audience = a.severity;
    reminder(f, acknowledged, now, p, "still open", audience)
}

/// A reminder to `audience` when one is due: `reminder_every` after the last notice, unless
/// the alert is acknowledged.
fn reminder(
    f: AlertFields,
    acknowledged: bool,
    now: DateTime<Utc>,
    p: &Policy,
    still: &str,
    audience: Severity,
) -> Option<Outcome> {
    let every = TimeDelta::from_std(p.reminder_every?).unwrap_or(TimeDelta::MAX);
    let last = f.last_notified_at.unwrap_or(f.opened_at);
    if acknowledged || now - last < every {
        return None;
    }
    let summary = format!(
        "{still} after {}: {}",
        crate::human::duration((now - f.opened_at).num_seconds()),
        f.summary
    );
    Some(notify_at(
        f,
        "reminder",
        summary,
        NoticeKind::Reminder,
        audience,
        false,
        now,
    ))
}

fn direction(from: Severity, to: Severity) -> &'static str {
    match to.cmp(&from) {
        std::cmp::Ordering::Greater => "escalated",
        std::cmp::Ordering::Less => "deescalated",
        std::cmp::Ordering::Equal => "changed",
    }
}

fn record(fields: AlertFields, event: &'static str, summary: String) -> Outcome {
    Outcome {
        fields,
        event,
        summary,
        notice: None,
    }
}

fn notify(
    f: AlertFields,
    event: &'static str,
    summary: String,
    kind: NoticeKind,
    audience: Severity,
    c: &Change<'_>,
) -> Outcome {
    notify_at(f, event, summary, kind, audience, c.silenced, c.at)
}

fn notify_at(
    mut f: AlertFields,
    event: &'static str,
    summary: String,
    kind: NoticeKind,
    audience: Severity,
    silenced: bool,
    at: DateTime<Utc>,
) -> Outcome {
    f.silenced = silenced;
    if silenced {
        return record(f, event, summary);
    }
    f.notified_severity = f.notified_severity.max(Some(audience));
    f.last_notified_at = Some(at);
    Outcome {
        fields: f,
        event,
        summary,
        notice: Some(Notice { kind, audience }),
    }
}

/// A resolution goes to those who heard of the alert, silence or not: a silence withholds bad
/// news, and holding back the end of what was already told would leave a PagerDuty incident
/// (one dedup key per alert) and every reader's "still critical" open for good. An alert
/// nobody heard of resolves quietly.
fn resolve(mut f: AlertFields, summary: String, silenced: bool, at: DateTime<Utc>) -> Outcome {
    match f.notified_severity {
        Some(audience) => {
            f.silenced = false;
            f.last_notified_at = Some(at);
            Outcome {
                fields: f,
                event: "resolved",
                summary,
                notice: Some(Notice {
                    kind: NoticeKind::Resolved,
                    audience,
                }),
            }
        }
        _ => {
            f.silenced = silenced;
            record(f, "resolved", summary)
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
