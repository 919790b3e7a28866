use super::*;

fn wal(at: i64, archived: i64, delay: i64) -> Sample {
    Sample {
        at,
        status: Some(Status::Ok),
        interval_secs: 900,
        delay: Some(delay),
        latency: Some(delay * 10),
        archived: Some(archived),
        failed: Some(0),
        segment_bytes: Some(16 << 20),
        ..Sample::default()
    }
}

fn t(period: Period, at: i64) -> Rollup {
    Rollup::empty("h", "wal.main", period, period.bucket(at), ProbeKind::Wal)
}

#[test]
fn counters_grow_across_the_bucket_boundary() {
    let h0 = fold(None, None, &wal(10, 100, 5), t(Period::Hour, 10));
    let h0 = fold(
        Some(h0),
        None,
        &wal(HOUR_MS - 1, 110, 9),
        t(Period::Hour, 10),
    );
    assert_eq!((h0.archived_delta, h0.delay_secs_max), (10, Some(9)));
    // The next hour's first sample measures from the previous hour's last.
    let h1 = fold(
        None,
        Some(&h0),
        &wal(HOUR_MS + 5, 114, 1),
        t(Period::Hour, HOUR_MS),
    );
    assert_eq!(h1.archived_delta, 4);
    assert_eq!(h1.wal_bytes, 4 * (16 << 20));
    // A reset adds nothing; an older replay changes no last value.
    let h1 = fold(
        Some(h1),
        None,
        &wal(HOUR_MS + 10, 3, 1),
        t(Period::Hour, HOUR_MS),
    );
    assert_eq!((h1.archived_delta, h1.archived_count), (4, Some(3)));
    let h1 = fold(
        Some(h1),
        None,
        &wal(HOUR_MS + 7, 500, 99),
        t(Period::Hour, HOUR_MS),
    );
    assert_eq!(
        (h1.archived_count, h1.samples, h1.delay_secs_max),
        (Some(3), 3, Some(99))
    );
}

#[test]
fn day_rows_keep_hourly_maxima() {
    let d = fold(None, None, &wal(HOUR_MS * 3 + 1, 1, 40), t(Period::Day, 0));
    let d = fold(
        Some(d),
        None,
        &wal(HOUR_MS * 3 + 9, 2, 20),
        t(Period::Day, 0),
    );
    let d = fold(
        Some(d),
        None,
        &wal(HOUR_MS * 23 + 9, 3, 7),
        t(Period::Day, 0),
    );
    assert_eq!(d.delay_hourly.len(), 24);
    assert_eq!(
        (
            d.latency_hourly[3],
            d.latency_hourly[23],
            d.latency_hourly[4]
        ),
        (Some(400), Some(70), None)
    );
    assert_eq!(
        (d.delay_hourly[3], d.delay_hourly[23], d.delay_hourly[4]),
        (Some(40), Some(7), None)
    );
    assert_eq!(
        decode_hourly(encode_hourly(&d.delay_hourly)),
        d.delay_hourly
    );
}

#[test]
fn a_backup_counts_when_the_newest_file_changes() {
    let b = |at, mtime| Sample {
        at,
        status: Some(Status::Ok),
        newest_mtime: Some(mtime),
        ..Sample::default()
    };
    let tpl = || Rollup::empty("h", "backup.daily", Period::Day, 0, ProbeKind::Backup);
    let d = fold(None, None, &b(100, 50), tpl());
    let d = fold(Some(d), None, &b(200, 50), tpl());
    let d = fold(Some(d), None, &b(300, 250), tpl());
    assert_eq!(d.new_backups, 2);
}

#[test]
fn a_base_backups_duration_is_kept() {
    use backwatch_proto::model::{BackupDirObs, BaseBackup, ProbeKind, ProbeResult};
    let obs = BackupDirObs {
        exists: true,
        newest_base_backup: Some(BaseBackup {
            duration_secs: Some(754),
            ..BaseBackup::default()
        }),
        ..BackupDirObs::default()
    };
    let item = Evaluated {
        result: ProbeResult {
            result_id: "r1".into(),
            kind: ProbeKind::Backup,
            name: "daily".into(),
            measured_at: chrono::DateTime::from_timestamp(1_772_323_200, 0).unwrap(),
            duration_ms: 1,
            interval_secs: 21_600,
            error: None,
            observation: Some(Observation::Backup(obs)),
        },
        received_at: chrono::DateTime::from_timestamp(1_772_323_201, 0).unwrap(),
        verdict: backwatch_rules::status::Verdict::new(Status::Ok, "ok"),
    };
    assert_eq!(sample(&item).duration, Some(754));
}
