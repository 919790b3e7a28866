//! Which backup a drill restores, whether the scratch file system can hold it, and the copy.
//!
//! - Candidates: `backup_dir` itself or its subdirectories (one level) holding a plain backup
//!   (`PG_VERSION`) or a tar one (`base.tar`, or `.gz`, `.lz4`, `.zst`); the newest by the modification
//!   time of its `backup_manifest` (written last by pg_basebackup: a directory without one
//!   beside finished backups is unfinished and not taken), else of the directory; an
//!   incremental backup (PostgreSQL 17 and later) only with its chain, so the newest full one.
//! - Size: the bytes under the backup's directory, or the manifest's sum when larger (a
//!   compressed tar unpacks to about what the manifest lists).
//! - Restore: plain with `cp -a <backup>/. <data>`, tar with `tar -x` of `base.tar` into the
//!   data directory and of `pg_wal.tar` (or `pg_wal.tar.gz`) into its `pg_wal`, both under the
//!   IO limit.

use super::super::backup_dir::os_text;
use super::super::base_backup::{self, Format, format_of};
use super::super::tool_command;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub format: Format,
}

impl AsRef<Path> for Found {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// The space check's figures; `refused` says why the drill must not start.
pub struct Space {
    pub backup_bytes: u64,
    pub free_bytes: u64,
    pub refused: Option<String>,
}

/// The newest backup under `root` and the space check against `scratch`.
pub fn choose(root: &Path, scratch: &Path, factor: f64) -> Result<(Found, Space), String> {
    let found = newest(root)?;
    let mut bytes = tree_bytes(&found.path);
    if found.path.join(base_backup::MANIFEST).is_file() {
        let listed = base_backup::read(&found.path).backup.size_bytes;
        bytes = bytes.max(listed);
    }
    let space = space(scratch, bytes, factor)?;
    Ok((found, space))
}

/// The space check: `scratch`'s free space against `bytes` × `factor`.
pub fn space(scratch: &Path, bytes: u64, factor: f64) -> Result<Space, String> {
    let vfs = nix::sys::statvfs::statvfs(scratch).map_err(|e| {
        format!(
            "scratch directory {}: {}",
            scratch.display(),
            os_text(&std::io::Error::from(e))
        )
    })?;
    let free = vfs.blocks_available() as u64 * vfs.fragment_size() as u64;
    let needed = (bytes as f64 * factor).ceil() as u64;
    let refused = (free < needed).then(|| {
        format!(
            "not enough space in {}: {} free, the backup needs {} × {factor} = {}; drill not started, nothing written",
            scratch.display(),
            human_bytes(free),
            human_bytes(bytes),
            human_bytes(needed)
        )
    });
    Ok(Space {
        backup_bytes: bytes,
        free_bytes: free,
        refused,
    })
}

fn newest(root: &Path) -> Result<Found, String> {
    if let Some(format) = format_of(root) {
        return Ok(Found {
            path: root.to_path_buf(),
            format,
        });
    }
    let entries = std::fs::read_dir(root).map_err(|e| {
        format!(
            "cannot list backup directory {}: {}",
            root.display(),
            os_text(&e)
        )
    })?;
    // Finished backups first: pg_basebackup writes `backup_manifest` last (PostgreSQL 13 and
    // later), so a directory without one next to directories with one is a backup still
    // being written, or one that died (killed, out of memory, a reboot, `--no-clean`); its
    // directory is newer than every finished backup, and restoring it fails. Without any
    // manifest (PostgreSQL 12, `--no-manifest`) the directory's time decides.
    let mut candidates: Vec<((bool, SystemTime), Found)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(format) = format_of(&dir) else {
            continue;
        };
        let stamp = match std::fs::metadata(dir.join(base_backup::MANIFEST)) {
            Ok(m) => m.modified().map(|t| (true, t)),
            Err(_) => std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .map(|t| (false, t)),
        };
        let Ok(stamp) = stamp else { continue };
        candidates.push((stamp, Found { path: dir, format }));
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    let (found, incrementals) = base_backup::newest_full(candidates.into_iter().map(|(_, f)| f));
    if let Some(found) = found {
        return Ok(found);
    }
    Err(if incrementals > 0 {
        backwatch_rules::restore::no_full_backup(&root.display().to_string(), incrementals)
    } else {
        format!(
            "no base backup (plain with PG_VERSION, or tar with base.tar, .gz, .lz4 or .zst) under {}",
            root.display()
        )
    })
}

/// The WAL a tar backup streamed (`-X stream`) and the program that unpacks it. pg_basebackup
/// compresses it only with client-side gzip (`pg_wal.tar.gz`); with server-side compression
/// or client-side lz4 or zstd it stays `pg_wal.tar` beside a compressed `base.tar`
/// (pg_basebackup.c, PostgreSQL 15 and later).
fn wal_tar(backup: &Path) -> Option<(PathBuf, Option<&'static str>)> {
    [("pg_wal.tar", None), ("pg_wal.tar.gz", Some("gzip"))]
        .into_iter()
        .map(|(name, program)| (backup.join(name), program))
        .find(|(path, _)| path.is_file())
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Copy or unpack `found` into `data` (which does not exist yet).
pub async fn restore(found: &Found, data: &Path, limit: &[String]) -> Result<(), String> {
    std::fs::create_dir(data)
        .map_err(|e| format!("creating {}: {}", data.display(), os_text(&e)))?;
    let src = found.path.display().to_string();
    let dst = data.display().to_string();
    match found.format {
        Format::Plain => {
            run(limit, &["cp", "-a", &format!("{src}/."), &dst]).await?;
        }
        Format::Tar(ext, program) => {
            let untar = |file: String, program: Option<&str>, into: String| {
                let mut argv = vec!["tar".to_string()];
                argv.extend(program.map(|p| format!("--use-compress-program={p}")));
                argv.extend(["-xf".into(), file, "-C".into(), into]);
                argv
            };
            let base = format!("{src}/base.tar{ext}");
            run(limit, &untar(base, program, dst.clone())).await?;
            if let Some((wal, program)) = wal_tar(&found.path) {
                let pg_wal = data.join("pg_wal");
                std::fs::create_dir_all(&pg_wal)
                    .map_err(|e| format!("creating {}: {}", pg_wal.display(), os_text(&e)))?;
                let (wal, into) = (wal.display().to_string(), pg_wal.display().to_string());
                run(limit, &untar(wal, program, into)).await?;
            }
        }
    }
    Ok(())
}

/// Run a copy tool under the IO limit; its last words when it fails.
async fn run(limit: &[String], argv: &[impl AsRef<str>]) -> Result<(), String> {
    let mut all: Vec<String> = limit.to_vec();
    all.extend(argv.iter().map(|a| a.as_ref().to_string()));
    tool_command::run_ok(&all, limit.len(), COPY_OUTPUT).await?;
    Ok(())
}

/// cp and tar print only errors: 1 MiB of them is plenty.
const COPY_OUTPUT: tool_command::Limits = tool_command::Limits {
    stdout: 1 << 20,
    stderr: 1 << 20,
    drop_array: None,
};

/// "1.2 GiB", "512 KiB", "100 bytes".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_backup_is_chosen_by_its_manifest() {
        let root = tempfile::tempdir().unwrap();
        for (name, file) in [("a", "PG_VERSION"), ("b", "base.tar"), ("c", "junk")] {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join(file), "15\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(d.join(base_backup::MANIFEST), "{}").unwrap();
        }
        let f = newest(root.path()).unwrap();
        assert_eq!(f.format, Format::Tar("", None));
        assert!(f.path.ends_with("b"));
    }

    #[test]
    fn a_backup_still_being_written_is_not_taken() {
        let root = tempfile::tempdir().unwrap();
        let done = root.path().join("monday");
        std::fs::create_dir(&done).unwrap();
        std::fs::write(done.join("PG_VERSION"), "17\n").unwrap();
        std::fs::write(done.join(base_backup::MANIFEST), "{}").unwrap();
        // Tuesday's pg_basebackup is still running (or died): no manifest yet, a newer
        // directory.
        let running = root.path().join("tuesday");
        std::fs::create_dir(&running).unwrap();
        std::fs::write(running.join("PG_VERSION"), "17\n").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        std::fs::File::open(done.join(base_backup::MANIFEST))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(newest(root.path()).unwrap().path.ends_with("monday"));
        // Without any manifest (PostgreSQL 12), the newest directory.
        std::fs::remove_file(done.join(base_backup::MANIFEST)).unwrap();
        std::fs::File::open(&done)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(newest(root.path()).unwrap().path.ends_with("tuesday"));
    }

    #[test]
    fn the_streamed_wal_is_gzip_or_plain_whatever_the_base_is() {
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("base.tar.zst"), "x").unwrap();
        assert_eq!(wal_tar(b.path()), None);
        // Server-side or lz4/zstd compression: the WAL stays a plain tar.
        std::fs::write(b.path().join("pg_wal.tar"), "x").unwrap();
        assert_eq!(wal_tar(b.path()), Some((b.path().join("pg_wal.tar"), None)));
        std::fs::remove_file(b.path().join("pg_wal.tar")).unwrap();
        std::fs::write(b.path().join("pg_wal.tar.gz"), "x").unwrap();
        assert_eq!(
            wal_tar(b.path()),
            Some((b.path().join("pg_wal.tar.gz"), Some("gzip")))
        );
    }

    #[test]
    fn too_little_space_is_refused_with_the_figures() {
        let root = tempfile::tempdir().unwrap();
        let b = root.path().join("b");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("PG_VERSION"), "15\n").unwrap();
        let (_, space) = choose(&b, root.path(), 1e15).unwrap();
        let refused = space.refused.unwrap();
        assert!(refused.starts_with("not enough space in "), "{refused}");
        assert!(
            refused.ends_with("drill not started, nothing written"),
            "{refused}"
        );
        let (_, space) = choose(&b, root.path(), 1.2).unwrap();
        assert!(space.refused.is_none());
        assert_eq!(space.backup_bytes, 3);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
