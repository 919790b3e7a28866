//! The lifecycle as tables: each row is one scenario and one expectation.

use super::*;
use crate::status::Status::{Critical, Ok as OkS, Unknown, Warning};
use crate::store::alerts::Severity::{Critical as Crit, Warning as Warn};

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(1_735_689_600 + secs)
}

fn policy() -> Policy {
    Policy {
        unknown: Some(Warn),
        silent: Crit,
        flap_changes: 5,
        flap_window: Duration::from_secs(3600),
        reminder_every: Some(Duration::from_secs(24 * 3600)),
    }
}

/// An alert opened at t(0) with `status`/`severity`, notified at that severity.
fn open(status: Status, severity: Severity) -> AlertFields {
    AlertFields {
        host: "db1".into(),
        check: "wal.main".into(),
        status,
        severity,
        peak_severity: severity,
        notified_severity: Some(severity),
        summary: "was bad".into(),
        opened_at: t(0),
        updated_at: t(0),
        last_change_at: t(0),
        last_notified_at: Some(t(0)),
        resolved_at: None,
        flapping: false,
        silenced: false,
    }
}

fn change(status: Status) -> Change<'static> {
    Change {
        host: "db1",
        check: "wal.main",
        status,
        effect: effect("wal.main", status, false, &policy()),
        summary: "now",
        at: t(60),
        recent_changes: 1,
        silenced: false,
    }
}

/// (event, notice kind, audience) of an outcome, for one-line assertions.
fn shape(o: &Option<Outcome>) -> Option<(&'static str, Option<(NoticeKind, Severity)>)> {
    o.as_ref()
        .map(|o| (o.event, o.notice.map(|n| (n.kind, n.audience))))
}

#[test]
fn effect_of_each_status() {
    let p = policy();
    let none = Policy {
        unknown: None,
        ..policy()
    };
    let rows = [
        ("wal.main", OkS, false, &p, Effect::Good),
        ("wal.main", Warning, false, &p, Effect::Bad(Warn)),
        ("wal.main", Critical, false, &p, Effect::Bad(Crit)),
        ("wal.main", Unknown, false, &p, Effect::Bad(Warn)),
        ("wal.main", Unknown, false, &none, Effect::Ignore),
        // The host's own silence alert covers every check of a silent host.
        ("wal.main", Unknown, true, &p, Effect::Ignore),
        (AGENT_CHECK, Unknown, false, &p, Effect::Bad(Crit)),
        (AGENT_CHECK, OkS, true, &p, Effect::Good),
    ];
    for (check, status, silent, p, want) in rows {
        assert_eq!(
            effect(check, status, silent, p),
            want,
            "{check} {status} silent={silent}"
        );
    }
}

#[test]
fn status_changes_without_an_open_alert() {
    let p = policy();
    let rows = [
        (Critical, Some(("opened", Some((NoticeKind::Opened, Crit))))),
        (Warning, Some(("opened", Some((NoticeKind::Opened, Warn))))),
        (Unknown, Some(("opened", Some((NoticeKind::Opened, Warn))))),
        (OkS, None),
    ];
    for (status, want) in rows {
        assert_eq!(
            shape(&on_change(None, &change(status), &p)),
            want,
            "{status}"
        );
    }
}

#[test]
fn status_changes_of_an_open_alert() {
    let p = policy();
    let rows = [
        (
            Warning,
            Warn,
            Critical,
            Some(("escalated", Some((NoticeKind::Escalated, Crit)))),
        ),
        (Critical, Crit, Warning, Some(("deescalated", None))),
        (Critical, Crit, Unknown, Some(("deescalated", None))),
        (Warning, Warn, Unknown, Some(("changed", None))),
        (
            Critical,
            Crit,
            OkS,
            Some(("resolved", Some((NoticeKind::Resolved, Crit)))),
        ),
        (
            Warning,
            Warn,
            OkS,
            Some(("resolved", Some((NoticeKind::Resolved, Warn)))),
        ),
    ];
    for (was, sev, to, want) in rows {
        let a = open(was, sev);
        assert_eq!(
            shape(&on_change(Some(&a), &change(to), &p)),
            want,
            "{was} -> {to}"
        );
    }
}

#[test]
fn opening_records_the_incident_and_who_was_told() {
    let o = on_change(None, &change(Critical), &policy()).expect("opens");
    let f = &o.fields;
    assert_eq!(
        (f.status, f.severity, f.peak_severity),
        (Critical, Crit, Crit)
    );
    assert_eq!((f.opened_at, f.last_notified_at), (t(60), Some(t(60))));
    assert_eq!(f.notified_severity, Some(Crit));
    assert_eq!(f.resolved_at, None);
}

#[test]
fn resolution_after_deescalation_still_reaches_the_critical_audience() {
    let mut a = open(Warning, Warn);
    a.peak_severity = Crit;
    a.notified_severity = Some(Crit);
    let o = on_change(Some(&a), &change(OkS), &policy());
    assert_eq!(
        shape(&o),
        Some(("resolved", Some((NoticeKind::Resolved, Crit))))
    );
    assert_eq!(o.map(|o| o.fields.resolved_at), Some(Some(t(60))));
}

#[test]
fn silenced_alert_is_recorded_without_notice() {
    let mut c = change(Critical);
    c.silenced = true;
    let o = on_change(None, &c, &policy()).expect("recorded");
    assert_eq!((o.event, o.notice), ("opened", None));
    assert!(o.fields.silenced);
    assert_eq!(o.fields.notified_severity, None);
    // Resolved under silence, or never notified: nobody is told it is over.
    let o = on_change(Some(&o.fields), &change(OkS), &policy()).expect("resolves");
    assert_eq!((o.event, o.notice), ("resolved", None));
}

#[test]
fn a_resolution_under_a_silence_still_reaches_those_told() {
    // Paged, then a maintenance silence began, and the problem was fixed during it.
    let mut a = open(Critical, Crit);
    a.notified_severity = Some(Crit);
    let mut c = change(OkS);
    c.silenced = true;
    let o = on_change(Some(&a), &c, &policy());
    assert_eq!(
        shape(&o),
        Some(("resolved", Some((NoticeKind::Resolved, Crit))))
    );
}

#[test]
fn withheld_notice_goes_out_when_the_silence_ends() {
    let p = policy();
    let mut a = open(Critical, Crit);
    a.notified_severity = None;
    a.silenced = true;
    assert_eq!(on_tick(&a, false, t(120), true, &p), None, "still silenced");
    let o = on_tick(&a, false, t(120), false, &p);
    assert_eq!(
        shape(&o),
        Some(("notified", Some((NoticeKind::Opened, Crit))))
    );
    // Escalated while silenced: the escalation is what is still owed.
    a.notified_severity = Some(Warn);
    let o = on_tick(&a, false, t(120), false, &p);
    assert_eq!(
        shape(&o),
        Some(("notified", Some((NoticeKind::Escalated, Crit))))
    );
}

#[test]
fn reminders_for_open_unacknowledged_alerts() {
    let p = policy();
    let a = open(Critical, Crit);
    let day = 24 * 3600;
    let rows = [
        (day - 1, false, None),
        (
            day,
            false,
            Some(("reminder", Some((NoticeKind::Reminder, Crit)))),
        ),
        (day, true, None),
    ];
    for (secs, acked, want) in rows {
        assert_eq!(
            shape(&on_tick(&a, acked, t(secs), false, &p)),
            want,
            "{secs} acked={acked}"
        );
    }
    let o = on_tick(&a, false, t(day), false, &p).expect("reminds");
    assert!(
        o.summary.starts_with("still open after 24 h"),
        "{}",
        o.summary
    );
    assert_eq!(o.fields.last_notified_at, Some(t(day)));
    let off = Policy {
        reminder_every: None,
        ..policy()
    };
    assert_eq!(on_tick(&a, false, t(10 * day), false, &off), None);
}

#[test]
fn flapping_is_notified_once_then_quiet_until_stable() {
    let p = policy();
    let mut c = change(OkS);
    c.recent_changes = 5;
    // The fifth change would resolve: instead the alert stays open and says "flapping".
    let o = on_change(Some(&open(Critical, Crit)), &c, &p).expect("flapping");
    assert_eq!(
        shape(&Some(o.clone())),
        Some(("flapping", Some((NoticeKind::Flapping, Crit))))
    );
    assert!(o.fields.flapping && o.fields.resolved_at.is_none());
    assert!(
        o.summary.starts_with("changed state 5 times within 60 min"),
        "{}",
        o.summary
    );

    // Further changes are recorded, nobody is told.
    let flapping = o.fields;
    for to in [Critical, OkS, Warning] {
        let mut c = change(to);
        c.recent_changes = 7;
        let o = on_change(Some(&flapping), &c, &p).expect("recorded");
        assert_eq!(o.notice, None, "{to}");
        assert!(o.fields.flapping);
    }
    // Before a whole quiet window passed: nothing; after: resolved (it was ok).
    assert_eq!(on_tick(&flapping, false, t(60 + 3599), false, &p), None);
    let o = on_tick(&flapping, false, t(60 + 3600), false, &p);
    assert_eq!(
        shape(&o),
        Some(("resolved", Some((NoticeKind::Resolved, Crit))))
    );
    assert!(o.is_some_and(|o| !o.fields.flapping && o.fields.resolved_at == Some(t(3660))));
}

#[test]
fn flapping_for_days_is_still_reminded() {
    let p = policy();
    let day = 24 * 3600;
    let mut a = open(Warning, Warn);
    // Critical once while flapping: nobody was told of that.
    a.peak_severity = Crit;
    a.flapping = true;
    a.last_notified_at = Some(t(60));
    // It keeps changing: never a whole quiet window, so never "stable".
    a.last_change_at = t(60 + day - 10);
    assert_eq!(on_tick(&a, false, t(60 + day - 1), false, &p), None);
    let o = on_tick(&a, false, t(60 + day), false, &p);
    assert_eq!(
        shape(&o),
        Some(("reminder", Some((NoticeKind::Reminder, Warn)))),
        "to those told of the flapping"
    );
    let o = o.expect("reminder");
    assert!(
        o.summary.starts_with("still flapping after 24 h"),
        "{}",
        o.summary
    );
    assert!(o.fields.flapping, "still flapping");
    assert_eq!(
        on_tick(&a, true, t(60 + day), false, &p),
        None,
        "acknowledged"
    );
    assert_eq!(on_tick(&a, false, t(60 + day), true, &p), None, "silenced");
    // Its notices withheld by a silence now over: the flapping notice goes out at once.
    a.notified_severity = None;
    a.last_notified_at = None;
    assert_eq!(
        shape(&on_tick(&a, false, t(120), false, &p)),
        Some(("notified", Some((NoticeKind::Flapping, Crit))))
    );
}

#[test]
fn flapping_that_settles_bad_says_stable_once() {
    let p = policy();
    let mut a = open(Critical, Crit);
    a.flapping = true;
    a.last_change_at = t(100);
    let o = on_tick(&a, false, t(100 + 3600), false, &p);
    assert_eq!(
        shape(&o),
        Some(("stable", Some((NoticeKind::Stable, Crit))))
    );
    let settled = o.expect("stable").fields;
    assert!(!settled.flapping && settled.resolved_at.is_none());
    assert_eq!(on_tick(&settled, false, t(100 + 3601), false, &p), None);
}

#[test]
fn a_new_alert_can_open_flapping() {
    let mut c = change(Warning);
    c.recent_changes = 6;
    let o = on_change(None, &c, &policy());
    assert_eq!(
        shape(&o),
        Some(("flapping", Some((NoticeKind::Flapping, Warn))))
    );
    let off = Policy {
        flap_changes: 0,
        ..policy()
    };
    assert_eq!(
        shape(&on_change(None, &c, &off)),
        Some(("opened", Some((NoticeKind::Opened, Warn))))
    );
}

#[test]
fn agent_silence_is_one_alert_and_its_checks_stay_quiet() {
    let p = policy();
    let silent = Change {
        check: AGENT_CHECK,
        status: Unknown,
        effect: effect(AGENT_CHECK, Unknown, false, &p),
        ..change(Unknown)
    };
    let o = on_change(None, &silent, &p);
    assert_eq!(
        shape(&o),
        Some(("opened", Some((NoticeKind::Opened, Crit))))
    );
    let quiet = Change {
        effect: effect("wal.main", Unknown, true, &p),
        ..change(Unknown)
    };
    assert_eq!(on_change(Some(&open(Critical, Crit)), &quiet, &p), None);
    assert_eq!(on_change(None, &quiet, &p), None);
}
