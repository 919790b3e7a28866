use super::*;
use crate::store::alerts::Severity;
use chrono::TimeDelta;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(1_735_689_600 + secs)
}

fn alert(summary: &str) -> AlertFields {
    AlertFields {
        host: "db1".into(),
        check: "wal.main".into(),
        status: Status::Critical,
        severity: Severity::Critical,
        peak_severity: Severity::Critical,
        notified_severity: Some(Severity::Critical),
        summary: summary.into(),
        opened_at: t(0),
        updated_at: t(0),
        last_change_at: t(0),
        last_notified_at: None,
        resolved_at: None,
        flapping: false,
        silenced: false,
    }
}

fn context<'a>(a: &'a AlertFields, kind: NoticeKind, details: &'a Value) -> Context<'a> {
    Context {
        alert_id: 42,
        alert: a,
        kind,
        event_summary: &a.summary,
        details,
        procedure: crate::rules::procedure::WAL,
        host_url: "https://bw.example.com/hosts/db1",
        api_url: "http://127.0.0.1:7080",
        route: "dba",
        now: t(720),
    }
}

#[test]
fn subjects_sort_by_state_host_check() {
    let a = alert("archiving is failing: 000000010000000000000003 failed");
    let d = Value::Null;
    assert_eq!(
        subject(&context(&a, NoticeKind::Opened, &d)),
        "[CRITICAL] db1 wal.main: archiving is failing: 000000010000000000000003 failed"
    );
    let mut ok = alert("archiving ok");
    ok.status = Status::Ok;
    ok.resolved_at = Some(t(720));
    assert_eq!(
        subject(&context(&ok, NoticeKind::Resolved, &d)),
        "[RESOLVED] db1 wal.main: archiving ok (after 12 min)"
    );
}

#[test]
fn a_reminder_of_a_flapping_alert_says_flapping_not_its_passing_state() {
    let mut a = alert("still flapping after 2 d: archiving ok");
    a.status = Status::Ok;
    a.flapping = true;
    let d = Value::Null;
    let c = context(&a, NoticeKind::Reminder, &d);
    assert_eq!(
        subject(&c),
        "[FLAPPING] db1 wal.main: still flapping after 2 d: archiving ok"
    );
    let body = render(&c);
    assert!(
        body.text
            .contains("REMINDER, still flapping: wal.main on db1"),
        "{}",
        body.text
    );
}

#[test]
fn subject_is_one_bounded_line() {
    let a = alert(&format!(
        "line one\r\nBcc: victim@example.com {}",
        "x".repeat(500)
    ));
    let s = subject(&context(&a, NoticeKind::Opened, &Value::Null));
    assert!(!s.contains('\n') && !s.contains('\r'), "{s}");
    assert!(s.chars().count() <= 280, "{}", s.len());
    assert!(s.ends_with('…'), "{s}");
}

#[test]
fn body_shows_measured_threshold_since_link_and_procedure() {
    let a = alert("archive delay 20 min (limit 15 min)");
    let d = json!({
        "archive_delay_secs": 1200,
        "max_delay_secs": 900,
        "pending_bytes": 16_777_216,
        "last_failed_wal": null,
    });
    let body = text(&context(&a, NoticeKind::Opened, &d));
    for want in [
        "CRITICAL: wal.main on db1",
        "Open since 2025-01-01 00:00:00 UTC (12 min ago)",
        "Measured:\n  archive delay: 20 min\n  pending: 16.0 MiB",
        "Threshold:\n  max delay: 15 min",
        "Host on the dashboard: https://bw.example.com/hosts/db1",
        "  - Check the archive directory's permissions\n  - verify that the archive command works",
        "http://127.0.0.1:7080/api/v1/alerts/42/ack",
    ] {
        assert!(body.contains(want), "missing {want:?} in:\n{body}");
    }
    assert!(
        !body.contains("last failed wal"),
        "nulls are left out:\n{body}"
    );
}

#[test]
fn html_escapes_everything_from_outside() {
    let a = alert("backup directory /tmp/x/<script>alert(1)</script> is missing");
    let d = json!({ "path": "/tmp/x/<script>alert(1)</script>" });
    let page = html(&context(&a, NoticeKind::Opened, &d));
    assert!(
        page.contains("/tmp/x/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert_eq!(escape_html(r#"a&b"c'd"#), "a&amp;b&quot;c&#39;d");
}

#[test]
fn resolved_message_has_duration_and_the_procedure_for_the_record() {
    let mut a = alert("archiving ok");
    a.status = Status::Ok;
    a.resolved_at = Some(t(3 * 3600));
    let body = text(&context(&a, NoticeKind::Resolved, &Value::Null));
    assert!(
        body.starts_with("RESOLVED: wal.main on db1 after 3 h"),
        "{body}"
    );
    assert!(
        body.contains("Open from 2025-01-01 00:00:00 UTC to 2025-01-01 03:00:00 UTC (3 h)"),
        "{body}"
    );
    assert!(!body.contains("What to do"), "{body}");
    assert!(
        body.contains("Response procedure of this check (nothing to do now):"),
        "{body}"
    );
    assert!(body.contains("/api/v1/alerts/42/false-positive"), "{body}");
}

#[test]
fn webhook_document_carries_the_alert() {
    let a = alert("archiving is failing");
    let d = json!({ "failed_count": 3 });
    let c = context(&a, NoticeKind::Opened, &d);
    let doc: Value = serde_json::from_str(&webhook_payload(&c, &render(&c), "<m1@bw>")).unwrap();
    assert_eq!(doc["message_id"], "<m1@bw>");
    assert_eq!(doc["kind"], "opened");
    assert_eq!(doc["alert"]["id"], 42);
    assert_eq!(doc["alert"]["status"], "critical");
    assert_eq!(doc["alert"]["duration_secs"], 720);
    assert_eq!(doc["details"]["failed_count"], 3);
}

#[test]
fn host_url_encodes_the_host() {
    assert_eq!(
        host_url("https://bw/", "db-1.example"),
        "https://bw/hosts/db-1.example"
    );
    assert_eq!(
        host_url("https://bw", "a b/c"),
        "https://bw/hosts/a%20b%2Fc"
    );
}

#[test]
fn slack_text_cannot_mention_or_link_and_pagerduty_resolves_by_the_same_key() {
    let a = alert("archive_command said <@channel> & <https://evil.example|click>");
    let d = Value::Null;
    let c = context(&a, NoticeKind::Opened, &d);
    let slack: Value = serde_json::from_str(&slack_payload(&c, &render(&c))).unwrap();
    let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("&lt;@channel&gt; &amp; &lt;https://evil.example|click&gt;"),
        "{section}"
    );
    let trigger: Value =
        serde_json::from_str(&pagerduty_payload(&c, &render(&c), "K", &["prod"])).unwrap();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["group"], "prod");
    let mut ok = a.clone();
    ok.resolved_at = Some(t(720));
    let r = context(&ok, NoticeKind::Resolved, &d);
    let resolve: Value =
        serde_json::from_str(&pagerduty_payload(&r, &render(&r), "K", &[])).unwrap();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["dedup_key"], "backwatch-alert-42");
}
