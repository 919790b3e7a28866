//! The real backup tools (Debian's pgBackRest and Barman) set up against a private cluster, for
//! the tests that probe them (`backup_tools.rs`) and that restore from them (`drill.rs`).
//!
//! As root the tools run as the user the harness runs the cluster as (`postgres`): pgBackRest
//! must own its repository like the server that pushes WAL into it. Barman runs as ourselves
//! with `barman_user` set to our name, and the server's `archive_command` copies into its
//! incoming directory.

use super::pg::bindir;
use super::{PgCluster, PgClusterBuilder, eventually};
use anyhow::{Context, Result, ensure};
use nix::unistd::{Uid, User, chown};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(60);

/// Whether `tool` runs at all (`--version` or `version`).
pub fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("version").output().is_ok()
}

/// Runs `argv` as `postgres` when we are root (as ourselves otherwise); its standard output, or
/// an error with all it printed.
pub fn as_server_user(argv: &[&str]) -> Result<String> {
    let mut cmd = if Uid::effective().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    let out = cmd.current_dir("/tmp").output()?;
    ensure!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Hands `path` to `postgres` when we are root.
pub fn give_to_server_user(path: &Path) -> Result<()> {
    if Uid::effective().is_root() {
        let user = User::from_name("postgres")?.context("no postgres user")?;
        chown(path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// A cluster archiving into a pgBackRest repository (stanza `main`, `<dir>/repo`), the stanza
/// created; no backup taken yet.
pub struct PgBackRest {
    pub pg: PgCluster,
    pub conf: PathBuf,
    pub dir: TempDir,
}

impl PgBackRest {
    /// `global` adds lines to the `[global]` section (e.g. "repo1-retention-full=2").
    pub fn start(global: &str) -> Result<PgBackRest> {
        let tool = Self::configure(PgCluster::init(), global)?;
        tool.run(&["--stanza=main", "stanza-create"])?;
        Ok(tool)
    }

    /// The cluster `pg` started and the configuration written, no stanza created (pgBackRest
    /// may refuse the cluster's major).
    pub fn configure(pg: PgClusterBuilder, global: &str) -> Result<PgBackRest> {
        ensure!(
            installed("pgbackrest"),
            "pgbackrest is not installed (scripts/test installs it)"
        );
        let dir = tempfile::tempdir()?;
        give_to_server_user(dir.path())?;
        let conf = dir.path().join("pgbackrest.conf");
        let pg = pg
            .archive_command(&format!(
                "pgbackrest --config={} --stanza=main archive-push %p",
                conf.display()
            ))
            .start()?;
        fs::write(
            &conf,
            format!(
                "[global]\nrepo1-path={}\nlock-path={}\nlog-level-console=warn\nlog-level-file=off\n\
                 start-fast=y\n{global}\n[main]\npg1-path={}\npg1-socket-path={}\npg1-port={}\n\
                 pg1-user=postgres\n",
                dir.path().join("repo").display(),
                dir.path().join("lock").display(),
                pg.data_dir().display(),
                pg.socket_dir().display(),
                pg.port()
            ),
        )?;
        give_to_server_user(&conf)?;
        Ok(PgBackRest { pg, conf, dir })
    }

    /// `pgbackrest version`'s number ("2.45").
    pub fn version() -> Result<String> {
        let out = as_server_user(&["pgbackrest", "version"])?;
        out.trim()
            .strip_prefix("pgBackRest ")
            .map(str::to_string)
            .with_context(|| format!("pgbackrest version printed {out:?}"))
    }

    /// `pgbackrest --config=<conf> <args>` as the server's user.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let conf = format!("--config={}", self.conf.display());
        let mut argv = vec!["pgbackrest", conf.as_str()];
        argv.extend(args);
        as_server_user(&argv)
    }

    /// A backup of `kind` ("full", "diff", "incr") of stanza `main`.
    pub fn backup(&self, kind: &str) -> Result<()> {
        self.run(&["--stanza=main", &format!("--type={kind}"), "backup"])?;
        Ok(())
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
}

/// A cluster whose `archive_command` feeds Barman server `pg` (`<dir>/barman`), with its first
/// segment already received: Barman refuses a backup before it has WAL.
pub struct Barman {
    pub pg: PgCluster,
    pub conf: PathBuf,
    pub dir: TempDir,
    /// The `barman` executable: the system's, or a newer one (see [`Barman::newer`]).
    pub exe: PathBuf,
}

impl Barman {
    pub async fn start() -> Result<Barman> {
        Self::on(PgCluster::init()).await
    }

    /// Barman for the cluster `pg` (of any major; Barman's `pg_basebackup` is the system's).
    pub async fn on(pg: PgClusterBuilder) -> Result<Barman> {
        ensure!(
            installed("barman"),
            "barman is not installed (scripts/test installs it)"
        );
        Self::using(pg, Path::new("barman"), bindir()?).await
    }

    /// The pinned newer Barman `scripts/test` installs into `target/tools/barman` (Debian's
    /// is 3.4; block-level incremental backups need 3.11).
    pub fn newer() -> Result<PathBuf> {
        let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/barman/bin/barman");
        ensure!(
            exe.is_file(),
            "{} is missing: ./scripts/test installs it",
            exe.display()
        );
        Ok(exe)
    }

    /// Barman `exe` for the cluster `pg`, taking base backups with the `pg_basebackup` of `bin`.
    pub async fn using(pg: PgClusterBuilder, exe: &Path, bin: &Path) -> Result<Barman> {
        let dir = tempfile::tempdir()?;
        // The server (as postgres) copies WAL into Barman's incoming directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let home = dir.path().join("barman");
        let incoming = home.join("pg/incoming");
        fs::create_dir_all(&incoming)?;
        fs::set_permissions(&incoming, fs::Permissions::from_mode(0o777))?;
        let pg = pg
            .archive_command(&format!("cp %p {}/%f", incoming.display()))
            .start()?;
        let me = User::from_uid(Uid::effective())?.context("current user has no name")?;
        let conf = dir.path().join("barman.conf");
        fs::write(
            &conf,
            format!(
                "[barman]\nbarman_home = {home}\nbarman_user = {user}\nlog_file = {dir}/barman.log\n\
                 path_prefix = {bin}\n[pg]\ndescription = test\n\
                 conninfo = host={sock} port={port} user=postgres dbname=postgres\n\
                 streaming_conninfo = host={sock} port={port} user=postgres\n\
                 backup_method = postgres\narchiver = on\n",
                home = home.display(),
                user = me.name,
                dir = dir.path().display(),
                bin = bin.display(),
                sock = pg.socket_dir().display(),
                port = pg.port()
            ),
        )?;
        let first = pg.switch_wal()?;
        eventually(
            WAIT,
            "the first segment in Barman's incoming directory",
            async || {
                ensure!(incoming.join(&first).exists(), "{first} not there yet");
                Ok(())
            },
        )
        .await;
        let tool = Barman {
            pg,
            conf,
            dir,
            exe: exe.to_path_buf(),
        };
        tool.run(&["archive-wal", "pg"])?;
        Ok(tool)
    }

    /// `barman -c <conf> <args>`; its standard output, or an error with all it printed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.exe)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "barman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
