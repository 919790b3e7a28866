//! The reports part of the store contract ([`ReportStore`](super::reports::ReportStore)):
//! rollups kept at ingest, report runs claimed once. Rules as in `suite`; run from
//! `suite::run_all`, so both backends pass it.

use super::outbox::NewNotification;
use super::reports::{Attachment, HOUR_MS, Period, ReportRun};
use super::suite::{at, evaluated, probe_result, unique_host};
use super::{Store, StoreResult};
use backwatch_proto::model::{
    ArchiveDirObs, DiskObs, Observation, PendingSource, ProbeKind, RecoveryWindow, WalObs,
};
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    rollups_follow_ingest(store).await?;
    hourly_rollups_are_pruned_and_daily_ones_kept(store).await?;
    report_run_is_claimed_once_with_its_messages(store).await?;
    Ok(())
}

fn wal(host: &str, n: u32, secs: i64, archived: i64, delay: i64) -> super::Evaluated {
    let mut r = probe_result(host, n, ProbeKind::Wal, "main", secs);
    r.observation = Some(Observation::Wal(WalObs {
        archived_count: archived,
        wal_segment_size_bytes: 16 << 20,
        pending_source: PendingSource::ArchiveStatusdir,
        oldest_ready_age_secs: Some(delay),
        // archive_command latency follows the delay here, so both hourly maxima are known.
        last_archive_latency_ms: Some(delay * 10),
        ready_segments: 1,
        archive_mode: "on".into(),
        archive_command: "cp %p /archive/%f".into(),
        ..WalObs::default()
    }));
    evaluated(r, Status::Ok, "archiving ok")
}

fn disk(host: &str, n: u32, secs: i64, used: u64) -> super::Evaluated {
    let mut r = probe_result(host, n, ProbeKind::Disk, "backup", secs);
    r.observation = Some(Observation::Disk(DiskObs {
        path: "/backup".into(),
        total_bytes: 1000,
        free_bytes: 1000 - used,
        avail_bytes: 1000 - used,
        device_id: 2049,
        ..DiskObs::default()
    }));
    evaluated(r, Status::Ok, "disk ok")
}

fn archive(host: &str, n: u32, secs: i64, window_secs: i64) -> super::Evaluated {
    let mut r = probe_result(host, n, ProbeKind::Archive, "main", secs);
    let end = at(secs);
    r.observation = Some(Observation::Archive(Box::new(ArchiveDirObs {
        path: "/archive".into(),
        exists: true,
        window: Some(RecoveryWindow {
            start: end - chrono::Duration::seconds(window_secs),
            end,
            ..RecoveryWindow::default()
        }),
        ..ArchiveDirObs::default()
    })));
    evaluated(r, Status::Ok, "archive ok")
}

/// Retention deletes the hourly rows of hours that began before the cut, across days (it
/// deletes a day of buckets at a time), and keeps every daily row. Far in the past, so no
/// other scenario has rows before the cut.
pub async fn hourly_rollups_are_pruned_and_daily_ones_kept(store: &dyn Store) -> StoreResult<()> {
    const DAY: i64 = 86_400;
    let host = unique_host("prune-rollups");
    let days = [-404, -403, -401, -400, -399];
    for (n, d) in (1..).zip(days) {
        // Two hours each day, so each day has two hourly rows and one daily row.
        for (k, h) in [(0, 1), (1, 5)] {
            let secs = d * DAY + h * 3600;
            store
                .record_results(&host, &[disk(&host, 2 * n + k, secs, 100)])
                .await?;
        }
    }
    let mine = |period, rows: Vec<super::reports::Rollup>| {
        rows.into_iter()
            .filter(|r| r.host == host && r.period == period)
            .map(|r| r.bucket_start)
            .collect::<Vec<_>>()
    };
    let (from, until) = (
        at(-405 * DAY).timestamp_millis(),
        at(-398 * DAY).timestamp_millis(),
    );
    // The cut falls between the two hours of day -400: its first hour goes, its second stays.
    let cut = at(-400 * DAY + 3 * 3600).timestamp_millis();
    let deleted = store.prune_rollups(Period::Hour, cut).await?;
    assert!(deleted >= 7, "four days and an hour of ours, got {deleted}");
    let hours = mine(
        Period::Hour,
        store.rollups(Period::Hour, from, until).await?,
    );
    assert_eq!(
        hours,
        [
            at(-400 * DAY + 5 * 3600).timestamp_millis(),
            at(-399 * DAY + 3600).timestamp_millis(),
            at(-399 * DAY + 5 * 3600).timestamp_millis(),
        ]
        .map(|t| Period::Hour.bucket(t))
    );
    let daily = mine(Period::Day, store.rollups(Period::Day, from, until).await?);
    assert_eq!(daily.len(), days.len(), "daily rows are kept: {daily:?}");
    assert_eq!(
        store.prune_rollups(Period::Hour, cut).await?,
        0,
        "idempotent"
    );
    Ok(())
}

/// Each new result lands in its hour and day row in the same write; counters grow across
/// the hour boundary; a replayed result changes nothing.
pub async fn rollups_follow_ingest(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("rollup");
    // at(0) is a whole day (see `suite::at`): hours 0 and 1 of it.
    let hour = HOUR_MS / 1000;
    let items = [
        wal(&host, 1, 60, 100, 30),
        wal(&host, 2, hour - 60, 104, 90),
        wal(&host, 3, hour + 60, 110, 10),
        disk(&host, 4, 120, 400),
        disk(&host, 5, hour + 120, 450),
        archive(&host, 6, 300, 7200),
        archive(&host, 7, hour + 300, 3600),
    ];
    for item in &items {
        store
            .record_results(&host, std::slice::from_ref(item))
            .await?;
    }
    // Replays are duplicates: no rollup counts them again.
    store.record_results(&host, &items[..2]).await?;

    let from = at(0).timestamp_millis();
    let mine = |rows: Vec<super::reports::Rollup>| -> Vec<_> {
        rows.into_iter().filter(|r| r.host == host).collect()
    };
    let hours = mine(
        store
            .rollups(Period::Hour, from, from + 2 * HOUR_MS)
            .await?,
    );
    let wal_hours: Vec<_> = hours.iter().filter(|r| r.check == "wal.main").collect();
    assert_eq!(wal_hours.len(), 2, "{hours:?}");
    assert_eq!(wal_hours[0].samples, 2);
    assert_eq!(wal_hours[0].archived_delta, 4);
    assert_eq!(
        wal_hours[1].archived_delta, 6,
        "measured from the previous hour's last"
    );
    assert_eq!(wal_hours[0].delay_secs_max, Some(90));
    // Recovery figures: the largest data at risk, the narrowest window.
    assert_eq!(wal_hours[0].risk_secs_max, Some(90));
    assert_eq!(wal_hours[1].risk_secs_max, Some(10));
    let days = mine(
        store
            .rollups(Period::Day, from, from + 24 * HOUR_MS)
            .await?,
    );
    let wal_day = days.iter().find(|r| r.check == "wal.main");
    assert_eq!(
        wal_day.map(|r| (r.samples, r.archived_delta, r.wal_bytes)),
        Some((3, 10, 10 * (16 << 20)))
    );
    assert_eq!(
        wal_day.map(|r| (r.delay_hourly[0], r.delay_hourly[1])),
        Some((Some(90), Some(10)))
    );
    assert_eq!(
        wal_day.map(|r| (r.latency_hourly[0], r.latency_hourly[1])),
        Some((Some(900), Some(100))),
        "archive_command latency, hourly maxima"
    );
    let disk_day = days.iter().find(|r| r.check == "disk.backup");
    assert_eq!(
        disk_day.map(|r| (
            r.used_bytes_last,
            r.used_bytes_max,
            r.capacity_bytes,
            r.kind.as_str()
        )),
        Some((Some(450), Some(450), Some(1000), "disk"))
    );
    // The filesystem it measured, for fleet totals that count a filesystem once.
    assert_eq!(
        disk_day.and_then(|r| r.filesystem.as_deref()),
        Some("dev:2049")
    );
    let wal_day = wal_day.expect("wal day row");
    assert_eq!(wal_day.filesystem, None, "no filesystem for other kinds");
    assert_eq!(wal_day.risk_secs_max, Some(90));
    assert_eq!(wal_day.window_secs_min, None);
    let archive_day = days.iter().find(|r| r.check == "archive.main");
    assert_eq!(
        archive_day.map(|r| (r.window_secs_min, r.risk_secs_max)),
        Some((Some(3600), None))
    );
    assert_eq!(disk_day.map(|r| r.status_last), Some(Status::Ok));

    // put_rollups replaces a row as given.
    let mut edited = disk_day.cloned().expect("disk day row");
    edited.used_bytes_last = Some(1);
    store.put_rollups(std::slice::from_ref(&edited)).await?;
    let again = mine(
        store
            .rollups(Period::Day, from, from + 24 * HOUR_MS)
            .await?,
    );
    assert!(again.contains(&edited));
    Ok(())
}

fn report_message(key: &str, n: u32, created: DateTime<Utc>) -> NewNotification {
    NewNotification {
        kind: "report".into(),
        route: "management".into(),
        channel: super::outbox::Channel::Email,
        recipient: format!("m{n}@example.com"),
        subject: format!("Backwatch report {key}"),
        body_text: "text".into(),
        body_html: "<img src=\"cid:chart-1\">".into(),
        payload: String::new(),
        message_id: format!("<{key}-{n}@example.com>"),
        thread_id: None,
        created_at: created,
    }
}

/// The first claim of a run key queues its messages with their inline parts; any later
/// claim of the key (a restart, another collector) writes nothing.
pub async fn report_run_is_claimed_once_with_its_messages(store: &dyn Store) -> StoreResult<()> {
    let period = unique_host("suite");
    let key = format!("daily:{period}");
    let run = ReportRun {
        key: key.clone(),
        kind: "daily".into(),
        period,
        scheduled_at: at(0),
        claimed_at: at(5),
        claimed_by: "suite-a".into(),
        baseline: false,
        notifications: 0,
    };
    let part = Attachment {
        cid: "chart-1".into(),
        content_type: "image/png".into(),
        data: "iVBORw0KGgo=".into(),
    };
    let items = vec![
        (report_message(&key, 1, at(5)), vec![part.clone()]),
        (report_message(&key, 2, at(5)), Vec::new()),
    ];
    assert!(store.claim_report_run(&run, &items).await?);
    let mut second = run.clone();
    second.claimed_by = "suite-b".into();
    let other = vec![(report_message(&key, 3, at(6)), Vec::new())];
    assert!(!store.claim_report_run(&second, &other).await?);

    let latest = store.latest_report_runs().await?;
    assert!(
        latest.iter().any(|(k, v)| k == "daily" && *v >= key),
        "{latest:?}"
    );
    let runs = store.report_runs(1000).await?;
    let mine: Vec<_> = runs.iter().filter(|r| r.key == key).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].claimed_by.as_str(), mine[0].notifications),
        ("suite-a", 2)
    );
    let queued: Vec<_> = store
        .notifications(None, None, 5000)
        .await?
        .into_iter()
        .filter(|n| n.message_id.starts_with(&format!("<{key}-")))
        .collect();
    assert_eq!(queued.len(), 2, "the losing claim queued nothing");
    let with_part = queued
        .iter()
        .find(|n| n.message_id == format!("<{key}-1@example.com>"));
    let parts: Vec<Attachment> = with_part
        .and_then(|n| n.attachments.as_deref())
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    assert_eq!(parts, [part]);
    Ok(())
}
