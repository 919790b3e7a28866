//! Continuity of the archive along the current timeline's path.
//!
//! Which file restores segment number `s`: PostgreSQL's recovery (`XLogFileReadAnyTLI`) tries
//! the timelines of the target timeline's history, newest first, skipping those that begin
//! after `s`. So the segment expected at `s` is the one of the newest timeline on the path
//! whose first segment is at or before `s`; copies from other timelines (an abandoned branch,
//! the old timeline's copy of the switch segment) do not count. Without a readable history the
//! path is unknown and any timeline up to the current one is accepted (said in a note).
//!
//! The range runs from the start segment of the newest base backup on the path (its backup
//! history file) to the newest segment present on the path; without a backup history file, from
//! the oldest segment present. Gaps are found between consecutive present segments, so the work
//! is proportional to the files, never to the span of segment numbers.

use super::names::{SegName, segs_per_log};
use super::scan::{BackupEntry, SegEntry};
use backwatch_proto::model::{ArchiveGap, Continuity, ShortSegment};

/// Gaps and short segments described in the result; the rest are counted.
pub const MAX_LISTED: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum TimelinePath {
    /// (timeline, first segment number on it), oldest first; the last is the current timeline.
    Exact(Vec<(u32, u64)>),
    /// History unknown: any timeline up to this one.
    UpTo(u32),
}

impl TimelinePath {
    /// From the current timeline's history entries (parent, switch location), oldest first.
    pub fn from_history(current: u32, entries: &[(u32, u64)], seg_size: u64) -> TimelinePath {
        let mut path = Vec::with_capacity(entries.len() + 1);
        let mut begin = 0;
        for &(tli, switch) in entries {
            path.push((tli, begin));
            // The segment holding the switch location belongs to the new timeline.
            begin = switch / seg_size.max(1);
        }
        path.push((current, begin));
        TimelinePath::Exact(path)
    }

    /// The timeline whose copy of segment `segno` recovery uses.
    pub fn expected(&self, segno: u64) -> u32 {
        match self {
            TimelinePath::Exact(path) => path
                .iter()
                .rev()
                .find(|(_, begin)| *begin <= segno)
                .or(path.first())
                .map_or(1, |(tli, _)| *tli),
            TimelinePath::UpTo(tli) => *tli,
        }
    }

    pub fn accepts(&self, tli: u32, segno: u64) -> bool {
        match self {
            TimelinePath::Exact(_) => tli == self.expected(segno),
            TimelinePath::UpTo(current) => tli <= *current,
        }
    }
}

/// The newest base backup on the timeline path, by start location.
pub fn newest_backup<'a>(
    backups: &'a [BackupEntry],
    path: &TimelinePath,
    seg_size: u64,
) -> Option<&'a BackupEntry> {
    backups
        .iter()
        .filter_map(|b| Some((b.start.segno(seg_size)?, b)))
        .filter(|(segno, b)| path.accepts(b.start.tli, *segno))
        .max_by_key(|(segno, b)| (*segno, b.offset))
        .map(|(_, b)| b)
}

/// Checks the range from `backup`'s start (else the oldest segment) to the newest segment, or
/// to the backup's stop segment when that is newer (`stop`: the segment holding its stop
/// location, from its history file). `Err` says why it could not be checked.
pub fn check(
    segments: &[SegEntry],
    backup: Option<(&BackupEntry, Option<SegName>)>,
    path: &TimelinePath,
    seg_size: u64,
) -> Result<Continuity, String> {
    let per_log = segs_per_log(seg_size);
    // (segment number, plain size when every copy is uncompressed)
    let mut present: Vec<(u64, Option<u32>)> = Vec::with_capacity(segments.len());
    for s in segments {
        let Some(segno) = s.name.segno(seg_size) else {
            return Err(format!(
                "segment {} does not fit a segment size of {} bytes ({per_log} per log file)",
                s.name.name(),
                seg_size
            ));
        };
        if path.accepts(s.name.tli, segno) {
            present.push((segno, (!s.compressed).then_some(s.size)));
        }
    }
    present.sort_unstable_by_key(|(segno, _)| *segno);
    // Two copies of one segment (plain and compressed, or two accepted timelines): keep one,
    // and call it short only if every copy is a short plain file.
    present.dedup_by(|later, kept| {
        if later.0 != kept.0 {
            return false;
        }
        kept.1 = match (kept.1, later.1) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        true
    });
    let (Some(&(oldest, _)), Some(&(newest, _))) = (present.first(), present.last()) else {
        return Err("no segment of the current timeline's path in the archive".into());
    };
    let start_segno = backup.and_then(|(b, _)| b.start.segno(seg_size));
    let stop_segno = backup.and_then(|(_, stop)| stop?.segno(seg_size));
    let start = start_segno.unwrap_or(oldest);
    // The backup cannot be restored without every segment up to its stop location, archived
    // or not yet: the range reaches at least that far.
    let end = newest.max(start).max(stop_segno.unwrap_or(0));
    let name = |segno: u64| SegName::from_segno(path.expected(segno), segno, seg_size).name();

    let mut c = Continuity {
        newest_backup: backup.map(|(b, _)| b.name.clone()),
        range_start: name(start),
        range_end: name(end),
        range_segments: end - start + 1,
        ..Continuity::default()
    };
    let mut gap = |first: u64, last: u64| {
        if first < start {
            let before_last = last.min(start - 1);
            c.missing_before_range += before_last - first + 1;
            if c.first_missing_before_range.is_none() {
                c.first_missing_before_range = Some(name(first));
            }
        }
        if last >= start {
            let first = first.max(start);
            c.gap_count += 1;
            c.missing_segments += last - first + 1;
            if c.gaps.len() < MAX_LISTED {
                c.gaps.push(ArchiveGap {
                    first_missing: name(first),
                    missing: last - first + 1,
                    segments_after: end - last,
                });
            }
        }
    };
    let mut next = oldest.min(start);
    for &(segno, _) in &present {
        if segno > next {
            gap(next, segno - 1);
        }
        next = segno + 1;
    }
    if end >= next {
        gap(next, end);
    }
    for &(segno, plain) in &present {
        if segno < start {
            continue;
        }
        if let Some(size) = plain
            && u64::from(size) != seg_size
        {
            c.short_segments += 1;
            if c.short.len() < MAX_LISTED {
                c.short.push(ShortSegment {
                    name: name(segno),
                    size_bytes: u64::from(size),
                    segments_after: end - segno,
                });
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) const SEG: u64 = 16 << 20;

    /// Full-size plain segments `segnos` of `tli`, archived a minute apart.
    pub(in super::super) fn segs(tli: u32, segnos: &[u64]) -> Vec<SegEntry> {
        segnos
            .iter()
            .map(|&n| SegEntry {
                name: SegName::from_segno(tli, n, SEG),
                size: SEG as u32,
                compressed: false,
                mtime_secs: 1_000_000 + n as i64 * 60,
            })
            .collect()
    }

    /// The history file of a backup starting in segment `segno` of `tli`.
    pub(in super::super) fn backup(tli: u32, segno: u64) -> BackupEntry {
        let start = SegName::from_segno(tli, segno, SEG);
        BackupEntry {
            start,
            offset: 0x28,
            name: format!("{}.00000028.backup", start.name()),
        }
    }

    pub(in super::super) fn tl1() -> TimelinePath {
        TimelinePath::Exact(vec![(1, 0)])
    }

    /// `check` with the newest of `backups` and no stop segment known.
    fn run(
        files: &[SegEntry],
        backups: &[BackupEntry],
        path: &TimelinePath,
    ) -> Result<Continuity, String> {
        let b = newest_backup(backups, path, SEG);
        check(files, b.map(|b| (b, None)), path, SEG)
    }

    #[test]
    fn continuous_archive_has_no_gap() {
        let c = run(&segs(1, &[1, 2, 3, 4]), &[backup(1, 2)], &tl1()).expect("checked");
        assert_eq!(c.range_start, "000000010000000000000002");
        assert_eq!(c.range_end, "000000010000000000000004");
        assert_eq!(c.range_segments, 3);
        assert_eq!((c.gap_count, c.missing_before_range), (0, 0));
    }

    #[test]
    fn gap_after_the_backup_is_named_with_its_distance_from_the_newest() {
        let c = run(&segs(1, &[3, 4, 6, 7, 8, 9]), &[backup(1, 3)], &tl1()).expect("checked");
        assert_eq!(
            c.gaps,
            [ArchiveGap {
                first_missing: "000000010000000000000005".into(),
                missing: 1,
                segments_after: 4,
            }]
        );
    }

    #[test]
    fn gaps_before_the_newest_backup_are_counted_apart() {
        let c = run(&segs(1, &[1, 4, 5, 6]), &[backup(1, 5)], &tl1()).expect("checked");
        assert_eq!(c.gap_count, 0);
        assert_eq!(c.missing_before_range, 2);
        assert_eq!(
            c.first_missing_before_range.as_deref(),
            Some("000000010000000000000002")
        );
    }

    #[test]
    fn backup_start_already_cleaned_up_is_a_gap_at_the_start() {
        let c = run(&segs(1, &[7, 8]), &[backup(1, 5)], &tl1()).expect("checked");
        assert_eq!(c.gaps[0].first_missing, "000000010000000000000005");
        assert_eq!(c.gaps[0].missing, 2);
    }

    #[test]
    fn log_file_boundary_is_not_a_gap() {
        let c = run(&segs(1, &[0xFE, 0xFF, 0x100, 0x101]), &[], &tl1()).expect("checked");
        assert_eq!(c.gap_count, 0);
        assert_eq!(c.range_end, "000000010000000100000001");
    }

    #[test]
    fn timeline_switch_follows_the_history() {
        // Timeline 2 began at 0/5000028: segment 5 and later come from timeline 2.
        let path = TimelinePath::from_history(2, &[(1, 0x500_0028)], SEG);
        let mut files = segs(1, &[3, 4, 5, 6]); // timeline 1 went on to 6: an abandoned branch
        files.extend(segs(2, &[5, 7]));
        let c = run(&files, &[backup(1, 3)], &path).expect("checked");
        assert_eq!(c.range_end, "000000020000000000000007");
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(c.gaps[0].first_missing, "000000020000000000000006");
    }

    #[test]
    fn unknown_history_accepts_any_earlier_timeline() {
        let mut files = segs(1, &[3, 4]);
        files.extend(segs(2, &[5, 6]));
        let c = run(&files, &[], &TimelinePath::UpTo(2)).expect("checked");
        assert_eq!(c.gap_count, 0);
    }

    #[test]
    fn short_plain_copies_are_reported_and_compressed_ones_are_not() {
        let mut files = segs(1, &[1, 2, 3]);
        files[1].size = 8192;
        files.push(SegEntry {
            name: SegName::from_segno(1, 4, SEG),
            size: 100,
            compressed: true,
            mtime_secs: 0,
        });
        let c = run(&files, &[], &tl1()).expect("checked");
        assert_eq!(c.short_segments, 1);
        assert_eq!(c.short[0].name, "000000010000000000000002");
        assert_eq!(c.short[0].segments_after, 2);
    }

    #[test]
    fn names_that_do_not_fit_the_segment_size_stop_the_check() {
        let files = vec![SegEntry {
            name: SegName {
                tli: 1,
                log: 0,
                seg: 0x100,
            },
            size: 1 << 20,
            compressed: false,
            mtime_secs: 0,
        }];
        assert!(run(&files, &[], &tl1()).is_err());
        assert!(check(&files, None, &tl1(), 1 << 20).is_ok());
    }

    #[test]
    fn range_reaches_the_newest_backups_stop_segment() {
        let b = backup(1, 3);
        let stop = SegName::from_segno(1, 6, SEG);
        let c = check(&segs(1, &[3, 4]), Some((&b, Some(stop))), &tl1(), SEG).expect("checked");
        assert_eq!(c.range_end, "000000010000000000000006");
        assert_eq!(c.gaps[0].first_missing, "000000010000000000000005");
        assert_eq!((c.gaps[0].missing, c.gaps[0].segments_after), (2, 0));
    }

    #[test]
    fn only_listed_gaps_are_capped() {
        let even: Vec<u64> = (0..100).map(|i| i * 2 + 1).collect();
        let c = run(&segs(1, &even), &[], &tl1()).expect("checked");
        assert_eq!(c.gap_count, 99);
        assert_eq!(c.gaps.len(), MAX_LISTED);
        assert_eq!(c.gaps[0].first_missing, "000000010000000000000002");
    }
}
