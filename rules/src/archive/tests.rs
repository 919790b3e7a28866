//! The archive directory rule as a table of scenarios, one assertion each.

use super::*;
use backwatch_proto::model::{
    ArchiveGap, ArchivedFile, BackupHistory, Continuity, DirAccess, ShortSegment, SizeSource,
};
use chrono::{DateTime, Utc};

const DAY: i64 = 86_400;
const SEG: u64 = 16 << 20;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
}

fn file(name: &str, age_secs: i64) -> ArchivedFile {
    ArchivedFile {
        name: name.into(),
        mtime: at(-age_secs),
        size_bytes: SEG,
        age_secs,
    }
}

/// A healthy archive of a month-old cluster: 8 days kept, continuous, last archived present.
fn healthy() -> ArchiveDirObs {
    ArchiveDirObs {
        path: "/archive_path".into(),
        exists: true,
        access: Some(DirAccess {
            uid: 117,
            owner: Some("postgres".into()),
            gid: 123,
            group: Some("postgres".into()),
            mode: 0o700,
        }),
        expected_owner: Some("postgres".into()),
        expected_group: Some("postgres".into()),
        expected_mode: Some(0o700),
        segments: 700,
        segment_bytes: 700 * SEG,
        oldest_segment: Some(file("000000010000000000000010", 8 * DAY)),
        newest_segment: Some(file("0000000100000002000000CB", 60)),
        wal_segment_size_bytes: SEG,
        segment_size_source: SizeSource::Postgresql,
        timeline: 1,
        continuity: Some(Continuity {
            newest_backup: Some("000000010000000200000010.00000028.backup".into()),
            range_start: "000000010000000200000010".into(),
            range_end: "0000000100000002000000CB".into(),
            range_segments: 188,
            ..Continuity::default()
        }),
        postgres: Some(ArchiverView {
            wal_probe: "main".into(),
            archive_mode: "on".into(),
            archive_command: "test ! -f /archive_path/%f && cp %p /archive_path/%f".into(),
            archived_count: 700,
            last_archived_wal: Some("0000000100000002000000CB".into()),
            last_archived_time: Some(at(-60)),
            last_archived_file: Some(file("0000000100000002000000CB", 60)),
            last_archived_uncompressed_bytes: Some(SEG),
            cluster_created_at: Some(at(-30 * DAY)),
            cluster_age_secs: Some(30 * DAY),
            ..ArchiverView::default()
        }),
        ..ArchiveDirObs::default()
    }
}

fn judged(obs: &ArchiveDirObs) -> Verdict {
    judge(obs, &ArchiveDirLimits::default())
}

fn gap(first: &str, missing: u64, after: u64) -> ArchiveGap {
    ArchiveGap {
        first_missing: first.into(),
        missing,
        segments_after: after,
    }
}

fn with_gaps(obs: &mut ArchiveDirObs, gaps: Vec<ArchiveGap>) {
    let c = obs.continuity.as_mut().expect("continuity");
    c.gap_count = gaps.len() as u64;
    c.missing_segments = gaps.iter().map(|g| g.missing).sum();
    c.gaps = gaps;
}

#[test]
fn healthy_archive_is_ok_and_says_what_it_holds() {
    let v = judged(&healthy());
    assert_eq!(v.status, Status::Ok, "{}", v.summary);
    assert_eq!(
        v.summary,
        "archive ok: 700 segments (10.9 GiB), 8.0 d of WAL since 000000010000000000000010; \
         continuous from the newest base backup 000000010000000200000010 to \
         0000000100000002000000CB; last archived 0000000100000002000000CB is present"
    );
    assert_eq!(v.procedure, None);
}

#[test]
fn newest_base_backup_duration_is_shown_and_kept() {
    let mut obs = healthy();
    obs.newest_backup = Some(BackupHistory {
        name: "000000010000000200000010.00000028.backup".into(),
        duration_secs: Some(750),
        ..BackupHistory::default()
    });
    let v = judged(&obs);
    assert!(
        v.summary.contains("; newest base backup took 12 min;"),
        "{}",
        v.summary
    );
    assert_eq!(v.details["newest_backup"]["duration_secs"], 750);
}

#[test]
fn missing_directory_is_critical() {
    let obs = ArchiveDirObs {
        path: "/archive_path".into(),
        ..ArchiveDirObs::default()
    };
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(v.summary, "archive directory /archive_path does not exist");
    assert_eq!(v.procedure, Some(procedure::ARCHIVE));
}

#[test]
fn unlistable_directory_is_unknown_with_what_to_grant() {
    let mut obs = healthy();
    obs.read_error = Some("permission denied: grant …".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Unknown);
    assert_eq!(
        v.summary,
        "cannot list archive directory /archive_path: permission denied: grant …"
    );
}

#[test]
fn mode_0755_is_reported() {
    let mut obs = healthy();
    obs.access.as_mut().expect("access").mode = 0o755;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "archive directory mode 0755, expected 0700: others can list it"
    );
}

#[test]
fn files_readable_by_others_behind_an_open_directory_are_critical() {
    let mut obs = healthy();
    obs.access.as_mut().expect("access").mode = 0o755;
    obs.files_open_to_others = 3;
    obs.first_open_to_others = Some("000000010000000000000010".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert!(
        v.summary.starts_with(
            "3 archived files are readable by others (first 000000010000000000000010)"
        ),
        "{}",
        v.summary
    );
}

#[test]
fn directory_writable_by_others_is_critical() {
    let mut obs = healthy();
    obs.access.as_mut().expect("access").mode = 0o703;
    assert_eq!(judged(&obs).status, Status::Critical);
}

#[test]
fn wrong_owner_is_a_warning_and_numeric_ids_compare_as_ids() {
    let mut obs = healthy();
    obs.access.as_mut().expect("access").owner = Some("root".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "archive directory owned by root, expected postgres"
    );
    let mut obs = healthy();
    obs.expected_owner = Some("117".into());
    obs.expected_group = Some("123".into());
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn unchecked_expectations_are_not_reported() {
    let mut obs = healthy();
    obs.access = Some(DirAccess {
        mode: 0o750,
        ..DirAccess::default()
    });
    obs.expected_owner = None;
    obs.expected_group = None;
    obs.expected_mode = None;
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn archive_command_that_copies_nothing_is_critical_while_the_archiver_looks_healthy() {
    let mut obs = healthy();
    let pg = obs.postgres.as_mut().expect("postgres");
    pg.archive_command = "/bin/true".into();
    pg.last_archived_file = None;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(
        v.summary,
        "0000000100000002000000CB is not in the archive although PostgreSQL reports it \
         archived at 2023-11-14 22:12:20 UTC (700 segments archived): archive_command \
         '/bin/true' reports success without copying here"
    );
}

#[test]
fn the_quoted_archive_command_can_be_hidden_from_a_summary() {
    let mut obs = healthy();
    let pg = obs.postgres.as_mut().expect("postgres");
    pg.archive_command =
        "rclone copy %p s3://u:***@x/' reports success without copying here".into();
    pg.last_archived_file = None;
    let v = judged(&obs);
    let hidden = super::hide_command(&v.summary, "(hidden)").expect("a command is quoted");
    assert!(!hidden.contains("rclone"), "{hidden}");
    assert!(
        hidden.ends_with(": archive_command (hidden) reports success without copying here"),
        "{hidden}"
    );
    assert_eq!(
        super::hide_command("backup.daily is 3h old", "(hidden)"),
        None
    );
}

#[test]
fn truncated_last_archived_segment_is_critical() {
    let mut obs = healthy();
    obs.postgres
        .as_mut()
        .expect("postgres")
        .last_archived_uncompressed_bytes = Some(8192);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(
        v.summary,
        "0000000100000002000000CB is truncated in the archive: 8192 of 16777216 bytes"
    );
}

#[test]
fn compressed_last_archived_of_unknown_size_is_fine() {
    let mut obs = healthy();
    obs.postgres
        .as_mut()
        .expect("postgres")
        .last_archived_uncompressed_bytes = None;
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn last_archived_history_file_is_not_size_checked() {
    let mut obs = healthy();
    let pg = obs.postgres.as_mut().expect("postgres");
    pg.last_archived_wal = Some("00000002.history".into());
    pg.last_archived_uncompressed_bytes = Some(42);
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn unreachable_postgres_is_unknown_but_the_directory_is_still_judged() {
    let mut obs = healthy();
    obs.postgres = Some(ArchiverView {
        wal_probe: "main".into(),
        error: Some("cannot connect: connection refused".into()),
        ..ArchiverView::default()
    });
    obs.access.as_mut().expect("access").mode = 0o750;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Unknown);
    assert_eq!(
        v.summary,
        "cannot ask PostgreSQL (wal.main) what it archived: cannot connect: connection refused; \
         archive directory mode 0750, expected 0700: group access differs"
    );
}

#[test]
fn standby_archiver_statistics_are_not_cross_checked() {
    let mut obs = healthy();
    let pg = obs.postgres.as_mut().expect("postgres");
    pg.in_recovery = true;
    pg.last_archived_file = None;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Ok);
    assert!(
        v.summary
            .ends_with("standby: archiving is checked on the primary")
    );
}

#[test]
fn gap_in_the_middle_names_the_first_missing_segment() {
    let mut obs = healthy();
    with_gaps(&mut obs, vec![gap("000000010000000200000042", 1, 137)]);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(
        v.summary,
        "gap in the archive: 000000010000000200000042 is missing although PostgreSQL reports \
         everything up to 0000000100000002000000CB archived, 137 segments before the \
         newest; recovery from the newest base backup \
         (000000010000000200000010.00000028.backup) stops there"
    );
}

#[test]
fn several_gaps_are_counted_and_the_oldest_is_named() {
    let mut obs = healthy();
    with_gaps(
        &mut obs,
        vec![
            gap("000000010000000200000042", 3, 130),
            gap("0000000100000002000000A0", 2, 40),
        ],
    );
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert!(
        v.summary.starts_with(
            "gap in the archive: 000000010000000200000042 and the 2 segments after it are missing"
        ),
        "{}",
        v.summary
    );
    assert!(
        v.summary.contains("2 gaps, 5 segments missing in all"),
        "{}",
        v.summary
    );
}

/// The linked server reports `wal` as its last archived segment.
fn last_archived(obs: &mut ArchiveDirObs, wal: &str) {
    let pg = obs.postgres.as_mut().expect("linked server");
    pg.last_archived_wal = Some(wal.into());
    pg.last_archived_file = Some(file(wal, 60));
}

#[test]
fn gap_next_to_the_newest_segment_is_probably_in_flight_without_a_linked_server() {
    let mut obs = healthy();
    obs.postgres = None;
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "0000000100000002000000CA is not in the archive yet, 1 segments before the newest: \
         probably in flight"
    );
}

#[test]
fn gap_at_or_before_the_last_archived_segment_is_lost_however_close_to_the_newest() {
    let mut obs = healthy();
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(
        v.summary,
        "gap in the archive: 0000000100000002000000CA is missing although PostgreSQL reports \
         everything up to 0000000100000002000000CB archived, 1 segments before the newest; \
         recovery from the newest base backup (000000010000000200000010.00000028.backup) \
         stops there"
    );
}

#[test]
fn gap_at_the_last_archived_segment_itself_is_lost() {
    let mut obs = healthy();
    last_archived(&mut obs, "0000000100000002000000CA");
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    assert_eq!(judged(&obs).status, Status::Critical);
}

#[test]
fn gap_after_the_last_archived_segment_is_probably_in_flight() {
    let mut obs = healthy();
    last_archived(&mut obs, "0000000100000002000000C9");
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn gap_on_an_older_timeline_before_the_last_archived_segment_is_lost() {
    let mut obs = healthy();
    last_archived(&mut obs, "0000000200000002000000CB");
    with_gaps(&mut obs, vec![gap("0000000100000002000000C8", 1, 3)]);
    assert_eq!(judged(&obs).status, Status::Critical);
}

#[test]
fn partial_last_archived_segment_counts_as_archived_through_its_position() {
    let mut obs = healthy();
    last_archived(&mut obs, "0000000100000002000000CA.partial");
    with_gaps(&mut obs, vec![gap("0000000100000002000000C9", 1, 2)]);
    assert_eq!(judged(&obs).status, Status::Critical);
}

#[test]
fn an_empty_archive_of_an_old_cluster_is_a_retention_warning_of_a_new_one_not() {
    let mut obs = healthy();
    obs.segments = 0;
    obs.oldest_segment = None;
    obs.newest_segment = None;
    obs.continuity = None;
    obs.window = None;
    let pg = obs.postgres.as_mut().expect("linked server");
    pg.last_archived_wal = None;
    pg.last_archived_file = None;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning, "{}", v.summary);
    assert!(
        v.summary
            .contains("WAL retention 0 is below the minimum 7.0 d"),
        "{}",
        v.summary
    );
    obs.postgres.as_mut().expect("server").cluster_age_secs = Some(3600);
    assert_eq!(judged(&obs).status, Status::Ok);
    obs.postgres = None;
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn last_archived_backup_history_file_vouches_for_the_segments_before_its_own() {
    // The archiver takes ready files in name order: `<S>.<offset>.backup` after every
    // segment before S; S itself may still be being written when the backup stopped in it.
    let mut obs = healthy();
    last_archived(&mut obs, "0000000100000002000000CA.00000028.backup");
    with_gaps(&mut obs, vec![gap("0000000100000002000000C9", 1, 2)]);
    assert_eq!(judged(&obs).status, Status::Critical);
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn last_archived_history_file_keeps_the_in_flight_tolerance() {
    let mut obs = healthy();
    last_archived(&mut obs, "00000002.history");
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn asynchronous_archive_keeps_the_in_flight_tolerance_before_the_last_archived_segment() {
    let mut obs = healthy();
    obs.asynchronous = true;
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert!(v.summary.ends_with("probably in flight"), "{}", v.summary);
}

#[test]
fn standby_that_does_not_archive_keeps_the_in_flight_tolerance() {
    let mut obs = healthy();
    let pg = obs.postgres.as_mut().expect("linked server");
    pg.in_recovery = true;
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn unreachable_server_keeps_the_in_flight_tolerance() {
    let mut obs = healthy();
    obs.postgres.as_mut().expect("linked server").error = Some("cannot connect".into());
    with_gaps(&mut obs, vec![gap("0000000100000002000000CA", 1, 1)]);
    let v = judged(&obs);
    assert!(
        v.summary.contains("probably in flight"),
        "{} {:?}",
        v.summary,
        v.status
    );
}

#[test]
fn in_flight_tolerance_is_a_threshold() {
    let mut obs = healthy();
    obs.postgres = None;
    with_gaps(&mut obs, vec![gap("0000000100000002000000C0", 1, 10)]);
    let strict = ArchiveDirLimits {
        in_flight_segments: 16,
        ..ArchiveDirLimits::default()
    };
    assert_eq!(judge(&obs, &strict).status, Status::Warning);
    assert_eq!(judged(&obs).status, Status::Critical);
}

#[test]
fn short_copy_at_or_before_the_last_archived_segment_is_critical_however_close() {
    let mut obs = healthy();
    let c = obs.continuity.as_mut().expect("continuity");
    c.short_segments = 1;
    c.short = vec![ShortSegment {
        name: "0000000100000002000000CA".into(),
        size_bytes: 4096,
        segments_after: 1,
    }];
    assert_eq!(judged(&obs).status, Status::Critical);
    obs.postgres = None;
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn truncated_segment_inside_the_range_is_critical() {
    let mut obs = healthy();
    let c = obs.continuity.as_mut().expect("continuity");
    c.short_segments = 1;
    c.short = vec![ShortSegment {
        name: "000000010000000200000050".into(),
        size_bytes: 4096,
        segments_after: 123,
    }];
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert_eq!(
        v.summary,
        "segment 000000010000000200000050 is 4096 bytes, not 16777216: a truncated copy"
    );
}

#[test]
fn hole_before_the_newest_backup_is_a_warning() {
    let mut obs = healthy();
    let c = obs.continuity.as_mut().expect("continuity");
    c.missing_before_range = 2;
    c.first_missing_before_range = Some("000000010000000100000003".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert!(
        v.summary
            .starts_with("2 segments missing before the newest base backup"),
        "{}",
        v.summary
    );
}

#[test]
fn retention_below_the_minimum_is_a_warning() {
    let mut obs = healthy();
    obs.oldest_segment = Some(file("000000010000000100000080", 2 * DAY));
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "WAL retention 48 h is below the minimum 7.0 d: the oldest segment kept is \
         000000010000000100000080 from 2023-11-12 22:13:20 UTC"
    );
}

#[test]
fn retention_at_the_minimum_is_ok() {
    let mut obs = healthy();
    obs.oldest_segment = Some(file("000000010000000100000080", 7 * DAY));
    assert_eq!(judged(&obs).status, Status::Ok);
}

#[test]
fn young_cluster_is_not_short_of_retention() {
    let mut obs = healthy();
    obs.oldest_segment = Some(file("000000010000000000000004", 2 * DAY));
    let pg = obs.postgres.as_mut().expect("postgres");
    pg.cluster_age_secs = Some(3 * DAY);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Ok, "{}", v.summary);
    assert!(
        v.summary
            .contains("(the cluster was created 3.0 d ago, less than the 7.0 d minimum)"),
        "{}",
        v.summary
    );
}

#[test]
fn archive_holding_the_first_segment_is_not_short_of_retention() {
    let mut obs = healthy();
    obs.postgres = None;
    obs.oldest_segment = Some(file(FIRST_SEGMENT, 3600));
    let v = judged(&obs);
    assert_eq!(v.status, Status::Ok, "{}", v.summary);
    assert!(
        v.summary
            .contains("(keeps every segment since the cluster's first)"),
        "{}",
        v.summary
    );
}

#[test]
fn old_cluster_with_unknown_age_and_short_archive_is_reported() {
    let mut obs = healthy();
    obs.postgres = None;
    obs.oldest_segment = Some(file("000000010000000000000004", 3600));
    assert_eq!(judged(&obs).status, Status::Warning);
}

#[test]
fn collector_minimum_beats_the_agents() {
    let mut obs = healthy();
    obs.expected_min_retention_secs = Some(14 * DAY as u64);
    assert_eq!(judged(&obs).status, Status::Warning);
    let l = ArchiveDirLimits {
        min_retention: Some(Duration::from_secs(3 * DAY as u64)),
        ..ArchiveDirLimits::default()
    };
    assert_eq!(judge(&obs, &l).status, Status::Ok);
}

#[test]
fn truncated_scan_judges_neither_continuity_nor_retention() {
    let mut obs = healthy();
    obs.truncated = true;
    obs.entries_scanned = 1_000_000;
    obs.oldest_segment = Some(file("000000010000000100000080", 3600));
    with_gaps(&mut obs, vec![gap("000000010000000200000042", 1, 137)]);
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "scan stopped after 1000000 entries: continuity and retention not judged (raise max_entries)"
    );
}

#[test]
fn continuity_that_could_not_be_checked_is_a_warning() {
    let mut obs = healthy();
    obs.continuity = None;
    obs.continuity_note = Some("not checked: segment 000000010000000000000100 does not fit".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.summary,
        "continuity not checked: segment 000000010000000000000100 does not fit"
    );
}

#[test]
fn missing_timeline_history_is_a_warning() {
    let mut obs = healthy();
    obs.timeline = 2;
    obs.missing_history = Some("00000002.history".into());
    let v = judged(&obs);
    assert_eq!(v.status, Status::Warning);
    assert!(
        v.summary
            .starts_with("timeline history file 00000002.history is missing")
    );
}

#[test]
fn empty_archive_without_postgres_is_ok_and_says_so() {
    let obs = ArchiveDirObs {
        path: "/archive_path".into(),
        exists: true,
        ..ArchiveDirObs::default()
    };
    let v = judged(&obs);
    assert_eq!(v.status, Status::Ok);
    assert_eq!(v.summary, "archive ok: no WAL segment in /archive_path yet");
}

#[test]
fn findings_are_listed_worst_first() {
    let mut obs = healthy();
    obs.access.as_mut().expect("access").mode = 0o750;
    obs.postgres.as_mut().expect("postgres").last_archived_file = None;
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical);
    assert!(v.summary.starts_with("0000000100000002000000CB is not in"));
    assert!(v.summary.ends_with("expected 0700: group access differs"));
}

#[test]
fn plain_wal_in_an_archive_declared_encrypted_is_critical_by_name() {
    let mut obs = healthy();
    obs.encryption = Some(backwatch_proto::model::EncryptionAudit {
        sampled: 8,
        readable: 8,
        first_readable: Some("000000010000000000000009".into()),
        first_readable_kind: Some("plain WAL page header".into()),
        ..Default::default()
    });
    let v = judged(&obs);
    assert_eq!(v.status, Status::Critical, "{}", v.summary);
    assert!(
        v.summary.contains(
            "archive declared encrypted, but 8 of the 8 newest segments read without a key: \
             000000010000000000000009 is a plain WAL page header"
        ),
        "{}",
        v.summary
    );
    obs.encryption = Some(backwatch_proto::model::EncryptionAudit {
        sampled: 8,
        ..Default::default()
    });
    assert_eq!(judged(&obs).status, Status::Ok);
}
