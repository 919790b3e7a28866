//! Pending archive work estimated from WAL positions, for servers where the `.ready` listing
//! (`pg_ls_archive_statusdir()`, PostgreSQL 12+, `pg_monitor`) is not available: PostgreSQL 10
//! and 11, or a role without `pg_monitor`. The method is check_pgactivity's: the archiver
//! hands segments over in order, so the segments complete but not archived are those after
//! `last_archived_wal` up to the one before the segment being written now.
//!
//! An estimate, and said to be one (`pending_source = WalPositions`, `pending_note`): a segment
//! archived out of order, or a `.partial` file as the last archived one, can make it off by
//! one. A timeline history file names no position at all, and neither does a backup history
//! file in practice: it is named after the backup's *start* segment but archived after its
//! stop segment (`pg_backup_stop` waits for both), so counting from it would call every
//! segment of the backup waiting, and date the oldest by a file the backup completed long ago.
//!
//! The segment being written is the current WAL position divided by the segment size, not
//! `pg_walfile_name()` of it: at an exact segment boundary (just after a switch, before the
//! next record) that names the segment just completed, which would then not be counted.

use super::archive_dir::names::{self, SegName, WalFile};

/// Segments waiting by the positions, and the oldest of them (on the current timeline).
#[derive(Debug, PartialEq, Eq)]
pub struct Estimate {
    pub segments: i64,
    pub oldest: Option<String>,
}

/// (timeline, segment number) of a segment or `<segment>.partial` name.
fn position(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    let seg = match names::parse(name).0 {
        WalFile::Segment(s) | WalFile::Partial(s) => s,
        WalFile::Backup { .. } | WalFile::History(_) | WalFile::Other => return None,
    };
    Some((seg.tli, seg.segno(seg_size)?))
}

/// The estimate, or why there is none (in words for `pending_note`).
/// `current_lsn` is `pg_current_wal_lsn()`, `current_wal_file` its `pg_walfile_name()`.
pub fn estimate(
    current_wal_file: Option<&str>,
    current_lsn: Option<&str>,
    last_archived_wal: Option<&str>,
    seg_size: u64,
) -> Result<Estimate, String> {
    if seg_size == 0 {
        return Err("the WAL segment size is unknown".into());
    }
    let Some((tli, named)) = current_wal_file.and_then(|c| position(c, seg_size)) else {
        return Err("no current WAL position (a standby)".into());
    };
    let current = current_lsn
        .and_then(names::parse_lsn)
        .map_or(named, |lsn| lsn / seg_size);
    let Some(last) = last_archived_wal else {
        return Err("nothing archived since the statistics were reset".into());
    };
    let Some((_, last)) = position(last, seg_size) else {
        return Err(format!(
            "the last archived file {last} names no WAL position"
        ));
    };
    let first = last + 1;
    let segments = current.saturating_sub(first);
    Ok(Estimate {
        segments: i64::try_from(segments).unwrap_or(i64::MAX),
        oldest: (segments > 0).then(|| SegName::from_segno(tli, first, seg_size).name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    #[test]
    fn segments_between_the_last_archived_and_the_current_one_wait() {
        let e = estimate(
            Some("000000010000000000000007"),
            None,
            Some("000000010000000000000004"),
            MB16,
        );
        assert_eq!(
            e,
            Ok(Estimate {
                segments: 2,
                oldest: Some("000000010000000000000005".into())
            })
        );
        // The segment right before the current one archived: nothing waits.
        let e = estimate(
            Some("000000010000000000000007"),
            None,
            Some("000000010000000000000006"),
            MB16,
        );
        assert_eq!(
            e,
            Ok(Estimate {
                segments: 0,
                oldest: None
            })
        );
    }

    #[test]
    fn positions_cross_log_boundaries_and_timelines() {
        // 1 MiB segments: 4096 per log. The last of log 0, then the first two of log 1.
        let e = estimate(
            Some("000000020000000100000001"),
            None,
            Some("000000010000000000000FFF"),
            1 << 20,
        );
        assert_eq!(
            e,
            Ok(Estimate {
                segments: 1,
                oldest: Some("000000020000000100000000".into())
            })
        );
        let partial = estimate(
            Some("000000020000000000000009"),
            None,
            Some("000000010000000000000008.partial"),
            MB16,
        );
        assert_eq!(partial.map(|e| e.segments), Ok(0));
    }

    #[test]
    fn at_a_segment_boundary_the_segment_just_completed_waits() {
        // Just after a switch to segment 8 (position 0/8000000, no record written yet),
        // pg_walfile_name() names 7, which was completed and waits for the archiver.
        let e = estimate(
            Some("000000010000000000000007"),
            Some("0/8000000"),
            Some("000000010000000000000006"),
            MB16,
        );
        assert_eq!(
            e,
            Ok(Estimate {
                segments: 1,
                oldest: Some("000000010000000000000007".into())
            })
        );
        // Inside segment 7 it is the one being written: nothing waits.
        let e = estimate(
            Some("000000010000000000000007"),
            Some("0/7000100"),
            Some("000000010000000000000006"),
            MB16,
        );
        assert_eq!(e.map(|e| e.segments), Ok(0));
    }

    #[test]
    fn a_backup_history_file_as_the_last_archived_one_gives_no_estimate() {
        // Named after the backup's start (3), archived after its stop segment (say 9):
        // counting from 3 would call 4 to 9 waiting.
        let e = estimate(
            Some("00000001000000000000000A"),
            Some("0/A000100"),
            Some("000000010000000000000003.00000028.backup"),
            MB16,
        );
        assert!(
            e.as_ref()
                .is_err_and(|why| why.contains("names no WAL position")),
            "{e:?}"
        );
    }

    #[test]
    fn without_positions_it_says_why() {
        let why = |c: Option<&str>, l: Option<&str>| estimate(c, None, l, MB16).unwrap_err();
        assert!(why(None, Some("000000010000000000000001")).contains("standby"));
        assert!(why(Some("000000010000000000000002"), None).contains("nothing archived"));
        assert!(
            why(Some("000000020000000000000002"), Some("00000002.history"))
                .contains("names no WAL position")
        );
    }
}
