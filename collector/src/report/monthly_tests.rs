use super::*;
use crate::status::Status;
use crate::store::alerts::{AlertFields, Mark};
use chrono::TimeDelta;

fn t(mins: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_772_323_200, 0).unwrap() + TimeDelta::minutes(mins)
}

fn alert(id: i64, check: &str, opened: i64, resolved: Option<i64>, acked: Option<i64>) -> Alert {
    Alert {
        id,
        version: 1,
        fields: AlertFields {
            host: "db1".into(),
            check: check.into(),
            status: Status::Critical,
            severity: Severity::Critical,
            peak_severity: Severity::Critical,
            notified_severity: Some(Severity::Critical),
            summary: "s".into(),
            opened_at: t(opened),
            updated_at: t(opened),
            last_change_at: t(opened),
            last_notified_at: None,
            resolved_at: resolved.map(t),
            flapping: false,
            silenced: false,
        },
        acknowledged: acked.map(|m| Mark {
            by: "ops".into(),
            at: t(m),
            comment: String::new(),
        }),
        false_positive: None,
    }
}

fn input(alerts: Vec<Alert>) -> MonthlyInput {
    MonthlyInput {
        period: "2026-03".into(),
        timezone: Tz::UTC,
        start: t(0),
        end: t(31 * 1440),
        generated_at: t(32 * 1440),
        days: Vec::new(),
        alerts,
        self_resolved_window: Duration::from_secs(600),
        drills_of: BTreeMap::new(),
        risk_limits: BTreeMap::new(),
    }
}

#[test]
fn false_positives_are_marked_or_self_resolved_within_the_window() {
    let mut marked = alert(4, "disk.backup", 0, Some(600), Some(30));
    marked.false_positive = Some(Mark {
        by: "ops".into(),
        at: t(700),
        comment: "test restore".into(),
    });
    let alerts = vec![
        alert(1, "wal.main", 0, Some(5), None), // resolved by itself in 5 min: FP
        alert(2, "wal.main", 10, Some(40), None), // 30 min: real
        alert(3, "wal.main", 20, Some(25), Some(21)), // acknowledged: someone acted, real
        marked,                                 // marked: FP
        alert(5, "agent.contact", 30, None, Some(90)), // still open
    ];
    let r = build(input(alerts));
    assert_eq!((r.summary.alerts, r.summary.false_positives), (5, 2));
    assert_eq!(r.summary.false_positive_rate, Some(0.4));
    // Acks after 1, 30 and 60 minutes: median 30 min, p90 (nearest rank) 60 min.
    assert_eq!(r.summary.ack_median_secs, Some(1800.0));
    assert_eq!(r.summary.ack_p90_secs, Some(3600.0));
    // Resolved after 5, 30, 5 and 600 minutes: median 17.5 min, p90 600 min.
    assert_eq!(r.summary.resolve_median_secs, Some(1050.0));
    assert_eq!(r.summary.resolve_p90_secs, Some(36000.0));
    let wal = r
        .alerts_by_check
        .iter()
        .find(|c| c.key == "wal.main")
        .unwrap();
    assert_eq!(
        (wal.alerts, wal.false_positives, wal.acknowledged),
        (3, 1, 1)
    );
    assert!(r.alerts_by_check.iter().any(|c| c.key == "agent (silent)"));
    assert_eq!(r.alerts_by_host.len(), 1);
}

#[test]
fn an_empty_month_is_a_report_without_numbers() {
    let r = build(input(Vec::new()));
    assert_eq!(r.summary.false_positive_rate, None);
    assert!(r.storage.is_empty() && r.days.is_empty());
    assert!(serde_json::to_value(&r).is_ok());
}

/// A day row of a disk check of `host` measuring `filesystem`.
fn disk_day(host: &str, check: &str, filesystem: &str, used: i64, capacity: i64) -> Rollup {
    let day = t(0).timestamp_millis();
    let mut r = Rollup::empty(
        host,
        check,
        crate::store::reports::Period::Day,
        day,
        ProbeKind::Disk,
    );
    r.samples = 1;
    r.last_at = day + 3_600_000;
    r.used_bytes_last = Some(used);
    r.capacity_bytes = Some(capacity);
    r.filesystem = Some(filesystem.into());
    r
}

#[test]
fn two_checks_on_one_filesystem_count_once_in_the_fleet_totals() {
    let mut i = input(Vec::new());
    i.days = vec![
        // disk.backup and disk.archive of db1 both on /; db2's device 2049 is another disk.
        disk_day("db1", "disk.archive", "dev:2049", 40, 100),
        disk_day("db1", "disk.backup", "dev:2049", 40, 100),
        disk_day("db2", "disk.backup", "dev:2049", 7, 50),
    ];
    let r = build(i);
    assert_eq!(r.summary.filesystem_used_bytes, 47);
    assert_eq!(r.days[0].filesystem_used_bytes, 47);
    // Each check still has its own line.
    assert_eq!(r.storage.len(), 3);
}

#[test]
fn recoverability_has_the_worst_data_at_risk_and_the_narrowest_window_of_the_month() {
    let day = |check: &str, kind: ProbeKind, n: i64, risk: Option<i64>, window: Option<i64>| {
        let mut r = Rollup::empty(
            "db1",
            check,
            crate::store::reports::Period::Day,
            t(n * 1440).timestamp_millis(),
            kind,
        );
        r.risk_secs_max = risk;
        r.window_secs_min = window;
        r
    };
    let mut i = input(Vec::new());
    i.days = vec![
        day("wal.main", ProbeKind::Wal, 0, Some(0), None),
        day("wal.main", ProbeKind::Wal, 1, Some(1800), None),
        day("wal.main", ProbeKind::Wal, 2, Some(60), None),
        day("archive.main", ProbeKind::Archive, 0, None, Some(7 * 86400)),
        day("archive.main", ProbeKind::Archive, 1, None, Some(86400)),
        day("disk.backup", ProbeKind::Disk, 0, None, None),
    ];
    let r = build(i);
    assert_eq!(r.recoverability.len(), 2, "{:?}", r.recoverability);
    let wal = &r.recoverability[0];
    assert_eq!(wal.check, "wal.main");
    assert_eq!(
        (
            wal.days,
            wal.data_at_risk_secs_max,
            wal.days_over_data_at_risk_limit
        ),
        // 0, 30 min and 1 min at worst: one day over the default 15 min (a minute at risk
        // on a busy primary is no finding).
        (3, Some(1800), 1)
    );
    let archive = &r.recoverability[1];
    assert_eq!(
        (archive.check.as_str(), archive.window_secs_min),
        ("archive.main", Some(86400))
    );
    // The host's own limit, as its WAL verdict applied it.
    let mut i = input(Vec::new());
    i.days = vec![
        day("wal.main", ProbeKind::Wal, 1, Some(1800), None),
        day("wal.main", ProbeKind::Wal, 2, Some(60), None),
    ];
    i.risk_limits.insert(("db1".into(), "wal.main".into()), 30);
    assert_eq!(build(i).recoverability[0].days_over_data_at_risk_limit, 2);
}

#[test]
fn the_agents_spool_check_is_not_capacity() {
    let mut i = input(Vec::new());
    i.days = vec![
        disk_day("db1", "disk.agent-spool", "dev:2050", 900, 1000),
        disk_day("db1", "disk.backup", "dev:2049", 40, 100),
    ];
    let r = build(i);
    assert_eq!(r.summary.filesystem_used_bytes, 40);
    assert_eq!(r.storage.len(), 1);
    assert_eq!(r.storage[0].check, "disk.backup");
}

#[test]
fn drills_of_the_month_count_runs_passes_and_recovery_times() {
    let day = |n: i64, ok: i64, critical: i64, rto: Option<i64>| {
        let mut r = Rollup::empty(
            "db1",
            "drill.main",
            crate::store::reports::Period::Day,
            t(n * 1440).timestamp_millis(),
            ProbeKind::Drill,
        );
        r.samples = ok + critical;
        r.n_ok = ok;
        r.n_critical = critical;
        r.duration_secs = rto;
        r
    };
    let mut i = input(Vec::new());
    i.days = vec![
        day(0, 1, 0, Some(100)),
        day(7, 1, 0, Some(300)),
        day(14, 0, 1, None),
        day(21, 1, 0, Some(200)),
    ];
    let r = build(i);
    assert_eq!(r.drills.len(), 1);
    let d = &r.drills[0];
    assert_eq!((d.drills, d.passed, d.warned, d.failed), (4, 3, 0, 1));
    assert_eq!(d.rto_median_secs, Some(200.0));
    assert_eq!(d.rto_max_secs, Some(300));
}

#[test]
fn clusters_no_drill_restored_this_month_are_listed() {
    let row = |host: &str, check: &str, kind: ProbeKind| {
        let mut r = Rollup::empty(
            host,
            check,
            crate::store::reports::Period::Day,
            t(1440).timestamp_millis(),
            kind,
        );
        r.samples = 1;
        r.n_ok = 1;
        r
    };
    let pair = |h: &str, c: &str| (h.to_string(), c.to_string());
    let mut i = input(Vec::new());
    i.days = vec![
        row("db1", "wal.main", ProbeKind::Wal),
        row("db2", "wal.main", ProbeKind::Wal),
        row("db3", "wal.main", ProbeKind::Wal),
        row("db4", "wal.main", ProbeKind::Wal),
        row("db5", "wal.main", ProbeKind::Wal),
        row("backup1", "drill.db1", ProbeKind::Drill),
        {
            // Ran twice, failed twice: it restored nothing.
            let mut r = row("backup1", "drill.db5", ProbeKind::Drill);
            (r.samples, r.n_ok, r.n_critical) = (2, 0, 2);
            r
        },
    ];
    i.drills_of = BTreeMap::from([
        (pair("db1", "wal.main"), vec![pair("backup1", "drill.db1")]),
        (pair("db2", "wal.main"), vec![pair("backup1", "drill.db2")]),
        (pair("db3", "wal.main"), vec![]),
        (pair("db5", "wal.main"), vec![pair("backup1", "drill.db5")]),
    ]);
    let r = build(i);
    let lines: Vec<_> = r
        .not_drilled
        .iter()
        .map(|n| (n.host.as_str(), n.drills.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("db2", "drill.db2 on backup1 did not run"),
            ("db3", "no drill restores this cluster"),
            (
                "db4",
                "not known: the WAL check cannot read the system identifier"
            ),
            ("db5", "drill.db5 on backup1 failed all 2 of its runs"),
        ]
    );
}

#[test]
fn archive_success_rate_of_the_month_sums_the_daily_deltas() {
    let day = |n: i64, archived: i64, failed: i64| {
        let mut r = Rollup::empty(
            "db1",
            "wal.main",
            crate::store::reports::Period::Day,
            t(n * 1440).timestamp_millis(),
            ProbeKind::Wal,
        );
        r.samples = 1;
        r.archived_delta = archived;
        r.failed_delta = failed;
        // Hourly archive_command latencies: 1..=24 ms times the day's number.
        r.latency_hourly = (1..=24).map(|h| Some(h * (n + 1))).collect();
        r
    };
    let mut i = input(Vec::new());
    i.days = vec![day(0, 300, 0), day(1, 290, 10), day(2, 0, 0)];
    let r = build(i);
    let l = &r.archive_lag[0];
    assert_eq!((l.archived, l.failed), (590, 10));
    assert_eq!(l.success_pct, Some(98.33));
    // 72 hourly maxima: 1..24, 2..48 by 2, 3..72 by 3.
    let mut all: Vec<f64> = (1..=3)
        .flat_map(|d| (1..=24).map(move |h| f64::from(h * d)))
        .collect();
    all.sort_by(f64::total_cmp);
    assert_eq!(l.latency_median_ms, median(&all));
    assert_eq!(l.latency_p95_ms, quantile(&all, 0.95));
    assert!(l.latency_p95_ms > l.latency_median_ms);
    let mut i = input(Vec::new());
    i.days = vec![day(0, 0, 0)];
    assert_eq!(
        build(i).archive_lag[0].success_pct,
        None,
        "nothing attempted"
    );
}

#[test]
fn a_kind_is_shown_by_its_one_name_also_when_an_older_collector_stored_it() {
    let mut r = Rollup::empty(
        "db1",
        "backup.daily",
        crate::store::reports::Period::Day,
        0,
        ProbeKind::Backup,
    );
    assert_eq!(kind_name(&r), "backup");
    r.kind = "backup_dir".into();
    assert_eq!(kind_name(&r), "backup");
    r.kind = "from_a_newer_collector".into();
    assert_eq!(kind_name(&r), "from_a_newer_collector");
}

#[test]
fn the_typical_backup_time_is_taken_on_the_clock_around_midnight() {
    assert_eq!(typical_minute(&[]), None);
    assert_eq!(typical_minute(&[120.0, 130.0, 125.0]), Some(125.0));
    // 23:55, 00:05, 23:58: around midnight, not noon.
    let m = typical_minute(&[1435.0, 5.0, 1438.0]).unwrap();
    assert_eq!(m, 1438.0);
    let m = typical_minute(&[1430.0, 10.0]).unwrap();
    assert_eq!(m, 0.0);
}
