//! One pass over the archive directory (reused while the directory is unchanged, see `memo`): `readdir` plus one `fstatat` per entry (which the size
//! and mtime need), never an `open` of a listed file, never a subdirectory.
//!
//! Memory is bounded by `max_entries` (about 20 bytes per segment kept for the continuity
//! check); everything else is counted or kept as the oldest, newest or first few.

use super::names::{self, Compression, SegName, WalFile};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

/// Names of strays kept for the result.
pub const MAX_NAMES: usize = 10;
/// Days of per-day volume reported, ending today: a month and a few days, for the monthly trend.
pub const DAILY_DAYS: i64 = 35;

/// A segment as the continuity check needs it.
#[derive(Debug, Clone, Copy)]
pub struct SegEntry {
    pub name: SegName,
    /// Size on disk, saturated (segments are at most 1 GiB).
    pub size: u32,
    pub compressed: bool,
    /// Modification time, seconds since the epoch: when the segment was complete here (the
    /// end of a recoverable window, R32).
    pub mtime_secs: i64,
}

#[derive(Debug, Clone)]
pub struct FileFacts {
    pub name: String,
    pub mtime: SystemTime,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct BackupEntry {
    pub start: SegName,
    pub offset: u32,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub entries_scanned: u64,
    pub truncated: bool,
    pub newer_than_scan: u64,
    pub segments: Vec<SegEntry>,
    pub segment_bytes: u64,
    pub compressed_segments: u64,
    /// Timeline → (file name, compression).
    pub histories: HashMap<u32, (String, Option<Compression>)>,
    pub history_files: u64,
    pub backups: Vec<BackupEntry>,
    pub partial_files: u64,
    pub other_files: u64,
    pub other_names: Vec<String>,
    pub files_open_to_others: u64,
    pub first_open_to_others: Option<String>,
    pub oldest: Option<(SegName, FileFacts)>,
    pub newest: Option<(SegName, FileFacts)>,
    /// Size of uncompressed segments → how many have it (the segment size, inferred).
    pub plain_sizes: HashMap<u64, u64>,
    /// UTC day number (days since the epoch) → (bytes, segments).
    pub daily: BTreeMap<i64, (u64, u64)>,
}

/// Lists `dir` once. `now` is the scan start: files dated later are still being written and
/// only counted.
pub fn list(dir: &Path, now: SystemTime, max_entries: u64) -> io::Result<Listing> {
    let mut l = Listing::default();
    let today = day_number(now);
    for entry in fs::read_dir(dir)? {
        if l.entries_scanned >= max_entries {
            l.truncated = true;
            break;
        }
        // An entry that fails to read mid-listing ends the listing: the error is about the
        // directory, and the caller reports it.
        let entry = entry?;
        l.entries_scanned += 1;
        let Ok(name) = entry.file_name().into_string() else {
            l.other(format!("{:?}", entry.file_name()));
            continue;
        };
        let meta = match entry.file_type() {
            // Followed: an archive kept as links to elsewhere is still an archive.
            Ok(t) if t.is_symlink() => fs::metadata(entry.path()),
            Ok(_) => entry.metadata(),
            Err(e) => Err(e),
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // cleaned up since listed
            Err(_) => {
                l.other(name);
                continue;
            }
        };
        if !meta.is_file() {
            l.other(format!("{name}/"));
            continue;
        }
        l.file(name, &meta, now, today);
    }
    Ok(l)
}

impl Listing {
    fn other(&mut self, name: String) {
        self.other_files += 1;
        if self.other_names.len() < MAX_NAMES {
            self.other_names.push(name);
        }
    }

    fn file(&mut self, name: String, meta: &Metadata, now: SystemTime, today: i64) {
        let Ok(mtime) = meta.modified() else {
            self.other(name);
            return;
        };
        let (kind, compression) = names::parse(&name);
        let facts = FileFacts {
            name,
            mtime,
            size: meta.len(),
        };
        if meta.permissions().mode() & 0o006 != 0 {
            self.files_open_to_others += 1;
            if self.first_open_to_others.is_none() {
                self.first_open_to_others = Some(facts.name.clone());
            }
        }
        if mtime > now {
            self.newer_than_scan += 1;
            return;
        }
        match kind {
            WalFile::Segment(seg) => self.segment(seg, compression, facts, today),
            WalFile::Partial(_) => self.partial_files += 1,
            WalFile::Backup { start, offset } => self.backups.push(BackupEntry {
                start,
                offset,
                name: facts.name,
            }),
            WalFile::History(tli) => {
                self.history_files += 1;
                self.histories.insert(tli, (facts.name, compression));
            }
            WalFile::Other => self.other(facts.name),
        }
    }

    fn segment(
        &mut self,
        seg: SegName,
        compression: Option<Compression>,
        facts: FileFacts,
        today: i64,
    ) {
        self.segment_bytes = self.segment_bytes.saturating_add(facts.size);
        if compression.is_some() {
            self.compressed_segments += 1;
        } else {
            *self.plain_sizes.entry(facts.size).or_default() += 1;
        }
        // A compressed copy too small to hold anything is a short copy, of its own size.
        let broken = compression.is_some_and(|c| facts.size < c.min_bytes());
        self.segments.push(SegEntry {
            name: seg,
            size: u32::try_from(facts.size).unwrap_or(u32::MAX),
            compressed: compression.is_some() && !broken,
            mtime_secs: epoch_secs(facts.mtime),
        });
        let day = day_number(facts.mtime);
        if (today - DAILY_DAYS + 1..=today).contains(&day) {
            let slot = self.daily.entry(day).or_default();
            slot.0 = slot.0.saturating_add(facts.size);
            slot.1 += 1;
        }
        let key = seg.position_key();
        if self
            .oldest
            .as_ref()
            .is_none_or(|(s, _)| key < s.position_key())
        {
            self.oldest = Some((seg, facts.clone()));
        }
        if self
            .newest
            .as_ref()
            .is_none_or(|(s, _)| key > s.position_key())
        {
            self.newest = Some((seg, facts));
        }
    }
}

/// Days since the epoch (UTC) of a time; negative before 1970.
pub fn day_number(t: SystemTime) -> i64 {
    epoch_secs(t).div_euclid(86_400)
}

/// Seconds since the epoch; negative before 1970.
pub fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
