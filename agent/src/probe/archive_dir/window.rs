//! The recoverable window of a plain WAL archive (docs/checks.md R32): from which moment to
//! which moment a restore from the base backups this archive knows could reach.
//!
//! The base backups are those whose history files (`<start segment>.<offset>.backup`, written
//! by every `pg_basebackup` on a primary and archived like a segment) are in the archive. A
//! backup restores once the WAL from its start segment to its stop segment replays (its
//! consistency point, the history file's STOP TIME), and can roll forward as long as the WAL
//! after it is unbroken. So:
//! - the window ends where the newest restorable backup's run of present, complete segments
//!   ends: at the newest segment, or before the first gap or short copy after it (the window
//!   is then cut, and says where);
//! - it starts at the consistency point of the oldest backup inside that same run (an older
//!   backup separated by a gap restores only to before the gap, which is not the window that
//!   reaches now).
//!
//! The end time is the modification time of the run's last segment (agent clock): when that
//! WAL was complete in the archive, at most one segment's worth after its last record. The
//! start time is STOP TIME when written in UTC/GMT, else the history file's modification time
//! (written right after the stop): a zone abbreviation such as "CEST" names no offset.
//!
//! Only history files on the current timeline's path count, as for continuity. History files
//! are read newest first until a restorable backup is found, then oldest first inside its run:
//! a few small reads, however many history files the archive keeps.

use super::continuity::TimelinePath;
use super::names::{SegName, WalFile};
use super::scan::{BackupEntry, SegEntry};
use backwatch_proto::model::RecoveryWindow;
use chrono::{DateTime, NaiveDateTime, Utc};

/// What one backup history file says about its backup's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub segment: SegName,
    pub at: DateTime<Utc>,
    /// `at` is the history file's STOP TIME (UTC), not its modification time.
    pub exact: bool,
}

/// STOP TIME as UTC when written in UTC or GMT.
pub fn utc_stop_time(text: &str) -> Option<DateTime<Utc>> {
    let (at, zone) = (text.get(..19)?, text.get(19..)?.trim());
    matches!(zone, "UTC" | "GMT" | "+00" | "Etc/UTC").then_some(())?;
    Some(
        NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S")
            .ok()?
            .and_utc(),
    )
}

/// The stop segment named in a history file's `STOP WAL LOCATION`, parsed.
pub fn stop_segment(name: &str) -> Option<SegName> {
    match super::names::parse(name) {
        (WalFile::Segment(seg), None) => Some(seg),
        _ => None,
    }
}

pub fn window(
    segments: &[SegEntry],
    backups: &[BackupEntry],
    path: &TimelinePath,
    seg_size: u64,
    mut stop_of: impl FnMut(&BackupEntry) -> Option<Stop>,
) -> Result<RecoveryWindow, String> {
    // (segment number, usable, modification time) on the path, one per number.
    let mut present: Vec<(u64, bool, i64)> = segments
        .iter()
        .filter_map(|s| {
            let segno = s.name.segno(seg_size)?;
            path.accepts(s.name.tli, segno).then_some((
                segno,
                s.compressed || u64::from(s.size) == seg_size,
                s.mtime_secs,
            ))
        })
        .collect();
    present.sort_unstable_by_key(|p| (p.0, !p.1));
    // Two copies of one number: usable if any copy is.
    present.dedup_by_key(|p| p.0);
    let Some(&(newest, _, _)) = present.last() else {
        return Err("no segment of the current timeline's path in the archive".into());
    };
    // Runs of consecutive usable segments: (first, last, mtime of last).
    let mut runs: Vec<(u64, u64, i64)> = Vec::new();
    for &(segno, usable, mtime) in &present {
        if !usable {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.1 + 1 == segno => {
                r.1 = segno;
                r.2 = mtime;
            }
            _ => runs.push((segno, segno, mtime)),
        }
    }
    let run_of = |segno: u64| runs.iter().find(|r| r.0 <= segno && segno <= r.1).copied();
    let name = |segno: u64| SegName::from_segno(path.expected(segno), segno, seg_size).name();

    let mut on_path: Vec<(u64, &BackupEntry)> = backups
        .iter()
        .filter_map(|b| Some((b.start.segno(seg_size)?, b)))
        .filter(|(segno, b)| path.accepts(b.start.tli, *segno))
        .collect();
    on_path.sort_by_key(|(segno, b)| (*segno, b.offset));
    if on_path.is_empty() {
        return Err("no base backup history file on the current timeline's path".into());
    }
    // The newest backup whose WAL, start to stop, is one run.
    let mut first_refusal: Option<String> = None;
    let mut latest = None;
    for &(start, b) in on_path.iter().rev() {
        let Some(stop) = stop_of(b) else {
            first_refusal.get_or_insert_with(|| format!("{}: unreadable", b.name));
            continue;
        };
        let stop_segno = stop.segment.segno(seg_size).unwrap_or(start).max(start);
        // A backup that ended on a branch the current timeline left (taken on the old primary
        // past a failover's fork, when it was fenced late) cannot be recovered along the
        // current timeline: its end lies past the fork.
        if !path.accepts(stop.segment.tli, stop_segno) {
            first_refusal.get_or_insert_with(|| {
                format!(
                    "{} ends on timeline {} at {}, past where the current timeline left it",
                    b.name,
                    stop.segment.tli,
                    stop.segment.name()
                )
            });
            continue;
        }
        match run_of(start) {
            Some(run) if stop_segno <= run.1 => {
                latest = Some((start, b, run));
                break;
            }
            Some(run) => {
                first_refusal.get_or_insert_with(|| {
                    format!("{} needs {}, which is missing", b.name, name(run.1 + 1))
                });
            }
            None => {
                first_refusal.get_or_insert_with(|| {
                    format!("{} needs {}, which is missing", b.name, name(start))
                });
            }
        }
    }
    let Some((latest_start, latest_backup, run)) = latest else {
        return Err(format!(
            "no base backup can be restored from this archive: {}",
            first_refusal.unwrap_or_default()
        ));
    };
    // The oldest backup inside the same run.
    let mut earliest = None;
    for &(start, b) in on_path.iter().filter(|(s, _)| *s >= run.0) {
        if start > latest_start {
            break;
        }
        if let Some(stop) = stop_of(b)
            && stop.segment.segno(seg_size).unwrap_or(start) <= run.1
            && path.accepts(
                stop.segment.tli,
                stop.segment.segno(seg_size).unwrap_or(start),
            )
        {
            earliest = Some((b, stop));
            break;
        }
    }
    let Some((earliest_backup, start_stop)) = earliest else {
        return Err(format!("{}: unreadable", latest_backup.name));
    };
    Ok(RecoveryWindow {
        earliest_backup: earliest_backup.name.clone(),
        start: start_stop.at,
        start_exact: start_stop.exact,
        latest_backup: latest_backup.name.clone(),
        end_segment: name(run.1),
        end: DateTime::from_timestamp(run.2, 0).unwrap_or_default(),
        cut_at: (run.1 < newest).then(|| name(run.1 + 1)),
        segments_after_cut: newest.saturating_sub(run.1),
        backups: on_path.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::continuity::tests::{SEG, tl1};

    fn segs(segnos: &[u64]) -> Vec<SegEntry> {
        super::super::continuity::tests::segs(1, segnos)
    }

    fn backup(segno: u64) -> BackupEntry {
        super::super::continuity::tests::backup(1, segno)
    }

    /// Every backup stops one segment after it starts, at 100 s per segment number.
    fn stops(b: &BackupEntry) -> Option<Stop> {
        let segno = b.start.segno(SEG)? + 1;
        Some(Stop {
            segment: SegName::from_segno(1, segno, SEG),
            at: DateTime::from_timestamp(segno as i64 * 100, 0)?,
            exact: true,
        })
    }

    #[test]
    fn the_window_runs_from_the_oldest_backup_to_the_newest_segment() {
        let w = window(
            &segs(&[1, 2, 3, 4, 5, 6, 7, 8]),
            &[backup(2), backup(5)],
            &tl1(),
            SEG,
            stops,
        )
        .expect("window");
        assert_eq!(w.earliest_backup, backup(2).name);
        assert_eq!(w.start.timestamp(), 300);
        assert_eq!(w.latest_backup, backup(5).name);
        assert_eq!(w.end_segment, "000000010000000000000008");
        assert_eq!(w.end.timestamp(), 1_000_000 + 8 * 60);
        assert_eq!(w.cut_at, None);
        assert_eq!(w.backups, 2);
    }

    #[test]
    fn a_gap_between_backups_moves_the_start_to_the_backup_after_it() {
        let w = window(
            &segs(&[2, 3, 4, 6, 7, 8]),
            &[backup(2), backup(6)],
            &tl1(),
            SEG,
            stops,
        )
        .expect("window");
        assert_eq!(w.earliest_backup, backup(6).name);
        assert_eq!(w.cut_at, None);
    }

    #[test]
    fn a_gap_after_the_newest_backup_cuts_the_window_there() {
        let mut files = segs(&[2, 3, 4, 5, 7, 8]);
        // A short plain copy breaks the run like a missing one.
        files[3].size = 4096;
        let w = window(&files, &[backup(2)], &tl1(), SEG, stops).expect("window");
        assert_eq!(w.end_segment, "000000010000000000000004");
        assert_eq!(w.cut_at.as_deref(), Some("000000010000000000000005"));
        assert_eq!(w.segments_after_cut, 4);
    }

    #[test]
    fn a_backup_whose_wal_is_gone_is_not_restorable_and_an_older_one_is_used() {
        // The newest backup's stop segment (8) is missing.
        let w = window(
            &segs(&[2, 3, 4, 5, 6, 7]),
            &[backup(2), backup(7)],
            &tl1(),
            SEG,
            stops,
        )
        .expect("window");
        assert_eq!(w.latest_backup, backup(2).name);
        assert_eq!(w.end_segment, "000000010000000000000007");
        let none = window(&segs(&[4, 5]), &[backup(2)], &tl1(), SEG, stops).unwrap_err();
        assert!(
            none.contains("needs 000000010000000000000002, which is missing"),
            "{none}"
        );
        let no_history = window(&segs(&[4, 5]), &[], &tl1(), SEG, stops).unwrap_err();
        assert!(
            no_history.contains("no base backup history file"),
            "{no_history}"
        );
    }

    /// A failover forked timeline 2 at segment 5; a backup on the old primary started on
    /// timeline 1 at 3 and stopped at 6, past the fork (fenced late): recovery along
    /// timeline 2 cannot use it. The backup before it, which ended before the fork, can.
    #[test]
    fn a_backup_ending_past_the_fork_on_the_old_timeline_is_not_restorable() {
        let mut files = super::super::continuity::tests::segs(1, &[1, 2, 3, 4, 5, 6]);
        files.extend(super::super::continuity::tests::segs(2, &[5, 6, 7, 8]));
        let path = TimelinePath::Exact(vec![(1, 0), (2, 5)]);
        let stops = |b: &BackupEntry| {
            let segno = b.start.segno(SEG)?;
            let end = if segno == 3 { 6 } else { segno + 1 };
            Some(Stop {
                segment: SegName::from_segno(1, end, SEG),
                at: DateTime::from_timestamp(end as i64 * 100, 0)?,
                exact: true,
            })
        };
        let w = window(&files, &[backup(1), backup(3)], &path, SEG, stops).expect("window");
        assert_eq!(w.latest_backup, backup(1).name);
        assert_eq!(w.earliest_backup, backup(1).name);
        let only = window(&files, &[backup(3)], &path, SEG, stops).unwrap_err();
        assert!(
            only.contains("ends on timeline 1 at 000000010000000000000006, past where the current timeline left it"),
            "{only}"
        );
    }

    #[test]
    fn stop_times_count_only_in_utc() {
        assert_eq!(
            utc_stop_time("2024-06-01 10:12:30 UTC").map(|t| t.timestamp()),
            Some(1_717_236_750)
        );
        assert_eq!(utc_stop_time("2024-06-01 10:12:30 CEST"), None);
        assert_eq!(utc_stop_time("garbage"), None);
    }
}
