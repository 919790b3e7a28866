//! Running PostgreSQL's programs: where they are, as whom, with which environment, and how to
//! stop a postmaster that `pg_ctl` could not.
//!
//! Invariants: a program failure carries its exit status, stdout and stderr; only a process
//! that is provably the postmaster of our data dir is ever signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;
use std::{fs, thread};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

/// The PostgreSQL server binary directory: `BACKWATCH_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir`. Looked up once per process.
pub fn bindir() -> anyhow::Result<&'static Path> {
    static BINDIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINDIR.get_or_init(find_bindir) {
        Ok(dir) => Ok(dir),
        Err(e) => Err(anyhow!("{e}")),
    }
}

fn find_bindir() -> Result<PathBuf, String> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("BACKWATCH_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if !has_initdb(&dir) {
            return Err(format!(
                "BACKWATCH_PG_BINDIR={}: no initdb there",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    // Debian/Ubuntu keep each major version side by side, and their pg_config may come with
    // the client package and name a version without server binaries: look there first.
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major);
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if !has_initdb(&dir) {
                return Err(format!(
                    "pg_config --bindir names {}, without initdb",
                    dir.display()
                ));
            }
            Ok(dir)
        }
        _ => Err(
            "no PostgreSQL server binaries: set BACKWATCH_PG_BINDIR, or install a server \
                  under /usr/lib/postgresql/<major>/bin or with pg_config on PATH"
                .to_owned(),
        ),
    }
}

/// Every PostgreSQL major the version matrix runs on (10 and 11 are past their end of life but
/// still met in old fleets).
pub const MAJORS: [u32; 9] = [10, 11, 12, 13, 14, 15, 16, 17, 18];

/// The binaries of PostgreSQL `major` that `scripts/install-pg-majors` put under
/// `target/pg/<major>/bin` (server programs for every major, the client tools too for 18).
pub fn major_bindir(major: u32) -> anyhow::Result<&'static Path> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static DIRS: OnceLock<Mutex<HashMap<u32, &'static Path>>> = OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(d) = dirs.get(&major) {
        return Ok(d);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/pg")
        .join(major.to_string())
        .join("bin");
    if !dir.join("initdb").is_file() {
        bail!(
            "PostgreSQL {major} is not installed in {}: run scripts/install-pg-majors (./scripts/test does)",
            dir.display()
        );
    }
    let dir: &'static Path = Box::leak(dir.into_boxed_path());
    dirs.insert(major, dir);
    Ok(dir)
}

/// Whom server programs run as: `postgres` when we are root (PostgreSQL refuses root),
/// otherwise ourselves (`None`).
pub(super) fn server_user() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("looking up OS user postgres")?
        .ok_or_else(|| {
            anyhow!("running as root, but there is no OS user `postgres` to run the server as")
        })?;
    Ok(Some((user.uid, user.gid)))
}

/// Removes environment that would steer libpq or the server elsewhere (PGPORT=5432, a service
/// file, a user's PGOPTIONS).
pub(super) fn hermetic_env(cmd: &mut Command) {
    const STEERING: &[&str] = &[
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGDATA",
        "PGOPTIONS",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGTZ",
        "PGCLUSTER",
    ];
    for var in STEERING {
        cmd.env_remove(var);
    }
}

/// Runs a program to completion; failure includes its status and output.
pub(super) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {what} ({})", cmd.get_program().display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            lossy(&out.stdout),
            lossy(&out.stderr)
        );
    }
    Ok(())
}

/// psql's stdout, trimmed, or an error with its stderr (where psql puts the server's ERROR).
pub(super) fn psql_result(sql: &str, out: &Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "psql failed ({}) running {sql:?}: {}",
            out.status,
            lossy(&out.stderr).trim()
        );
    }
    Ok(lossy(&out.stdout).trim().to_owned())
}

/// Stops a postmaster that pg_ctl could not: SIGQUIT is PostgreSQL's immediate shutdown,
/// SIGKILL the last resort (its children notice the postmaster is gone and exit).
pub(super) fn kill_postmaster(pid: i32, data: &Path) {
    for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
        if !postmaster_alive(pid, data) {
            return;
        }
        let _ = kill(Pid::from_raw(pid), signal);
        for _ in 0..50 {
            if !postmaster_alive(pid, data) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `pid` is still a live postmaster of `data`. A postmaster runs with its data dir as
/// cwd; checking that keeps us from signalling an unrelated process that reused a stale pid.
/// A zombie (nobody reaps orphans in some containers) has no cwd and counts as gone.
fn postmaster_alive(pid: i32, data: &Path) -> bool {
    let data = fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data)
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
