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
        let r = result(ProbeKind::WalArchive, "main", Observation::WalArchive(now));
        let p = result(ProbeKind::WalArchive, "main", Observation::WalArchive(prev));
        judged(&r, Some(Status::Critical), Some(&p));
    }

    #[test]
    fn any_disk_observation_gets_a_verdict(obs in disk(), prev in prop_oneof![Just(None), Just(Some(Status::Critical)), Just(Some(Status::Warning))]) {
        judged(&result(ProbeKind::Disk, "backup", Observation::Disk(obs)), prev, None);
    }

    #[test]
    fn any_backup_observation_gets_a_verdict(obs in backup(), name in prop_oneof![Just("daily"), Just("weekly"), Just("other")]) {
        judged(&result(ProbeKind::BackupDir, name, Observation::BackupDir(obs)), None, None);
    }
}
