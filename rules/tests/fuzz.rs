//! Property tests: no observation an agent can send makes a rule panic (overflow, odd
//! timestamps, negative counters), and every verdict has a summary. A hostile or buggy agent
//! must get a verdict, not crash the collector's ingest task.

use backwatch_proto::model::*;
use backwatch_rules::status::Status;
use backwatch_rules::{Limits, evaluate};
use chrono::DateTime;
use proptest::prelude::*;

fn time() -> impl Strategy<Value = Option<chrono::DateTime<chrono::Utc>>> {
    prop_oneof![
        Just(None),
        (-62_000_000_000i64..250_000_000_000i64).prop_map(|s| DateTime::from_timestamp(s, 0)),
    ]
}

fn wal() -> impl Strategy<Value = WalObs> {
    (
        (
            any::<bool>(),
            prop_oneof![Just("on"), Just("off"), Just("always"), Just("")],
        ),
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (time(), time(), time()),
        (
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(any::<i64>()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (in_recovery, mode),
                (archived, failed, seg, timeout),
                (ta, tf, reset),
                (ready, hist, age, statusdir),
            )| WalObs {
                in_recovery,
                archive_mode: mode.into(),
                archive_command: "cp %p /a/%f".into(),
                archive_timeout_secs: timeout,
                wal_segment_size_bytes: seg,
                archived_count: archived,
                last_archived_time: ta,
                failed_count: failed,
                last_failed_time: tf,
                stats_reset: reset,
                ready_segments: ready,
                ready_history: hist,
                oldest_ready_name: Some("000000010000000000000001".into()),
                oldest_ready_age_secs: age,
                pending_source: if statusdir {
                    PendingSource::ArchiveStatusdir
                } else {
                    PendingSource::Unavailable
                },
                ..Default::default()
            },
        )
}

fn disk() -> impl Strategy<Value = DiskObs> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(total, free, avail, it, ifree, iavail)| DiskObs {
            path: "/backup".into(),
            total_bytes: total,
            free_bytes: free,
            avail_bytes: avail,
            inodes_total: it,
            inodes_free: ifree,
            inodes_avail: iavail,
            ..Default::default()
        })
}

fn backup() -> impl Strategy<Value = BackupDirObs> {
    (
        any::<bool>(),
        any::<i64>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(|(exists, age, size, expected, has_newest)| BackupDirObs {
            path: "/backup/daily".into(),
            exists,
            file_count: 1,
            newest: has_newest.then(|| NewestFile {
                path: "/backup/daily/x".into(),
                mtime: chrono::Utc::now(),
                size_bytes: size,
                age_secs: age,
            }),
            expected_max_age_secs: expected,
            ..Default::default()
        })
}

fn archive() -> impl Strategy<Value = ArchiveDirObs> {
    (
        (any::<bool>(), any::<u32>(), any::<bool>(), any::<u64>()),
        (
            any::<i64>(),
            proptest::option::of(any::<i64>()),
            any::<u64>(),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (exists, mode, truncated, min_ret),
                (age, cluster_age, seg),
                (missing, after, short, short_after),
                (uncompressed, has_file, in_recovery),
            )| ArchiveDirObs {
                path: "/archive_path".into(),
                exists,
                access: Some(DirAccess {
                    mode,
                    ..DirAccess::default()
                }),
                expected_owner: Some("postgres".into()),
                expected_mode: Some(0o700),
                expected_min_retention_secs: Some(min_ret),
                truncated,
                files_open_to_others: missing,
                oldest_segment: Some(ArchivedFile {
                    name: "000000010000000000000004".into(),
                    mtime: chrono::Utc::now(),
                    size_bytes: seg,
                    age_secs: age,
                }),
                wal_segment_size_bytes: seg,
                continuity: Some(Continuity {
                    gap_count: 1,
                    missing_segments: missing,
                    gaps: vec![ArchiveGap {
                        first_missing: "000000010000000000000005".into(),
                        missing,
                        segments_after: after,
                    }],
                    short_segments: short,
                    short: vec![ShortSegment {
                        name: "000000010000000000000006".into(),
                        size_bytes: short,
                        segments_after: short_after,
                    }],
                    missing_before_range: short,
                    ..Continuity::default()
                }),
                postgres: Some(ArchiverView {
                    in_recovery,
                    last_archived_wal: Some("000000010000000000000007".into()),
                    last_archived_uncompressed_bytes: uncompressed,
                    last_archived_file: has_file.then(|| ArchivedFile {
                        name: "000000010000000000000007".into(),
                        mtime: chrono::Utc::now(),
                        size_bytes: seg,
                        age_secs: age,
                    }),
                    cluster_age_secs: cluster_age,
                    ..ArchiverView::default()
                }),
                ..ArchiveDirObs::default()
            },
        )
}

fn result(kind: ProbeKind, name: &str, obs: Observation) -> ProbeResult {
    ProbeResult {
        result_id: "x".into(),
        kind,
        name: name.into(),
        measured_at: chrono::Utc::now(),
        duration_ms: 1,
        interval_secs: 60,
        error: None,
        observation: Some(obs),
    }
}

fn judged(r: &ProbeResult, prev_status: Option<Status>, prev: Option<&ProbeResult>) {
    let mut limits = Limits::default();
    limits.backup_default.min_size_bytes = Some(1024);
    let v = evaluate(r, prev_status, prev, &limits);
    assert!(!v.summary.is_empty());
}

proptest! {
    // Failures are shown with their minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_wal_observation_gets_a_verdict(now in wal(), prev in wal()) {
        let r = result(ProbeKind::Wal, "main", Observation::Wal(now));
        let p = result(ProbeKind::Wal, "main", Observation::Wal(prev));
        judged(&r, Some(Status::Critical), Some(&p));
    }

    #[test]
    fn any_disk_observation_gets_a_verdict(obs in disk(), prev in prop_oneof![Just(None), Just(Some(Status::Critical)), Just(Some(Status::Warning))]) {
        judged(&result(ProbeKind::Disk, "backup", Observation::Disk(obs)), prev, None);
    }

    #[test]
    fn any_archive_observation_gets_a_verdict(obs in archive(), in_flight in any::<u64>()) {
        let mut limits = Limits::default();
        limits.archive.in_flight_segments = in_flight;
        let r = result(ProbeKind::Archive, "main", Observation::Archive(Box::new(obs)));
        let v = evaluate(&r, None, None, &limits);
        prop_assert!(!v.summary.is_empty());
    }

    #[test]
    fn any_backup_observation_gets_a_verdict(obs in backup(), name in prop_oneof![Just("daily"), Just("weekly"), Just("other")]) {
        judged(&result(ProbeKind::Backup, name, Observation::Backup(obs)), None, None);
    }
}
