//! Backup directory probe: the newest qualifying backup file under a directory (check rule A9).
//!
//! Invariants:
//! - Bounded work: never enters more than `max_depth` levels of subdirectories below `path` and
//!   never examines more than `max_entries` directory entries; hitting the entry bound sets
//!   `truncated`. Directories are read breadth first, so a truncated scan has seen the shallow
//!   levels, where backup sets usually keep their newest files.
//! - Never fails on what it finds: a missing directory is `exists = false`, an unreadable one is
//!   `read_error` (the OS error text), and trouble below the top (broken symlinks, unreadable
//!   subdirectories, symlink loops) is counted in `problem_count`, the first [`MAX_PROBLEMS`]
//!   kept as text. Only a panicked scan task becomes an `Err`.
//! - A qualifying file is a regular file (symlinks followed), not empty, whose name does not end
//!   in an ignore suffix or is hidden (a copy being written); empty and in-progress files, and
//!   with `include` set the files it does not match, are counted in `ignored_files` only.
//! - Ages are on the agent's clock: `now` is read once when the scan starts, and
//!   `age = now - mtime` in whole seconds, negative for a file dated in the future.
//! - Each directory is read at most once (identified by device and inode), so symlinked
//!   directories can neither loop nor be counted twice, and a file reached through a symlink is
//!   not counted again when the scan also reaches it directly.
//! - Plain `pg_basebackup` directories met on the way (a `backup_manifest`, else a
//!   `backup_label`) are remembered; the newest one's label and manifest are read once at the
//!   end (see [`super::base_backup`]) for its start, end, duration, WAL range and size.

use super::{Outcome, Probe, base_backup};
use backwatch_proto::model::{
    BackupDirObs, FUTURE_TOLERANCE_SECS, NewestFile, Observation, ProbeKind,
};
use chrono::{DateTime, Utc};
use nix::errno::Errno;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_MAX_DEPTH: u32 = 4;
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Problems beyond this many are counted but not described, to keep a result small.
pub const MAX_PROBLEMS: usize = 10;

/// Names that backup tools use while a file is still being written.
pub fn default_ignore_suffixes() -> Vec<String> {
    [".tmp", ".part", ".partial", ".inprogress"]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupDirProbe {
    pub name: String,
    pub path: PathBuf,
    /// Reported as `expected_max_age_secs`; the collector's thresholds decide.
    pub max_age: Option<Duration>,
    /// Levels of subdirectories below `path` that are entered; 0 = only files directly in `path`.
    pub max_depth: u32,
    /// Directory entries examined (of any type) before the scan stops with `truncated`.
    pub max_entries: u64,
    /// File name endings (case-sensitive) of files still being written.
    pub ignore_suffixes: Vec<String>,
    /// File name patterns (`*` any run) a backup file matches; empty: every file.
    pub include: Vec<String>,
}

#[async_trait::async_trait]
impl Probe for BackupDirProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Backup
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let probe = self.clone();
        // Directory walks block (NFS mounts can take seconds per stat, a dead one forever), so
        // they run on a thread the scheduler can walk away from; `now` is read inside so queueing for a blocking thread does not age.
        let what = format!("scanning {}", self.path.display());
        crate::blocking::run(&what, move || probe.scan(SystemTime::now()))
            .await
            .map(Observation::Backup)
    }
}

impl BackupDirProbe {
    /// Scans `path` with `now` as the agent's clock reading for ages.
    pub fn scan(&self, now: SystemTime) -> BackupDirObs {
        let obs = BackupDirObs {
            path: self.path.display().to_string(),
            expected_max_age_secs: self.max_age.map(|d| d.as_secs()),
            ..BackupDirObs::default()
        };
        let mut scan = Scan {
            probe: self,
            obs,
            future_after: now + Duration::from_secs(FUTURE_TOLERANCE_SECS as u64),
            newest: None,
            newest_future: None,
            base_manifest: None,
            base_label: None,
            visited_dirs: HashSet::new(),
            seen_files: HashSet::new(),
            linked_files: Vec::new(),
            direct: VecDeque::new(),
            linked: VecDeque::new(),
        };
        let root = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => return scan.obs,
            Err(e) => {
                scan.obs.exists = true;
                scan.obs.read_error = Some(os_text(&e));
                return scan.obs;
            }
        };
        scan.obs.exists = true;
        if !root.is_dir() {
            scan.obs.read_error = Some(Errno::ENOTDIR.desc().to_string());
            return scan.obs;
        }
        scan.direct.push_back(Dir {
            path: self.path.clone(),
            depth: 0,
            id: file_id(&root),
            parent: None,
        });
        scan.run();
        scan.finish(now)
    }

    fn is_in_progress(&self, name: &OsStr) -> bool {
        let bytes = name.as_encoded_bytes();
        self.ignore_suffixes
            .iter()
            .any(|s| bytes.ends_with(s.as_bytes()))
            // A hidden name is a copy being written (rsync's `.name.XXXXXX`, tools that
            // rename when done), unless an `include` pattern that is hidden itself asks for
            // it (`*` alone does not).
            || (bytes.starts_with(b".") && !self.include_matches(name, true))
    }

    /// Whether an `include` pattern (only the hidden ones: `hidden`) matches `name`.
    fn include_matches(&self, name: &OsStr, hidden: bool) -> bool {
        let name = name.to_string_lossy();
        self.include
            .iter()
            .filter(|p| !hidden || p.starts_with('.'))
            .any(|p| backwatch_common::config::glob_match(p, &name))
    }

    /// A backup file by its name: any, or one `include` matches (a log or checksum the job
    /// writes beside its backups, even when the backup failed, is not one).
    fn is_included(&self, name: &OsStr) -> bool {
        self.include.is_empty() || self.include_matches(name, false)
    }
}

// === the walk ===

/// (st_dev, st_ino): what identifies a directory or file across different paths to it.
type FileId = (u64, u64);

/// A directory waiting to be read.
struct Dir {
    path: PathBuf,
    depth: u32,
    id: FileId,
    parent: Option<Rc<Ancestor>>,
}

/// The chain of directories from the root down to the one being read. A symlink whose target is
/// on this chain is a loop; a target merely read before (a `latest` link to a sibling) is not.
struct Ancestor {
    id: FileId,
    parent: Option<Rc<Ancestor>>,
}

impl Ancestor {
    fn contains(self: &Rc<Self>, id: FileId) -> bool {
        let mut node = Some(self);
        while let Some(a) = node {
            if a.id == id {
                return true;
            }
            node = a.parent.as_ref();
        }
        false
    }
}

struct Scan<'a> {
    probe: &'a BackupDirProbe,
    obs: BackupDirObs,
    /// Files dated after this are a clock problem, never the newest backup.
    future_after: SystemTime,
    newest: Option<(SystemTime, NewestFile)>,
    newest_future: Option<(SystemTime, NewestFile)>,
    /// Newest `backup_manifest` and `backup_label` met: plain pg_basebackup directories.
    base_manifest: Option<(SystemTime, PathBuf)>,
    base_label: Option<(SystemTime, PathBuf)>,
    visited_dirs: HashSet<FileId>,
    /// Regular files met directly, so a symlink to one of them is not counted twice.
    seen_files: HashSet<FileId>,
    /// Symlinks to files, settled after the walk once every directly reachable file is known.
    linked_files: Vec<(PathBuf, Metadata)>,
    direct: VecDeque<Dir>,
    /// Directories reached through a symlink are read after all others, so that a directory
    /// reachable both ways is reported under its real path.
    linked: VecDeque<Dir>,
}

impl Scan<'_> {
    fn run(&mut self) {
        while let Some(dir) = self.direct.pop_front().or_else(|| self.linked.pop_front()) {
            if !self.visited_dirs.insert(dir.id) {
                continue;
            }
            if !self.read_dir(dir) {
                return;
            }
        }
    }

    /// Reads one directory; false once the entry budget is spent.
    fn read_dir(&mut self, dir: Dir) -> bool {
        let entries = match fs::read_dir(&dir.path) {
            Ok(entries) => entries,
            // The directory the operator configured is unreadable: the whole result is
            // unreliable, which is not the same as one bad subdirectory.
            Err(e) if dir.depth == 0 => {
                self.obs.read_error = Some(os_text(&e));
                return true;
            }
            Err(e) if is_missing(&e) => return true, // removed since listed: rotation
            Err(e) => {
                self.problem(format!("reading {}: {}", dir.path.display(), os_text(&e)));
                return true;
            }
        };
        let this = Rc::new(Ancestor {
            id: dir.id,
            parent: dir.parent,
        });
        let descend = dir.depth < self.probe.max_depth;
        for entry in entries {
            if self.obs.entries_scanned >= self.probe.max_entries {
                self.obs.truncated = true;
                return false;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.problem(format!("reading {}: {}", dir.path.display(), os_text(&e)));
                    break;
                }
            };
            self.obs.entries_scanned += 1;
            let path = entry.path();
            let kind = entry.file_type().and_then(|t| {
                if t.is_symlink() {
                    Ok(None)
                } else {
                    // Not followed: this is the entry itself.
                    entry.metadata().map(Some)
                }
            });
            match kind {
                Ok(None) => self.symlink(path, &this, dir.depth, descend),
                Ok(Some(meta)) if meta.is_dir() && descend => self.direct.push_back(Dir {
                    path,
                    depth: dir.depth + 1,
                    id: file_id(&meta),
                    parent: Some(Rc::clone(&this)),
                }),
                Ok(Some(meta)) if meta.is_file() => {
                    self.seen_files.insert(file_id(&meta));
                    self.file(path, &meta);
                }
                Ok(Some(_)) => {} // deeper than allowed, or a fifo/socket/device: not a backup
                Err(e) if is_missing(&e) => {} // deleted since listed: rotation, not a problem
                Err(e) => self.problem(format!("reading {}: {}", path.display(), os_text(&e))),
            }
        }
        true
    }

    fn symlink(&mut self, path: PathBuf, dir: &Rc<Ancestor>, depth: u32, descend: bool) {
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if !descend {
                    return;
                }
                let id = file_id(&meta);
                if dir.contains(id) {
                    self.problem(format!("symlink loop at {}", path.display()));
                } else {
                    self.linked.push_back(Dir {
                        path,
                        depth: depth + 1,
                        id,
                        parent: Some(Rc::clone(dir)),
                    });
                }
            }
            Ok(meta) if meta.is_file() => self.linked_files.push((path, meta)),
            Ok(_) => {}
            // A chain of links that never resolves (a -> b -> a).
            Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
                self.problem(format!("symlink loop at {}", path.display()));
            }
            // If the link itself is gone since listed (rotation), read_link fails: no problem.
            Err(e) if is_missing(&e) => {
                if let Ok(target) = fs::read_link(&path) {
                    self.problem(format!(
                        "broken symlink at {} (-> {})",
                        path.display(),
                        target.display()
                    ));
                }
            }
            Err(e) => self.problem(format!("reading {}: {}", path.display(), os_text(&e))),
        }
    }

    fn file(&mut self, path: PathBuf, meta: &Metadata) {
        let name = path.file_name().unwrap_or_default();
        if meta.len() == 0 || self.probe.is_in_progress(name) || !self.probe.is_included(name) {
            self.obs.ignored_files += 1;
            return;
        }
        let Some((mtime, mtime_utc)) = meta.modified().ok().and_then(|t| Some((t, to_utc(t)?)))
        else {
            self.problem(format!("unusable mtime at {}", path.display()));
            return;
        };
        self.obs.file_count += 1;
        self.obs.total_bytes = self.obs.total_bytes.saturating_add(meta.len());
        // A file dated in the future (a restored archive, a host with a wrong clock) must not
        // stand in for the newest backup: it would hide that real backups stopped.
        if mtime <= self.future_after {
            let marker = if name == base_backup::MANIFEST {
                Some(&mut self.base_manifest)
            } else if name == base_backup::LABEL {
                Some(&mut self.base_label)
            } else {
                None
            };
            if let Some(slot) = marker
                && slot.as_ref().is_none_or(|(t, _)| mtime > *t)
                && let Some(dir) = path.parent()
            {
                *slot = Some((mtime, dir.to_path_buf()));
            }
        }
        let bucket = if mtime > self.future_after {
            self.obs.future_files += 1;
            &mut self.newest_future
        } else {
            &mut self.newest
        };
        // Strictly newer: on a tie the file met first (shallower, not via a symlink) stays.
        if bucket.as_ref().is_none_or(|(t, _)| mtime > *t) {
            let newest = NewestFile {
                path: path.display().to_string(),
                mtime: mtime_utc,
                size_bytes: meta.len(),
                age_secs: 0, // set in finish(), against the scan's single `now`
            };
            *bucket = Some((mtime, newest));
        }
    }

    fn finish(mut self, now: SystemTime) -> BackupDirObs {
        for (path, meta) in std::mem::take(&mut self.linked_files) {
            // Also dedupes two links to the same file outside the tree.
            if self.seen_files.insert(file_id(&meta)) {
                self.file(path, &meta);
            }
        }
        self.obs.newest = self.newest.map(|(mtime, mut newest)| {
            newest.age_secs = age_secs(now, mtime);
            newest
        });
        self.obs.newest_future = self.newest_future.map(|(mtime, mut newest)| {
            newest.age_secs = age_secs(now, mtime);
            newest
        });
        // The manifest is written last: a directory with one is a finished backup; a label
        // alone (PostgreSQL < 13, --no-manifest) still gives the start and the WAL position.
        if let Some((_, dir)) = self.base_manifest.take().or(self.base_label.take()) {
            self.obs.newest_base_backup = Some(base_backup::read(&dir).backup);
        }
        self.obs
    }

    fn problem(&mut self, text: String) {
        self.obs.problem_count += 1;
        if self.obs.problems.len() < MAX_PROBLEMS {
            self.obs.problems.push(text);
        }
    }
}

// === helpers ===

fn file_id(meta: &Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// A path component that is a file counts as missing too (`/backup` is a file, not a dir).
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The OS's text for an error ("Permission denied"), without Rust's "(os error 13)" suffix.
pub(crate) fn os_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// Whole seconds from `mtime` to `now`, truncated toward zero; negative if `mtime` is later.
pub(crate) fn age_secs(now: SystemTime, mtime: SystemTime) -> i64 {
    match now.duration_since(mtime) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// chrono's `From<SystemTime>` panics outside its range; an mtime is whatever `touch` set.
pub(crate) fn to_utc(t: SystemTime) -> Option<DateTime<Utc>> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            match d.subsec_nanos() {
                0 => DateTime::from_timestamp(-secs, 0),
                n => DateTime::from_timestamp(-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    const HOUR: Duration = Duration::from_secs(3600);

    fn probe(path: &Path) -> BackupDirProbe {
        BackupDirProbe {
            name: "daily".into(),
            path: path.to_path_buf(),
            max_age: Some(Duration::from_secs(86_400)),
            max_depth: DEFAULT_MAX_DEPTH,
            max_entries: DEFAULT_MAX_ENTRIES,
            ignore_suffixes: default_ignore_suffixes(),
            include: Vec::new(),
        }
    }

    /// Writes `size` bytes to `path` (creating parents) and dates it `mtime`.
    fn put(path: &Path, size: usize, mtime: SystemTime) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(path, vec![b'x'; size]).expect("write file");
        File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
    }

    fn newest_path(obs: &BackupDirObs) -> Option<PathBuf> {
        obs.newest.as_ref().map(|n| PathBuf::from(&n.path))
    }

    #[tokio::test]
    async fn missing_directory_is_an_observation_not_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = probe(&tmp.path().join("nope")).observe().await;
        let Ok(Observation::Backup(obs)) = outcome else {
            panic!("expected an observation, got {outcome:?}");
        };
        assert!(!obs.exists);
        assert_eq!(obs.read_error, None);
        assert_eq!(obs.expected_max_age_secs, Some(86_400));
    }

    #[test]
    fn missing_parent_component_that_is_a_file_is_missing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        put(&tmp.path().join("file"), 1, SystemTime::now());
        assert!(
            !probe(&tmp.path().join("file/sub"))
                .scan(SystemTime::now())
                .exists
        );
    }

    #[test]
    fn path_that_is_a_file_is_a_read_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("file");
        put(&file, 1, SystemTime::now());
        let obs = probe(&file).scan(SystemTime::now());
        assert!(obs.exists);
        assert_eq!(obs.read_error.as_deref(), Some("Not a directory"));
    }

    #[test]
    fn empty_directory_has_no_newest_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let obs = probe(tmp.path()).scan(SystemTime::now());
        assert!(obs.exists);
        assert_eq!(obs.read_error, None);
        assert_eq!(obs.file_count, 0);
        assert_eq!(obs.newest, None);
    }

    #[tokio::test]
    async fn newest_file_is_picked_by_mtime_with_its_age() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("a.dump"), 10, now - 3 * HOUR);
        put(&tmp.path().join("sub/b.dump"), 20, now - HOUR);
        put(&tmp.path().join("c.dump"), 30, now - 2 * HOUR);
        let Ok(Observation::Backup(obs)) = probe(tmp.path()).observe().await else {
            panic!("expected an observation");
        };
        assert_eq!(obs.file_count, 3);
        assert_eq!(obs.total_bytes, 60);
        assert_eq!(obs.entries_scanned, 4); // three files and `sub`
        let newest = obs.newest.expect("newest");
        assert_eq!(PathBuf::from(&newest.path), tmp.path().join("sub/b.dump"));
        assert_eq!(newest.size_bytes, 20);
        assert_eq!(Some(newest.mtime), to_utc(now - HOUR));
        assert!(
            (3600..3660).contains(&newest.age_secs),
            "age {}",
            newest.age_secs
        );
    }

    #[test]
    fn age_is_measured_against_the_scan_clock() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mtime = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        put(&tmp.path().join("a.dump"), 1, mtime);
        let obs = probe(tmp.path()).scan(mtime + Duration::from_millis(7_200_900));
        assert_eq!(obs.newest.map(|n| n.age_secs), Some(7200));
    }

    #[test]
    fn future_mtime_is_reported_apart_and_never_newest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("a.dump"), 1, now + HOUR);
        put(&tmp.path().join("b.dump"), 1, now - 2 * HOUR);
        let obs = probe(tmp.path()).scan(now);
        assert_eq!(obs.future_files, 1);
        assert_eq!(obs.newest_future.map(|n| n.age_secs), Some(-3600));
        assert_eq!(obs.newest.map(|n| n.age_secs), Some(7200));
    }

    #[test]
    fn a_minute_in_the_future_is_still_a_backup() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("a.dump"), 1, now + Duration::from_secs(60));
        let obs = probe(tmp.path()).scan(now);
        assert_eq!(obs.newest.map(|n| n.age_secs), Some(-60));
        assert_eq!(obs.future_files, 0);
    }

    #[test]
    fn hidden_copies_and_files_include_does_not_match_are_not_backups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("db-1201.dump"), 5, now - 30 * HOUR);
        // rsync's copy being written, and the job's log written even when pg_dump failed.
        put(&tmp.path().join(".db-1202.dump.Xy12ab"), 5, now);
        put(&tmp.path().join("backup.log"), 5, now - HOUR);
        let mut p = probe(tmp.path());
        let obs = p.scan(now);
        assert_eq!(
            obs.newest.map(|n| n.path.ends_with("backup.log")),
            Some(true)
        );
        assert_eq!(obs.ignored_files, 1, "the hidden copy");
        p.include = vec!["*.dump".into()];
        let obs = p.scan(now);
        assert_eq!(obs.newest.map(|n| n.age_secs), Some(30 * 3600));
        assert_eq!(obs.ignored_files, 2);
        // A hidden name include asks for explicitly is one; `*` alone does not.
        p.include = vec!["*".into()];
        assert_eq!(p.scan(now).newest.map(|n| n.age_secs), Some(3600));
        p.include = vec![".db-*".into()];
        assert_eq!(p.scan(now).newest.map(|n| n.age_secs), Some(0));
    }

    #[test]
    fn empty_and_in_progress_files_are_ignored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("old.dump"), 5, now - 2 * HOUR);
        put(&tmp.path().join("empty.dump"), 0, now);
        put(&tmp.path().join("new.dump.tmp"), 5, now);
        put(&tmp.path().join("base.tar.part"), 5, now);
        put(&tmp.path().join("x.inprogress"), 5, now);
        let obs = probe(tmp.path()).scan(now);
        assert_eq!(obs.file_count, 1);
        assert_eq!(obs.ignored_files, 4);
        assert_eq!(obs.total_bytes, 5);
        assert_eq!(newest_path(&obs), Some(tmp.path().join("old.dump")));
    }

    #[test]
    fn depth_bound_stops_descent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("top.dump"), 1, now - 2 * HOUR);
        put(&tmp.path().join("a/b/deep.dump"), 1, now - HOUR);
        let mut p = probe(tmp.path());
        p.max_depth = 1;
        let obs = p.scan(now);
        assert_eq!(obs.file_count, 1);
        assert_eq!(newest_path(&obs), Some(tmp.path().join("top.dump")));
        assert!(!obs.truncated);
        p.max_depth = 2;
        assert_eq!(
            newest_path(&p.scan(now)),
            Some(tmp.path().join("a/b/deep.dump"))
        );
        p.max_depth = 0;
        assert_eq!(p.scan(now).file_count, 1);
    }

    #[test]
    fn entry_bound_sets_truncated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for i in 0..10 {
            put(&tmp.path().join(format!("{i}.dump")), 1, SystemTime::now());
        }
        let mut p = probe(tmp.path());
        p.max_entries = 4;
        let obs = p.scan(SystemTime::now());
        assert!(obs.truncated);
        assert_eq!(obs.entries_scanned, 4);
        assert_eq!(obs.file_count, 4);
        p.max_entries = 10;
        let obs = p.scan(SystemTime::now());
        assert!(!obs.truncated, "exactly max_entries entries is complete");
        assert_eq!(obs.file_count, 10);
    }

    #[test]
    fn symlink_loop_is_reported_and_not_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        put(&tmp.path().join("sub/a.dump"), 1, SystemTime::now());
        symlink(tmp.path(), tmp.path().join("sub/up")).expect("symlink");
        symlink("self", tmp.path().join("self")).expect("symlink");
        let mut p = probe(tmp.path());
        p.max_depth = 50;
        let obs = p.scan(SystemTime::now());
        assert_eq!(obs.file_count, 1);
        assert_eq!(obs.problem_count, 2);
        let mut problems = obs.problems.clone();
        problems.sort();
        assert_eq!(
            problems,
            [
                format!("symlink loop at {}", tmp.path().join("self").display()),
                format!("symlink loop at {}", tmp.path().join("sub/up").display()),
            ]
        );
    }

    #[test]
    fn symlinks_are_followed_without_double_counting() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        put(&tmp.path().join("2024-06-01/base.tar"), 10, now - 2 * HOUR);
        symlink("2024-06-01", tmp.path().join("latest")).expect("symlink");
        symlink("2024-06-01/base.tar", tmp.path().join("latest.tar")).expect("symlink");
        put(&outside.path().join("offsite.tar"), 100, now - HOUR);
        symlink(outside.path(), tmp.path().join("offsite")).expect("symlink");
        let obs = probe(tmp.path()).scan(now);
        assert_eq!(obs.problem_count, 0, "{:?}", obs.problems);
        assert_eq!(obs.file_count, 2);
        assert_eq!(obs.total_bytes, 110);
        assert_eq!(
            newest_path(&obs),
            Some(tmp.path().join("offsite/offsite.tar"))
        );
    }

    #[test]
    fn broken_symlink_is_a_problem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        put(&tmp.path().join("a.dump"), 1, SystemTime::now());
        symlink("gone.dump", tmp.path().join("b.dump")).expect("symlink");
        let obs = probe(tmp.path()).scan(SystemTime::now());
        assert_eq!(obs.file_count, 1);
        assert_eq!(obs.problem_count, 1);
        let expected = format!(
            "broken symlink at {} (-> gone.dump)",
            tmp.path().join("b.dump").display()
        );
        assert_eq!(obs.problems, [expected]);
    }

    #[test]
    fn only_the_first_problems_are_described() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for i in 0..MAX_PROBLEMS + 3 {
            symlink("gone", tmp.path().join(format!("link{i}"))).expect("symlink");
        }
        let obs = probe(tmp.path()).scan(SystemTime::now());
        assert_eq!(obs.problem_count, MAX_PROBLEMS as u64 + 3);
        assert_eq!(obs.problems.len(), MAX_PROBLEMS);
    }

    #[test]
    fn unreadable_subdirectory_is_a_problem() {
        if nix::unistd::geteuid().is_root() {
            eprintln!("skipped: permissions do not stop root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        put(&tmp.path().join("a.dump"), 1, SystemTime::now());
        let locked = tmp.path().join("locked");
        fs::create_dir(&locked).expect("mkdir");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
        let obs = probe(tmp.path()).scan(SystemTime::now());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).expect("chmod back");
        assert_eq!(obs.file_count, 1);
        assert_eq!(
            obs.problems,
            [format!("reading {}: Permission denied", locked.display())]
        );
    }

    #[test]
    fn unreadable_directory_is_a_read_error() {
        if nix::unistd::geteuid().is_root() {
            eprintln!("skipped: permissions do not stop root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let locked = tmp.path().join("locked");
        fs::create_dir(&locked).expect("mkdir");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
        let obs = probe(&locked).scan(SystemTime::now());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).expect("chmod back");
        assert!(obs.exists);
        assert_eq!(obs.read_error.as_deref(), Some("Permission denied"));
    }

    #[test]
    fn mtime_before_1970_converts() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(to_utc(t).map(|d| d.timestamp_millis()), Some(-1500));
    }
}
