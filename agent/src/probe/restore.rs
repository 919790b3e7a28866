//! Restore readiness probe (`restore.<name>`): `pg_verifybackup` on the newest plain base
//! backup with a `backup_manifest`, and the WAL that backup needs at hand.
//!
//! Invariants:
//! - **Which backup**: `backup_dir` itself when it holds a `backup_manifest`, else the
//!   subdirectory (one level down) whose `backup_manifest` is newest. Tar-format backups and
//!   backups without a manifest are not candidates (pg_verifybackup cannot verify them).
//! - **WAL, choice made**: the WAL a backup needs runs from its start to its end location
//!   (the manifest's `WAL-Ranges`). When all of it is in the backup's own `pg_wal`
//!   (`pg_basebackup -X stream`, the default, or `-X fetch`), pg_verifybackup parses it there,
//!   which checks record by record. Otherwise it runs with `--no-parse-wal` and the agent looks
//!   for each segment in the archive directory by name (plain copies must have the segment
//!   size, compressed ones `.gz`/`.lz4`/`.zst`/... count when present). Pointing
//!   `--wal-directory` at the archive instead would make pg_waldump read it, and pg_waldump
//!   cannot read compressed segments nor name the first missing segment as such; a presence
//!   check is what recovery's `restore_command` needs and costs one `stat` per segment.
//! - **IO-bounded**: `nice -n 19` and `ionice -c 2 -n 7` (lowest best-effort priority) when
//!   those programs exist. The idle class (`-c 3`) was not chosen: on a database host that is
//!   never idle it can starve the verification for good and the weekly check would only ever
//!   time out. The run is bounded by the probe's timeout; the process group is killed with it,
//!   and its output is bounded (see [`super::tool_command`]).
//! - Runs on its own schedule, weekly by default: it reads the whole backup.

use super::archive_dir::names::COMPRESSION_SUFFIXES;
use super::backup_dir::os_text;
use super::base_backup::{self, MANIFEST};
use super::tool_command;
use super::{Outcome, Probe};
use backwatch_proto::model::{Observation, ProbeKind, RestoreObs, WalSource};
use chrono::Utc;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Message lines kept from pg_verifybackup.
const MAX_MESSAGES: usize = 20;
/// pg_verifybackup's output kept at most: one line per damaged file, so 1 MiB is thousands of
/// them; beyond, the run is an error rather than memory without bound.
const VERIFY_OUTPUT: tool_command::Limits = tool_command::Limits {
    stdout: 1 << 20,
    stderr: 1 << 20,
};
/// Segments checked for presence at most (a backup of 64 GiB of WAL at 16 MiB).
const MAX_SEGMENTS: usize = 4096;

#[derive(Debug, Clone)]
pub struct RestoreProbe {
    pub name: String,
    /// Directory holding plain pg_basebackup directories (or one itself).
    pub backup_dir: PathBuf,
    /// WAL archive where the backup's WAL is looked for when not in its pg_wal.
    pub archive_dir: Option<PathBuf>,
    /// pg_verifybackup to run; `None`: the newest under /usr/lib/postgresql/*/bin, else PATH.
    pub pg_verifybackup: Option<PathBuf>,
    /// Run it under nice/ionice.
    pub io_limit: bool,
}

impl Probe for RestoreProbe {
    const KIND: ProbeKind = ProbeKind::Restore;

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let me = self.clone();
        let what = format!("reading {}", self.backup_dir.display());
        let prepared = crate::blocking::run(&what, move || me.prepare()).await?;
        let (mut obs, plan) = prepared;
        if let Some(plan) = plan {
            self.verify(&mut obs, plan).await;
        }
        Ok(Observation::Restore(Box::new(obs)))
    }
}

/// What to run once the backup and its WAL were looked at.
struct Plan {
    backup: PathBuf,
    parse_wal: bool,
}

impl RestoreProbe {
    /// The file-system part: choose the backup, read it, look for its WAL.
    fn prepare(&self) -> (RestoreObs, Option<Plan>) {
        let mut obs = RestoreObs {
            backup_root: self.backup_dir.display().to_string(),
            archive_path: self.archive_dir.as_ref().map(|a| a.display().to_string()),
            ..RestoreObs::default()
        };
        let newest = match newest_backup(&self.backup_dir) {
            Ok(n) => {
                obs.exists = true;
                n
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (obs, None),
            Err(e) => {
                obs.exists = true;
                obs.error = Some(format!("cannot list: {}", os_text(&e)));
                return (obs, None);
            }
        };
        let Some(dir) = newest else {
            return (obs, None);
        };
        let parsed = base_backup::read(&dir);
        let size = parsed.backup.wal_segment_size_bytes;
        let mut parse_wal = false;
        if let (Some(size), false) = (size, parsed.wal_ranges.is_empty()) {
            let needed = base_backup::needed_segments(&parsed.wal_ranges, size, MAX_SEGMENTS);
            obs.wal_segments_needed = needed.len() as u64;
            let pg_wal = dir.join("pg_wal");
            let in_backup = |seg: &String| plain_segment(&pg_wal.join(seg), size);
            if needed.iter().all(in_backup) {
                obs.wal_source = Some(WalSource::Backup);
                parse_wal = true;
            } else {
                let in_archive = |seg: &String| {
                    self.archive_dir
                        .as_ref()
                        .is_some_and(|a| in_archive(a, seg, size))
                };
                match needed.iter().find(|s| !in_backup(s) && !in_archive(s)) {
                    Some(missing) => obs.wal_first_missing = Some(missing.clone()),
                    None => {
                        obs.wal_source = Some(if needed.iter().all(in_archive) {
                            WalSource::Archive
                        } else {
                            WalSource::Backup // partly each: recovery takes pg_wal first
                        })
                    }
                }
            }
        }
        obs.wal_parsed = parse_wal;
        obs.backup = Some(parsed.backup);
        (
            obs,
            Some(Plan {
                backup: dir,
                parse_wal,
            }),
        )
    }

    async fn verify(&self, obs: &mut RestoreObs, plan: Plan) {
        let verifier = match &self.pg_verifybackup {
            Some(p) => Some(p.clone()),
            None => find_verifier(),
        };
        let Some(verifier) = verifier else {
            obs.verify_error = Some(
                "pg_verifybackup not found under /usr/lib/postgresql/*/bin or in PATH \
                 (install the PostgreSQL client package or set pg_verifybackup)"
                    .into(),
            );
            return;
        };
        obs.verifier = Some(verifier.display().to_string());
        let mut argv: Vec<String> = Vec::new();
        if self.io_limit {
            argv = io_limit_prefix();
            if !argv.is_empty() {
                obs.io_limit = Some(shown_prefix(&argv));
            }
        }
        argv.push(verifier.display().to_string());
        if !plan.parse_wal {
            argv.push("--no-parse-wal".into());
        }
        argv.push(plan.backup.display().to_string());
        obs.verify_started_at = Some(Utc::now());
        let started = Instant::now();
        // The probe's timeout drops this future: the verification (and `nice`/`ionice`
        // around it) must not outlive it, which the shared runner sees to.
        let out = tool_command::run(&argv, VERIFY_OUTPUT).await;
        obs.verify_duration_ms = started.elapsed().as_millis() as u64;
        match out {
            Err(e) => obs.verify_error = Some(e),
            Ok(out) => {
                // Killed by a signal: no exit code; say so rather than claim a status.
                obs.verify_exit_code = Some(out.code.unwrap_or(-1));
                let text = format!("{}\n{}", out.stderr, out.stdout);
                obs.verify_messages = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(MAX_MESSAGES)
                    .map(str::to_string)
                    .collect();
            }
        }
    }
}

/// `root` itself when it has a manifest, else its subdirectory with the newest manifest.
fn newest_backup(root: &Path) -> io::Result<Option<PathBuf>> {
    if root.join(MANIFEST).is_file() {
        return Ok(Some(root.to_path_buf()));
    }
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let dir = entry.path();
        let Ok(meta) = std::fs::metadata(dir.join(MANIFEST)) else {
            continue;
        };
        let Ok(mtime) = meta.modified() else { continue };
        if meta.is_file() && best.as_ref().is_none_or(|(t, _)| mtime > *t) {
            best = Some((mtime, dir));
        }
    }
    Ok(best.map(|(_, d)| d))
}

fn plain_segment(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

fn in_archive(archive: &Path, seg: &str, size: u64) -> bool {
    plain_segment(&archive.join(seg), size)
        || COMPRESSION_SUFFIXES.iter().any(|(suffix, _)| {
            std::fs::metadata(archive.join(format!("{seg}{suffix}")))
                .is_ok_and(|m| m.is_file() && m.len() > 0)
        })
}

/// The newest major version's pg_verifybackup (it verifies older manifests too), else PATH.
fn find_verifier() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin/pg_verifybackup");
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .or_else(|| in_path("pg_verifybackup"))
}

/// `nice -n 19 ionice -t -c 2 -n 7` as far as those programs exist (also used by drills).
pub(super) fn io_limit_prefix() -> Vec<String> {
    let mut argv = Vec::new();
    for (prog, args) in [
        ("nice", &["-n", "19"][..]),
        ("ionice", &["-t", "-c", "2", "-n", "7"][..]),
    ] {
        if let Some(p) = in_path(prog) {
            argv.push(p.display().to_string());
            argv.extend(args.iter().map(|a| a.to_string()));
        }
    }
    argv
}

/// The prefix as people read it: program names without their directories.
pub(super) fn shown_prefix(argv: &[String]) -> String {
    argv.iter()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn in_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| vec!["/usr/bin".into(), "/bin".into()])
        .into_iter()
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}
