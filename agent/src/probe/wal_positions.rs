//! Pending archive work estimated from WAL positions, for servers where the `.ready` listing
//! (`pg_ls_archive_statusdir()`, PostgreSQL 12+, `pg_monitor`) is not available: PostgreSQL 10
//! and 11, or a role without `pg_monitor`. The method is check_pgactivity's: the archiver
//! hands segments over in order, so the segments complete but not archived are those after
//! `last_archived_wal` up to the one before the segment being written now.
//!
//! An estimate, and said to be one (`pending_source = WalPositions`, `pending_note`): a segment
//! archived out of order, or a `.backup`/`.partial` file as the last archived one, can make it
//! off by one; a timeline history file as the last archived one names no position at all.

use super::archive_dir::names::{self, SegName, WalFile};

/// Segments waiting by the positions, and the oldest of them (on the current timeline).
#[derive(Debug, PartialEq, Eq)]
pub struct Estimate {
    pub segments: i64,
    pub oldest: Option<String>,
}

/// (timeline, segment number) of a segment, `<segment>.partial` or backup history file name.
fn position(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    let seg = match names::parse(name).0 {
        WalFile::Segment(s) | WalFile::Partial(s) => s,
        WalFile::Backup { start, .. } => start,
        WalFile::History(_) | WalFile::Other => return None,
    };
    Some((seg.tli, seg.segno(seg_size)?))
}

/// The estimate, or why there is none (in words for `pending_note`).
pub fn estimate(
    current_wal_file: Option<&str>,
    last_archived_wal: Option<&str>,
    seg_size: u64,
) -> Result<Estimate, String> {
    if seg_size == 0 {
        return Err("the WAL segment size is unknown".into());
    }
    let Some((tli, current)) = current_wal_file.and_then(|c| position(c, seg_size)) else {
        return Err("no current WAL position (a standby)".into());
    };
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
            Some("000000010000000000000008.partial"),
            MB16,
        );
        assert_eq!(partial.map(|e| e.segments), Ok(0));
    }

    #[test]
    fn without_positions_it_says_why() {
        let why = |c: Option<&str>, l: Option<&str>| estimate(c, l, MB16).unwrap_err();
        assert!(why(None, Some("000000010000000000000001")).contains("standby"));
        assert!(why(Some("000000010000000000000002"), None).contains("nothing archived"));
        assert!(
            why(Some("000000020000000000000002"), Some("00000002.history"))
                .contains("names no WAL position")
        );
    }
}
