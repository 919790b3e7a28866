//! WAL archive directory probe (`archive.<name>`): who may read the directory, what it holds,
//! how far back it reaches, whether it is continuous from the newest base backup, and whether
//! the segment PostgreSQL last reported as archived is really there.
//!
//! Invariants:
//! - **PostgreSQL first, then the directory.** With a linked `[[wal]]` probe, the server's
//!   `last_archived_wal` is read before the listing starts. A segment reported archived was
//!   archived before the listing began, so its absence is a fact, never a race with the
//!   archiver. (The alternative, cross-checking in the collector with the latest `wal.<name>`
//!   result, would compare two measurements taken minutes apart on different schedules.)
//! - **Bounded work**: one `readdir` pass with one `fstatat` per entry, no subdirectories, at
//!   most `max_entries` entries (then `truncated`); none while the directory is unchanged,
//!   for up to six hours ([`memo`]). The only files opened are the current
//!   timeline's history file and the newest backup history file (a few lines each) and, when
//!   compressed, the last archived file and, without a server to ask, the oldest and newest
//!   segment (a few header bytes each for the uncompressed size).
//! - **Never fails on what it finds**: a missing directory is `exists = false`; one the agent
//!   may not list is `read_error` saying what to grant (the agent runs unprivileged, and the
//!   procedure wants the archive owned by `postgres` with mode 0700); an unreachable server is
//!   `postgres.error`. Only a panicked scan becomes an `Err`.
//! - **Ages on the agent's clock**, from the scan start; files dated after it are still being
//!   written and are only counted (`newer_than_scan`, docs/checks.md R22).
//! - **Encryption policy** (`encrypted = true` only): the newest 8 segments' first 40 bytes
//!   are read; plain WAL or a plain compression container there is reported
//!   ([`encryption`]).
//! - Segment size: the server's, else the most common size of the uncompressed segments when
//!   it is one `initdb` allows, else the size a compressed segment's container records, else
//!   the size the names imply once they cross a 4 GiB log, else 16 MiB (see `segment_size`).
//!   Timeline: the server's, else the highest found.

mod backup_history;
pub(crate) mod compressed;
mod continuity;
mod encryption;
mod memo;
pub mod names;
mod postgres;
mod scan;
#[cfg(test)]
mod tests;
mod window;

use super::backup_dir::{age_secs, os_text, to_utc};
use super::wal_archive::WalProbe;
use super::{Outcome, Probe};
use backwatch_proto::model::{
    ArchiveDirObs, ArchivedFile, ArchiverView, DayVolume, DirAccess, Observation, ProbeKind,
    SizeSource,
};
use chrono::{DateTime, Utc};
use continuity::TimelinePath;
use names::{DEFAULT_SEGMENT_SIZE, history_name, valid_segment_size};
use nix::unistd::{Gid, Group, Uid, User};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Enough for an archive of years of WAL at a segment every few minutes; about 20 MB of memory.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// A timeline history file has one short line per timeline; anything larger is not one.
const MAX_HISTORY_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct ArchiveDirProbe {
    pub name: String,
    pub path: PathBuf,
    /// Owner and group as names or numeric ids; `None` = not checked.
    pub expected_owner: Option<String>,
    pub expected_group: Option<String>,
    pub expected_mode: Option<u32>,
    /// Reported as `expected_min_retention_secs`; the collector's thresholds decide.
    pub min_retention: Option<Duration>,
    pub max_entries: u64,
    /// The `[[wal]]` probe whose server fills this archive, asked what it archived.
    pub wal: Option<Box<WalProbe>>,
    /// Declared encrypted: the newest segments are checked for readable content.
    pub encrypted: bool,
    /// Declared asynchronous: reported, the collector's rule widens its in-flight tolerance.
    pub asynchronous: bool,
    /// The previous listing, reused while the directory is unchanged.
    pub memo: memo::Memo,
}

#[async_trait::async_trait]
impl Probe for ArchiveDirProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Archive
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let answer = match &self.wal {
            Some(w) => Some((w.name.clone(), postgres::ask(w).await)),
            None => None,
        };
        let probe = self.clone();
        // Listing blocks (an NFS archive can take seconds); `now` is read inside, after the
        // server was asked.
        let what = format!("scanning {}", self.path.display());
        crate::blocking::run(&what, move || probe.scan(SystemTime::now(), answer))
            .await
            .map(|obs| Observation::Archive(Box::new(obs)))
    }
}

impl ArchiveDirProbe {
    /// Looks at the directory with `now` as the scan start; `pg` is the linked server's answer,
    /// obtained before.
    pub fn scan(&self, now: SystemTime, pg: Option<(String, postgres::Answer)>) -> ArchiveDirObs {
        let mut obs = ArchiveDirObs {
            path: self.path.display().to_string(),
            expected_owner: self.expected_owner.clone(),
            expected_group: self.expected_group.clone(),
            expected_mode: self.expected_mode,
            expected_min_retention_secs: self.min_retention.map(|d| d.as_secs()),
            asynchronous: self.asynchronous,
            ..ArchiveDirObs::default()
        };
        let facts = pg.as_ref().and_then(|(_, a)| a.as_ref().ok());
        match std::fs::metadata(&self.path) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => {
                obs.exists = true;
                obs.read_error = Some(self.unreadable(&e));
            }
            Ok(meta) => {
                obs.exists = true;
                obs.access = Some(access(&meta));
                if !meta.is_dir() {
                    obs.read_error = Some("not a directory".into());
                } else {
                    match self.memo.list(&self.path, &meta, now, self.max_entries) {
                        Ok((listing, reused)) => {
                            if reused {
                                tracing::debug!(archive = %self.name, "archive directory unchanged; previous listing reused");
                            }
                            self.describe(&mut obs, &listing, facts, now)
                        }
                        Err(e) => obs.read_error = Some(self.unreadable(&e)),
                    }
                }
            }
        }
        obs.postgres = pg.map(|(wal_probe, answer)| match answer {
            Ok(f) => self.view(wal_probe, f, &obs, now),
            Err(error) => ArchiverView {
                wal_probe,
                error: Some(error),
                ..ArchiverView::default()
            },
        });
        obs
    }

    /// Permission problems say what to grant; anything else is the OS's text.
    fn unreadable(&self, e: &io::Error) -> String {
        if e.kind() != io::ErrorKind::PermissionDenied {
            return os_text(e);
        }
        let uid = Uid::effective();
        let user = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        format!(
            "permission denied for the agent's user {user}: grant it read access to the \
             directory, e.g. `setfacl -m u:{user}:rx {}` (its group bits then show the ACL \
             mask: set expected_mode = \"0750\")",
            self.path.display()
        )
    }

    fn describe(
        &self,
        obs: &mut ArchiveDirObs,
        l: &scan::Listing,
        facts: Option<&postgres::Facts>,
        now: SystemTime,
    ) {
        obs.entries_scanned = l.entries_scanned;
        obs.truncated = l.truncated;
        obs.newer_than_scan = l.newer_than_scan;
        obs.segments = l.segments.len() as u64;
        obs.segment_bytes = l.segment_bytes;
        obs.compressed_segments = l.compressed_segments;
        obs.history_files = l.history_files;
        obs.backup_files = l.backups.len() as u64;
        obs.partial_files = l.partial_files;
        obs.other_files = l.other_files;
        obs.other_names = l.other_names.clone();
        obs.files_open_to_others = l.files_open_to_others;
        obs.first_open_to_others = l.first_open_to_others.clone();
        obs.oldest_segment = l.oldest.as_ref().and_then(|(_, f)| archived(f, now));
        obs.newest_segment = l.newest.as_ref().and_then(|(_, f)| archived(f, now));
        obs.daily = l
            .daily
            .iter()
            .filter_map(|(day, (bytes, segments))| {
                let date = chrono::DateTime::from_timestamp(day.checked_mul(86_400)?, 0)?;
                Some(DayVolume {
                    day: date.format("%Y-%m-%d").to_string(),
                    bytes: *bytes,
                    segments: *segments,
                })
            })
            .collect();

        let (seg_size, source) = segment_size(facts, l, &self.path);
        obs.wal_segment_size_bytes = seg_size;
        obs.segment_size_source = source;
        if self.encrypted {
            // A guessed default size must not make a 1 MiB plain segment look encrypted.
            let known = if source == SizeSource::Default {
                0
            } else {
                seg_size
            };
            obs.encryption = Some(encryption::audit(&self.path, &l.segments, known));
        }
        // Without a server to ask, the newest timeline that has segments: a history file alone
        // is also what a test point-in-time restore pointed at this archive leaves behind, and
        // taking its timeline would put every later segment of the real one off the path
        // (gaps never reported, the window stopped at the switch). A new timeline's history
        // is archived before its first segment, which follows within one segment's time.
        let archive_tli = l
            .segments
            .iter()
            .map(|s| s.name.tli)
            .max()
            .or_else(|| l.histories.keys().copied().max());
        let (tli, tli_source) = match (facts.and_then(|f| f.timeline), archive_tli) {
            (Some(t), _) => (t, "postgresql"),
            (None, Some(t)) => (t, "archive"),
            (None, None) => (0, ""),
        };
        obs.timeline = tli;
        obs.timeline_source = (tli > 0).then(|| tli_source.to_string());
        let path = self.timeline_path(obs, l, tli, seg_size);

        let newest_backup = continuity::newest_backup(&l.backups, &path, seg_size);
        obs.newest_backup = newest_backup.map(|b| backup_history::read(&self.path, &b.name));
        let stop = obs
            .newest_backup
            .as_ref()
            .and_then(|h| h.stop_segment.as_deref())
            .and_then(|s| match names::parse(s) {
                (names::WalFile::Segment(seg), None) => Some(seg),
                _ => None,
            });
        self.window(obs, l, &path, seg_size);
        obs.continuity_note = if l.truncated {
            Some(format!(
                "not checked: the scan stopped after {} entries",
                l.entries_scanned
            ))
        } else if l.segments.is_empty() {
            Some("not checked: no segment in the archive".into())
        } else {
            let backup = newest_backup.map(|b| (b, stop));
            match continuity::check(&l.segments, backup, &path, seg_size) {
                Ok(c) => {
                    obs.continuity = Some(c);
                    None
                }
                Err(why) => Some(format!("not checked: {why}")),
            }
        };
    }

    /// The recoverable window (R32), reading the backup history files it needs.
    fn window(
        &self,
        obs: &mut ArchiveDirObs,
        l: &scan::Listing,
        path: &TimelinePath,
        seg_size: u64,
    ) {
        if l.truncated {
            obs.window_note = Some("not computed: the scan stopped early".into());
            return;
        }
        let stop_of = |b: &scan::BackupEntry| {
            let h = backup_history::read(&self.path, &b.name);
            let segment = window::stop_segment(h.stop_segment.as_deref()?)?;
            let (at, exact) = match h.stop_time.as_deref().and_then(window::utc_stop_time) {
                Some(t) => (t, true),
                None => {
                    let mtime = std::fs::metadata(self.path.join(&b.name))
                        .and_then(|m| m.modified())
                        .ok()?;
                    (DateTime::<Utc>::from(mtime), false)
                }
            };
            Some(window::Stop { segment, at, exact })
        };
        match window::window(&l.segments, &l.backups, path, seg_size, stop_of) {
            Ok(w) => obs.window = Some(w),
            Err(why) => obs.window_note = Some(why),
        }
    }

    /// The current timeline's ancestry from its history file in the archive (plain or
    /// compressed); any timeline up to the current one when the file is missing or unreadable
    /// (said in a note).
    fn timeline_path(
        &self,
        obs: &mut ArchiveDirObs,
        l: &scan::Listing,
        tli: u32,
        seg_size: u64,
    ) -> TimelinePath {
        if tli <= 1 {
            return TimelinePath::Exact(vec![(1, 0)]);
        }
        let fallback = format!("any timeline up to {tli} accepted at each position");
        let why = match l.histories.get(&tli) {
            None => {
                obs.missing_history = Some(history_name(tli));
                format!("{} is not in the archive", history_name(tli))
            }
            Some((name, compression)) => match read_history(&self.path.join(name), *compression) {
                Ok(entries) => return TimelinePath::from_history(tli, &entries, seg_size),
                Err(e) => format!("reading {name}: {e}"),
            },
        };
        obs.timeline_note = Some(format!("{why}: {fallback}"));
        TimelinePath::UpTo(tli)
    }

    fn view(
        &self,
        wal_probe: String,
        f: postgres::Facts,
        obs: &ArchiveDirObs,
        now: SystemTime,
    ) -> ArchiverView {
        let found = f
            .last_archived_wal
            .as_deref()
            .filter(|_| obs.read_error.is_none() && obs.exists)
            .and_then(|t| self.find(t, now));
        let (last_archived_file, last_archived_uncompressed_bytes) = match found {
            Some((file, size)) => (Some(file), size),
            None => (None, None),
        };
        let now_utc = to_utc(now);
        ArchiverView {
            wal_probe,
            error: None,
            in_recovery: f.in_recovery,
            archive_mode: f.archive_mode,
            archive_command: f.archive_command,
            archive_library: f.archive_library,
            archived_count: f.archived_count,
            last_archived_wal: f.last_archived_wal,
            last_archived_time: f.last_archived_time,
            last_archived_file,
            last_archived_uncompressed_bytes,
            cluster_age_secs: f
                .cluster_created_at
                .zip(now_utc)
                .map(|(created, now)| (now - created).num_seconds()),
            cluster_created_at: f.cluster_created_at,
        }
    }

    /// The archive's file for `target` (plain first, then compressed or encrypted) and its
    /// uncompressed size when known: a few dozen `stat`s at most, by exact name
    /// ([`names::stored_names`]), so the answer does not depend on where a truncated listing
    /// stopped.
    fn find(&self, target: &str, now: SystemTime) -> Option<(ArchivedFile, Option<u64>)> {
        names::stored_names(target)
            .into_iter()
            .find_map(|(name, compression)| {
                let path = self.path.join(&name);
                let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
                let facts = scan::FileFacts {
                    name,
                    mtime: meta.modified().ok()?,
                    size: meta.len(),
                };
                let size = match compression {
                    None => Some(meta.len()),
                    // Too small to hold anything: as truncated as a short plain copy.
                    Some(c) if meta.len() < c.min_bytes() => Some(meta.len()),
                    Some(c) => compressed::uncompressed_size(&path, c),
                };
                Some((archived(&facts, now)?, size))
            })
    }
}

fn access(meta: &std::fs::Metadata) -> DirAccess {
    DirAccess {
        uid: meta.uid(),
        owner: User::from_uid(Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map(|u| u.name),
        gid: meta.gid(),
        group: Group::from_gid(Gid::from_raw(meta.gid()))
            .ok()
            .flatten()
            .map(|g| g.name),
        mode: meta.mode() & 0o7777,
    }
}

fn archived(f: &scan::FileFacts, now: SystemTime) -> Option<ArchivedFile> {
    Some(ArchivedFile {
        name: f.name.clone(),
        mtime: to_utc(f.mtime)?,
        size_bytes: f.size,
        age_secs: age_secs(now, f.mtime),
    })
}

/// The server's segment size, else what the archive itself shows, else PostgreSQL's default.
/// From the archive, in order: the most common size of plain segments (when `initdb` could
/// have made it); the size the container of the oldest or newest compressed segment records
/// (gzip, zstd, lz4); the size the names imply. Guessing 16 MiB for an archive of larger
/// segments is not harmless: every 4 GiB of WAL would then show a gap of the segment numbers
/// that size does not have, a critical "lost WAL" that is not there.
fn segment_size(
    facts: Option<&postgres::Facts>,
    l: &scan::Listing,
    dir: &Path,
) -> (u64, SizeSource) {
    if let Some(size) = facts
        .map(|f| f.wal_segment_size)
        .filter(|s| valid_segment_size(*s))
    {
        return (size, SizeSource::Postgresql);
    }
    let common = l
        .plain_sizes
        .iter()
        .max_by_key(|(size, count)| (**count, **size))
        .map(|(size, _)| *size)
        .filter(|s| valid_segment_size(*s));
    let recorded = || {
        [l.oldest.as_ref(), l.newest.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|(_, f)| match names::parse(&f.name) {
                (_, Some(c)) => compressed::uncompressed_size(&dir.join(&f.name), c)
                    .filter(|s| valid_segment_size(*s)),
                _ => None,
            })
    };
    match common
        .or_else(recorded)
        .or_else(|| size_from_names(&l.segments))
    {
        Some(size) => (size, SizeSource::Archive),
        None => (DEFAULT_SEGMENT_SIZE, SizeSource::Default),
    }
}

/// The segment size the names imply, once they cross from one 4 GiB log to the next: a log
/// holds `2³² / size` segments, so the highest segment part seen is that count less one (16
/// MiB: `…FF`; 64 MiB: `…3F`). `None` within one log, where any size up to the highest part
/// seen would fit. A gap at the end of every log crossed would make the size look larger.
fn size_from_names(segments: &[scan::SegEntry]) -> Option<u64> {
    let mut logs = segments.iter().map(|s| s.name.log);
    let first = logs.next()?;
    if logs.all(|log| log == first) {
        return None;
    }
    let highest = segments.iter().map(|s| u64::from(s.name.seg)).max()?;
    let per_log = (highest + 1).checked_next_power_of_two()?;
    Some((1u64 << 32) / per_log).filter(|s| valid_segment_size(*s))
}

/// A timeline history file, plain or compressed (see [`compressed::read_text`]).
fn read_history(
    path: &Path,
    compression: Option<names::Compression>,
) -> Result<Vec<(u32, u64)>, String> {
    let text = compressed::read_text(path, compression, MAX_HISTORY_BYTES)?;
    names::parse_history(&text)
}
