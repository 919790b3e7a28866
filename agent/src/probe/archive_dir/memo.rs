//! Incremental listing: the previous run's listing is reused while the archive directory is
//! unchanged, so an archive of hundreds of thousands of segments is not `fstat`ed entry by
//! entry every 15 minutes when nothing was added or removed.
//!
//! "Unchanged" is the directory's inode, mtime and ctime (nanoseconds) as they were when the
//! remembered listing started: adding, removing or renaming an entry changes the mtime. The
//! stamp is taken *before* listing, so a change during the listing makes the next run list
//! again. Reuse is refused when the listing was truncated, when it held files dated in the
//! future or its newest segment was written within [`SETTLE`] of it (both may still be
//! growing: they must be judged again), on a new UTC day (the per-day
//! volumes shift), and when the last full listing is older than [`FULL_LIST_EVERY`]: what a
//! directory's times do not show (a file's mode changed, a segment rewritten in place) is
//! then seen within that bound. The segment PostgreSQL reports as archived is always looked
//! up afresh (`ArchiveDirProbe::find`), so a truncated last segment is never hidden.

use super::scan::{self, Listing, day_number};
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Longest reuse of a listing without listing again: a few hourly runs, so a file whose mode
/// was opened up is still reported the same working day (the directory's own mode and owner
/// are read at every run).
pub const FULL_LIST_EVERY: Duration = Duration::from_secs(6 * 3600);

/// What a directory's own metadata says about its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct Remembered {
    stamp: Stamp,
    day: i64,
    listed_at: SystemTime,
    /// Shared with the run that uses it: reuse costs no copy of a listing that may hold a
    /// million segments.
    listing: Arc<Listing>,
}

/// The remembered listing of one probe; clones share it (the probe is cloned into the
/// blocking task that lists).
#[derive(Debug, Clone, Default)]
pub struct Memo(Arc<Mutex<Option<Remembered>>>);

impl Memo {
    /// The listing of `dir` (whose metadata, read just before, is `meta`) and whether it was
    /// reused rather than listed.
    pub fn list(
        &self,
        dir: &Path,
        meta: &Metadata,
        now: SystemTime,
        max_entries: u64,
    ) -> io::Result<(Arc<Listing>, bool)> {
        self.list_within(dir, meta, now, max_entries, FULL_LIST_EVERY)
    }

    fn list_within(
        &self,
        dir: &Path,
        meta: &Metadata,
        now: SystemTime,
        max_entries: u64,
        full_every: Duration,
    ) -> io::Result<(Arc<Listing>, bool)> {
        let stamp = Stamp::of(meta);
        let day = day_number(now);
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref() {
            let fresh = now
                .duration_since(r.listed_at)
                .is_ok_and(|age| age < full_every);
            if r.stamp == stamp
                && r.day == day
                && fresh
                && !r.listing.truncated
                && r.listing.newer_than_scan == 0
                && settled(&r.listing, r.listed_at)
            {
                return Ok((Arc::clone(&r.listing), true));
            }
        }
        *slot = None;
        let listing = Arc::new(scan::list(dir, now, max_entries)?);
        *slot = Some(Remembered {
            stamp,
            day,
            listed_at: now,
            listing: Arc::clone(&listing),
        });
        Ok((listing, false))
    }
}

/// Whether the newest segment was already older than [`SETTLE`] when listed: an
/// `archive_command` that copies straight into the final name grows the file without
/// touching the directory, so a listing taken while it was written is not reused.
fn settled(l: &Listing, listed_at: SystemTime) -> bool {
    l.newest
        .as_ref()
        .is_none_or(|(_, f)| f.mtime + SETTLE <= listed_at)
}

/// How long a segment's mtime must lie before the listing for the listing to be reused.
pub const SETTLE: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SEG: &[u8] = &[0u8; 64];
    /// 2026-01-01 10:00 UTC: files are dated then, scans run later that day.
    const TEN: u64 = 1_767_261_600;

    fn at(secs_after_ten: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(TEN + secs_after_ten)
    }

    fn segment(dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, SEG).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(at(0)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn listed(memo: &Memo, dir: &Path, now: SystemTime, full: Duration) -> (u64, u64, bool) {
        let meta = std::fs::metadata(dir).unwrap();
        let (l, reused) = memo.list_within(dir, &meta, now, 1000, full).unwrap();
        (l.segments.len() as u64, l.files_open_to_others, reused)
    }

    #[test]
    fn an_unchanged_directory_is_not_listed_again_until_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let seg = segment(p, "000000010000000000000001");
        let memo = Memo::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(listed(&memo, p, at(600), hour), (1, 0, false));
        assert_eq!(listed(&memo, p, at(660), hour), (1, 0, true));

        // A new entry changes the directory: listed again, and remembered again.
        segment(p, "000000010000000000000002");
        assert_eq!(listed(&memo, p, at(720), hour), (2, 0, false));
        assert_eq!(listed(&memo, p, at(780), hour), (2, 0, true));

        // A file's mode does not touch the directory: seen at the next full listing.
        std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(listed(&memo, p, at(840), hour), (2, 0, true));
        assert_eq!(listed(&memo, p, at(720 + 3600), hour), (2, 1, false));

        // A removed segment is seen at once.
        std::fs::remove_file(&seg).unwrap();
        assert_eq!(listed(&memo, p, at(720 + 3660), hour), (1, 0, false));

        // So is a new UTC day (the per-day volumes move on).
        assert_eq!(listed(&memo, p, at(14 * 3600), hour), (1, 0, false));
    }

    #[test]
    fn a_listing_taken_while_the_newest_segment_was_written_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        segment(p, "000000010000000000000001");
        let memo = Memo::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(listed(&memo, p, at(10), hour), (1, 0, false));
        assert_eq!(listed(&memo, p, at(20), hour), (1, 0, false));
        assert_eq!(listed(&memo, p, at(400), hour), (1, 0, false));
        assert_eq!(listed(&memo, p, at(460), hour), (1, 0, true));
    }

    #[test]
    fn files_dated_in_the_future_are_judged_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        segment(p, "000000010000000000000001");
        let memo = Memo::default();
        // A scan start before the file's mtime: the file counts as still being written.
        let before = SystemTime::UNIX_EPOCH + Duration::from_secs(TEN - 60);
        let hour = Duration::from_secs(3600);
        assert_eq!(listed(&memo, p, before, hour), (0, 0, false));
        assert_eq!(listed(&memo, p, before, hour), (0, 0, false));
    }
}
