use super::*;
use crate::config::reports::parse_time_of_day;
use chrono_tz::Europe::Berlin;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn berlin(daily_at: &str) -> Reports {
    Reports {
        timezone: Berlin,
        daily_at: parse_time_of_day(daily_at).unwrap(),
        ..Reports::default()
    }
}

/// Walk `from..until` minute by minute as the scheduler would, claiming what is due;
/// returns every (key, first minute it was produced).
fn walk(
    cfg: &Reports,
    from: &str,
    until: &str,
    claimed: &[(&str, &str)],
) -> Vec<(String, DateTime<Utc>)> {
    let mut claimed: Vec<(String, String)> = claimed
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut now, end) = (utc(from), utc(until));
    let mut fired = Vec::new();
    while now <= end {
        for run in due_runs(now, &claimed, cfg) {
            assert!(!run.baseline);
            assert!(run.at <= now, "{run:?} produced before it is due at {now}");
            fired.push((run.key(), now));
            claimed.push((run.kind.as_str().to_string(), run.key()));
        }
        now += TimeDelta::minutes(1);
    }
    fired
}

const CLAIMED: &[(&str, &str)] = &[
    ("daily", "daily:2026-03-27"),
    ("monthly", "monthly:2026-09"),
];

#[test]
fn eight_oclock_fires_once_on_the_spring_forward_day() {
    let fired = walk(
        &berlin("08:00"),
        "2026-03-28T00:00:00Z",
        "2026-03-30T12:00:00Z",
        CLAIMED,
    );
    assert_eq!(
        fired,
        [
            ("daily:2026-03-28".to_string(), utc("2026-03-28T07:00:00Z")), // CET
            ("daily:2026-03-29".to_string(), utc("2026-03-29T06:00:00Z")), // CEST
            ("daily:2026-03-30".to_string(), utc("2026-03-30T06:00:00Z")),
        ]
    );
}

#[test]
fn eight_oclock_fires_once_on_the_fall_back_day() {
    let claimed = &[
        ("daily", "daily:2026-10-23"),
        ("monthly", "monthly:2026-09"),
    ];
    let fired = walk(
        &berlin("08:00"),
        "2026-10-24T00:00:00Z",
        "2026-10-26T12:00:00Z",
        claimed,
    );
    assert_eq!(
        fired,
        [
            ("daily:2026-10-24".to_string(), utc("2026-10-24T06:00:00Z")), // CEST
            ("daily:2026-10-25".to_string(), utc("2026-10-25T07:00:00Z")), // CET
            ("daily:2026-10-26".to_string(), utc("2026-10-26T07:00:00Z")),
        ]
    );
}

#[test]
fn a_time_in_the_gap_runs_when_the_gap_ends_and_a_repeated_time_runs_once_early() {
    let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    let t = |s| parse_time_of_day(s).unwrap();
    // 02:00–03:00 does not exist: 02:30 and 02:00 run at 03:00 CEST = 01:00 UTC.
    assert_eq!(
        local_instant(Berlin, day, t("02:30")),
        utc("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        local_instant(Berlin, day, t("02:00")),
        utc("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        local_instant(Berlin, day, t("02:59:30")),
        utc("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        local_instant(Berlin, day, t("03:00")),
        utc("2026-03-29T01:00:00Z")
    );
    // 02:00–03:00 happens twice on 2026-10-25: the earlier (CEST) one.
    let day = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
    assert_eq!(
        local_instant(Berlin, day, t("02:30")),
        utc("2026-10-25T00:30:00Z")
    );
    // And the whole days around the changes fire once each.
    let fired = walk(
        &berlin("02:30"),
        "2026-03-28T00:00:00Z",
        "2026-03-30T00:00:00Z",
        CLAIMED,
    );
    let keys: Vec<_> = fired.iter().map(|f| (f.0.as_str(), f.1)).collect();
    assert_eq!(
        keys,
        [
            ("daily:2026-03-28", utc("2026-03-28T01:30:00Z")),
            ("daily:2026-03-29", utc("2026-03-29T01:00:00Z")),
        ]
    );
    let claimed = &[
        ("daily", "daily:2026-10-24"),
        ("monthly", "monthly:2026-09"),
    ];
    let fired = walk(
        &berlin("02:30"),
        "2026-10-24T22:00:00Z",
        "2026-10-25T23:00:00Z",
        claimed,
    );
    assert_eq!(
        fired,
        [("daily:2026-10-25".to_string(), utc("2026-10-25T00:30:00Z"))]
    );
}

#[test]
fn after_downtime_only_the_latest_missed_run_is_produced() {
    let claimed = vec![
        ("daily".to_string(), "daily:2026-03-20".to_string()),
        ("monthly".to_string(), "monthly:2025-12".to_string()),
    ];
    let runs = due_runs(utc("2026-03-29T12:00:00Z"), &claimed, &berlin("08:00"));
    let keys: Vec<_> = runs.iter().map(|r| (r.key(), r.at, r.baseline)).collect();
    assert_eq!(
        keys,
        [
            (
                "daily:2026-03-29".to_string(),
                utc("2026-03-29T06:00:00Z"),
                false
            ),
            (
                "monthly:2026-02".to_string(),
                utc("2026-03-01T07:00:00Z"),
                false
            ),
        ]
    );
    // Claimed: nothing more until the next day.
    let claimed = vec![
        ("daily".to_string(), "daily:2026-03-29".to_string()),
        ("monthly".to_string(), "monthly:2026-02".to_string()),
    ];
    assert!(due_runs(utc("2026-03-30T05:59:00Z"), &claimed, &berlin("08:00")).is_empty());
}

#[test]
fn the_first_start_records_a_baseline_and_sends_nothing() {
    let runs = due_runs(utc("2026-03-29T12:00:00Z"), &[], &berlin("08:00"));
    assert!(runs.iter().all(|r| r.baseline), "{runs:?}");
    assert_eq!(runs.len(), 2);
    let off = Reports {
        enabled: false,
        ..berlin("08:00")
    };
    assert!(due_runs(utc("2026-03-29T12:00:00Z"), &[], &off).is_empty());
}

#[test]
fn the_monthly_review_covers_the_previous_month() {
    let cfg = berlin("08:00");
    assert_eq!(
        latest_monthly(utc("2026-03-01T06:59:00Z"), &cfg).key(),
        "monthly:2026-01"
    );
    let run = latest_monthly(utc("2026-03-01T07:00:00Z"), &cfg);
    assert_eq!(
        (run.key(), run.at),
        ("monthly:2026-02".into(), utc("2026-03-01T07:00:00Z"))
    );
    let cfg = Reports {
        monthly_day: 3,
        ..cfg
    };
    assert_eq!(
        latest_monthly(utc("2026-01-02T12:00:00Z"), &cfg).key(),
        "monthly:2025-11"
    );
}

#[test]
fn the_scheduler_wakes_at_the_next_due_time() {
    let cfg = berlin("08:00");
    assert_eq!(
        next_due(utc("2026-03-29T05:00:00Z"), &cfg),
        utc("2026-03-29T06:00:00Z")
    );
    assert_eq!(
        next_due(utc("2026-03-29T06:00:00Z"), &cfg),
        utc("2026-03-30T06:00:00Z")
    );
    assert_eq!(
        next_due(utc("2026-03-31T20:00:00Z"), &cfg),
        utc("2026-04-01T06:00:00Z")
    );
}
