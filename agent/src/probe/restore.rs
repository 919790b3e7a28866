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
//!   which checks record by record (when the verifier is of the backup's own major: another
//!   major's pg_waldump refuses that WAL). Otherwise it runs with `--no-parse-wal` and the agent looks
//!   for each segment in the archive directory by name (plain copies must have the segment
//!   size, compressed or encrypted ones `.gz`/`.lz4`/`.zst`/`.gpg`/... count when present and
//!   not empty: encrypted ones are there for a `restore_command` that holds the key). Pointing
//!   `--wal-directory` at the archive instead would make pg_waldump read it, and pg_waldump
//!   cannot read compressed segments nor name the first missing segment as such; a presence
//!   check is what recovery's `restore_command` needs and costs one `stat` per segment.
//! - **IO-bounded**: `nice -n 19` and `ionice -c 2 -n 7` (lowest best-effort priority) when
//!   those programs exist. The idle class (`-c 3`) was not chosen: on a database host that is
//!   never idle it can starve the verification for good and the weekly check would only ever
//!   time out. The run is bounded by the probe's timeout; the process group is killed with it,
//!   and its output is bounded (see [`super::tool_command`]).
//! - Runs on its own schedule, weekly by default: it reads the whole backup.

use super::archive_dir::names;
use super::backup_dir::os_text;
use super::base_backup::{self, Format, MANIFEST};
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
    drop_array: None,
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
    /// pg_verifybackup to run; `None`: the one of the backup's major found under `pg_roots`
    /// (see [`choose_verifier`]), else PATH.
    pub pg_verifybackup: Option<PathBuf>,
    /// Where majors are installed side by side (`<root>/<major>/bin`, `<root>/pgsql-<major>/bin`).
    pub pg_roots: Vec<PathBuf>,
    /// Run it under nice/ionice.
    pub io_limit: bool,
}

#[async_trait::async_trait]
impl Probe for RestoreProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Restore
    }

    fn target(&self) -> String {
        self.backup_dir.display().to_string()
    }

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
    tar: bool,
}

/// Debian and Ubuntu (`/usr/lib/postgresql/<major>/bin`) and the PGDG packages for Red Hat
/// (`/usr/pgsql-<major>/bin`).
pub const DEFAULT_PG_ROOTS: [&str; 2] = ["/usr/lib/postgresql", "/usr"];
/// pg_verifybackup reads tar-format backups from PostgreSQL 18 on.
const TAR_VERIFIER_MAJOR: u32 = 18;

impl RestoreProbe {
    /// The file-system part: choose the backup, read it, look for its WAL.
    fn prepare(&self) -> (RestoreObs, Option<Plan>) {
        let mut obs = RestoreObs {
            backup_root: self.backup_dir.display().to_string(),
            archive_path: self.archive_dir.as_ref().map(|a| a.display().to_string()),
            ..RestoreObs::default()
        };
        let newest = match newest_backup(&self.backup_dir) {
            Ok((n, newer_incrementals)) => {
                obs.exists = true;
                obs.newer_incrementals = newer_incrementals;
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
            // Backups without a manifest (PostgreSQL 12, `--no-manifest`, or one still being
            // written) cannot be verified: unknown, saying so, rather than "no backup".
            if obs.newer_incrementals == 0
                && let Some(unlisted) = newest_without_manifest(&self.backup_dir)
            {
                obs.backup = Some(base_backup::read(&unlisted).backup);
                obs.verify_error = Some(
                    "it has no backup_manifest (PostgreSQL 12, pg_basebackup --no-manifest, or \
                     a backup still being written): pg_verifybackup checks only backups with one"
                        .to_string(),
                );
            }
            return (obs, None);
        };
        // A directory with a manifest and neither PG_VERSION nor base.tar is taken as plain:
        // pg_verifybackup says what is wrong with it.
        let format = base_backup::format_of(&dir).unwrap_or(Format::Plain);
        let tar = format != Format::Plain;
        obs.backup_major = major_of(&dir, format);
        obs.backup_format = Some(format.as_str().to_string());
        let parsed = base_backup::read(&dir);
        // A label that fits several segment sizes, and no WAL in the backup (`-X none`): the
        // archived plain copy of its start segment tells.
        let size = parsed.backup.wal_segment_size_bytes.or_else(|| {
            let start = parsed.backup.start_segment.as_ref()?;
            let len = std::fs::metadata(self.archive_dir.as_ref()?.join(start))
                .ok()?
                .len();
            names::valid_segment_size(len).then_some(len)
        });
        let mut parse_wal = false;
        // A tar backup's WAL is in pg_wal.tar, which pg_verifybackup does not parse: its
        // entries are listed instead. pg_basebackup compresses streamed WAL only with
        // client-side gzip, so a plain pg_wal.tar is read beside a base.tar of any compression;
        // without one, base.tar's pg_wal/ (-X fetch) when base.tar is uncompressed. A compressed
        // archive is not opened: that WAL is then looked for in the archive only.
        let uncompressed_tar = format == Format::Tar("", None);
        let tar_wal = if tar {
            base_backup::tar_sizes(&dir.join("pg_wal.tar")).or_else(|| {
                uncompressed_tar.then(|| {
                    let base = base_backup::tar_sizes(&dir.join("base.tar")).unwrap_or_default();
                    base.into_iter()
                        .filter_map(|(n, s)| Some((n.strip_prefix("pg_wal/")?.to_string(), s)))
                        .collect()
                })
            })
        } else {
            None
        };
        // Whether a segment absent from the backup is known to be absent.
        let listed = !tar || tar_wal.is_some();
        if let (Some(size), false) = (size, parsed.wal_ranges.is_empty()) {
            let needed = base_backup::needed_segments(&parsed.wal_ranges, size, MAX_SEGMENTS);
            obs.wal_segments_needed = needed.len() as u64;
            let pg_wal = dir.join("pg_wal");
            let in_backup = |seg: &String| match &tar_wal {
                Some(entries) => entries.get(seg.as_str()) == Some(&size),
                None => !tar && plain_segment(&pg_wal.join(seg), size),
            };
            if listed && needed.iter().all(in_backup) {
                obs.wal_source = Some(WalSource::Backup);
                parse_wal = !tar;
            } else {
                let in_archive = |seg: &String| {
                    self.archive_dir
                        .as_ref()
                        .is_some_and(|a| in_archive(a, seg, size))
                };
                match needed.iter().find(|s| !in_backup(s) && !in_archive(s)) {
                    Some(missing) if listed => obs.wal_first_missing = Some(missing.clone()),
                    // Maybe in the compressed archive, which is not opened: not checked.
                    Some(_) => {}
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
                tar,
            }),
        )
    }

    async fn verify(&self, obs: &mut RestoreObs, plan: Plan) {
        let verifier = match &self.pg_verifybackup {
            Some(p) => p.clone(),
            None => {
                let installed = installed_verifiers(&self.pg_roots);
                match choose_verifier(&installed, obs.backup_major, plan.tar) {
                    Ok((major, p)) => {
                        obs.verifier_major = Some(major);
                        p
                    }
                    Err(e) if installed.is_empty() && !plan.tar => match in_path("pg_verifybackup")
                    {
                        Some(p) => p,
                        None => {
                            obs.verify_error = Some(e);
                            return;
                        }
                    },
                    Err(e) => {
                        obs.verify_error = Some(e);
                        return;
                    }
                }
            }
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
        // pg_verifybackup parses WAL with the pg_waldump of its own major, which refuses
        // another major's WAL ("invalid magic number"): a verifier of a newer major (the
        // backup's own is not installed) leaves the WAL to the check by name.
        let other_major = obs
            .verifier_major
            .is_some_and(|v| obs.backup_major.is_some_and(|b| b != v));
        if other_major {
            obs.wal_parsed = false;
        }
        if !plan.parse_wal || plan.tar || other_major {
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

/// The newest full backup under `root` (itself, or one level down) by its manifest's
/// modification time, and how many incremental ones are newer (see
/// [`base_backup::newest_full`]).
fn newest_backup(root: &Path) -> io::Result<(Option<PathBuf>, u32)> {
    if root.join(MANIFEST).is_file() {
        return Ok(base_backup::newest_full([root.to_path_buf()]));
    }
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let dir = entry.path();
        let Ok(meta) = std::fs::metadata(dir.join(MANIFEST)) else {
            continue;
        };
        let Ok(mtime) = meta.modified() else { continue };
        if meta.is_file() {
            found.push((mtime, dir));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(base_backup::newest_full(found.into_iter().map(|(_, d)| d)))
}

/// The newest base backup under `root` (itself, or one level down) by its directory's time,
/// when none has a manifest.
fn newest_without_manifest(root: &Path) -> Option<PathBuf> {
    if base_backup::format_of(root).is_some() {
        return Some(root.to_path_buf());
    }
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| base_backup::format_of(d).is_some())
        .filter_map(|d| Some((std::fs::metadata(&d).ok()?.modified().ok()?, d)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, d)| d)
}

fn plain_segment(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Plain and whole, or under a suffix (compressed or encrypted) and not empty.
fn in_archive(archive: &Path, seg: &str, size: u64) -> bool {
    plain_segment(&archive.join(seg), size)
        || names::stored_names(seg).iter().skip(1).any(|(name, _)| {
            std::fs::metadata(archive.join(name)).is_ok_and(|m| m.is_file() && m.len() > 0)
        })
}

/// Every pg_verifybackup installed under `roots`, by major.
fn installed_verifiers(roots: &[PathBuf]) -> Vec<(u32, PathBuf)> {
    installed(roots, "pg_verifybackup")
}

/// The `bin` directory of `major` under `roots` that holds `prog`, the first root first.
pub fn major_bindir(roots: &[PathBuf], major: u32, prog: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| {
        [format!("{major}/bin"), format!("pgsql-{major}/bin")]
            .into_iter()
            .map(|d| r.join(d))
            .find(|d| d.join(prog).is_file())
    })
}

/// Every `prog` installed under `roots`, by major (one per major, the first root's):
/// `<root>/<major>/bin` (Debian) or `<root>/pgsql-<major>/bin` (PGDG for Red Hat).
fn installed(roots: &[PathBuf], prog: &str) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = roots
        .iter()
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let major = name
                .strip_prefix("pgsql-")
                .unwrap_or(name)
                .parse::<u32>()
                .ok()?;
            let p = e.path().join("bin").join(prog);
            p.is_file().then_some((major, p))
        })
        .collect();
    found.sort();
    found.dedup_by_key(|(m, _)| *m);
    found
}

/// The pg_verifybackup for a backup of `major` (`None`: not known): that major's own; else the
/// oldest newer one (a newer pg_verifybackup reads older manifests, an older one cannot read
/// what a newer server wrote); a tar-format backup needs 18 or later. Without a known major,
/// the newest.
pub fn choose_verifier(
    installed: &[(u32, PathBuf)],
    major: Option<u32>,
    tar: bool,
) -> Result<(u32, PathBuf), String> {
    let floor = if tar { TAR_VERIFIER_MAJOR } else { 0 }.max(major.unwrap_or(0));
    let pick = match major {
        Some(m) if !tar || m >= TAR_VERIFIER_MAJOR => installed
            .iter()
            .find(|(v, _)| *v == m)
            .or_else(|| installed.iter().find(|(v, _)| *v >= floor)),
        Some(_) => installed.iter().find(|(v, _)| *v >= floor),
        None => installed.last().filter(|(v, _)| *v >= floor),
    };
    if let Some((v, p)) = pick {
        return Ok((*v, p.clone()));
    }
    let have = if installed.is_empty() {
        "none is installed".to_string()
    } else {
        let list: Vec<String> = installed.iter().map(|(v, _)| v.to_string()).collect();
        format!("installed: {}", list.join(", "))
    };
    let of = major.map_or(String::new(), |m| format!(" for a PostgreSQL {m} backup"));
    Err(if tar {
        format!(
            "a tar-format backup is verified by pg_verifybackup {floor} or later{of}, and {have} \
             (install the PostgreSQL {floor} client package or set pg_verifybackup)"
        )
    } else {
        format!(
            "no pg_verifybackup of PostgreSQL {floor} or later{of} ({have}; install the client \
             package of the backup's major or set pg_verifybackup)"
        )
    })
}

/// The backup's major from its `PG_VERSION`: the file itself, or its entry in `base.tar` (an
/// uncompressed one's headers are read until it is found, at most 100,000 entries; of a
/// compressed one only the first MiB, where it is seldom: the server sends the data
/// directory's files in directory order).
fn major_of(dir: &Path, format: Format) -> Option<u32> {
    let text = match format {
        Format::Plain => std::fs::read_to_string(dir.join("PG_VERSION")).ok()?,
        Format::Tar(..) => base_backup::base_entry(dir, format, "PG_VERSION", 64).ok()??,
    };
    text.trim().split('.').next()?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(majors: &[u32]) -> Vec<(u32, PathBuf)> {
        majors
            .iter()
            .map(|m| {
                (
                    *m,
                    PathBuf::from(format!("/usr/lib/postgresql/{m}/bin/pg_verifybackup")),
                )
            })
            .collect()
    }

    /// A `-X none` backup whose label fits several segment sizes (start `5/80028`, early in
    /// the first segment of log 5): the archived copy of its start segment gives the size, and
    /// its WAL is looked for by the right names.
    #[test]
    fn an_ambiguous_start_is_sized_by_the_archived_start_segment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let backup = tmp.path().join("backups/b1");
        let archive = tmp.path().join("archive");
        std::fs::create_dir_all(&backup).expect("mkdir");
        std::fs::create_dir_all(&archive).expect("mkdir");
        std::fs::write(backup.join("PG_VERSION"), "15\n").expect("PG_VERSION");
        std::fs::write(
            backup.join("backup_label"),
            "START WAL LOCATION: 5/80028 (file 000000010000000500000000)\n\
             START TIMELINE: 1\n",
        )
        .expect("label");
        std::fs::write(
            backup.join(MANIFEST),
            r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
                "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "5/80028", "End-LSN": "5/1000100"}]}"#,
        )
        .expect("manifest");
        for seg in ["000000010000000500000000", "000000010000000500000001"] {
            std::fs::File::create(archive.join(seg))
                .and_then(|f| f.set_len(16 << 20))
                .expect("segment");
        }
        let probe = RestoreProbe {
            name: "main".into(),
            backup_dir: tmp.path().join("backups"),
            archive_dir: Some(archive),
            pg_verifybackup: None,
            pg_roots: Vec::new(),
            io_limit: false,
        };
        let (obs, _) = probe.prepare();
        assert_eq!(obs.wal_segments_needed, 2, "{obs:?}");
        assert_eq!(obs.wal_first_missing, None, "{obs:?}");
        assert_eq!(obs.wal_source, Some(WalSource::Archive), "{obs:?}");
    }

    #[test]
    fn the_backups_own_major_else_the_oldest_newer_one() {
        let all = installed(&[13, 15, 17]);
        let pick = |major, tar| choose_verifier(&all, major, tar).map(|(v, _)| v);
        assert_eq!(pick(Some(15), false), Ok(15));
        assert_eq!(
            pick(Some(14), false),
            Ok(15),
            "older tools cannot read newer manifests"
        );
        assert_eq!(pick(None, false), Ok(17), "unknown major: the newest");
        let e = pick(Some(18), false).unwrap_err();
        assert!(e.starts_with("no pg_verifybackup of PostgreSQL 18 or later for a PostgreSQL 18 backup (installed: 13, 15, 17"), "{e}");
    }

    #[test]
    fn a_tar_backup_needs_18_or_later() {
        let pick =
            |all: &[u32], major| choose_verifier(&installed(all), major, true).map(|(v, _)| v);
        assert_eq!(pick(&[15, 18], Some(15)), Ok(18));
        assert_eq!(pick(&[15, 18], None), Ok(18));
        let e = pick(&[15], Some(15)).unwrap_err();
        assert!(
            e.starts_with("a tar-format backup is verified by pg_verifybackup 18 or later for a PostgreSQL 15 backup, and installed: 15"),
            "{e}"
        );
    }

    #[test]
    fn the_major_is_read_from_pg_version_in_a_plain_or_tar_backup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "16\n").unwrap();
        let format = |d: &Path| base_backup::format_of(d).unwrap_or(Format::Plain);
        assert_eq!(major_of(dir.path(), format(dir.path())), Some(16));
        let tar_dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("global.txt"), vec![b'x'; 1500]).unwrap();
        std::fs::write(src.path().join("PG_VERSION"), "18\n").unwrap();
        let ok = std::process::Command::new("tar")
            .arg("-cf")
            .arg(tar_dir.path().join("base.tar"))
            .arg("-C")
            .arg(src.path())
            .args(["global.txt", "PG_VERSION"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        assert_eq!(format(tar_dir.path()), Format::Tar("", None));
        assert_eq!(major_of(tar_dir.path(), Format::Tar("", None)), Some(18));
    }
}
