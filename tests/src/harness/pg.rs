//! Real PostgreSQL clusters for end-to-end tests, each in its own temp dir.
//!
//! Invariants:
//! - A cluster owns a `TempDir` holding `data/`, `archive/`, `sock/` and `server.log`; it listens
//!   on 127.0.0.1 on a free port and on a private unix socket dir, so it never meets the system
//!   PostgreSQL on 5432 or another test's cluster.
//! - A `PgCluster` owns its server: dropping it stops the server (immediate mode, then signals
//!   to the postmaster named in `postmaster.pid`) before the directory is removed, also while a
//!   test unwinds. A panicking test also gets the tail of the server log on stderr.
//! - PostgreSQL refuses to run as root, so as root every server-side program (initdb, pg_ctl,
//!   pg_basebackup, and thus postgres) runs as the `postgres` OS user, which owns the temp dir.
//!   Clients (psql) run as the test process.
//! - Clusters are throwaway: no fsync anywhere, small shared memory, UTC, C locale.

mod builder;
mod process;
mod quote;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{fs, thread};

use anyhow::{Context as _, anyhow, ensure};
use chrono::{DateTime, Utc};
use nix::unistd::{Gid, Uid};
use serde::Deserialize;
use tempfile::TempDir;

pub use builder::PgClusterBuilder;
pub use process::{MAJORS, bindir, major_bindir};

use builder::Source;
use process::{hermetic_env, kill_postmaster, psql_result, run};

/// Seconds pg_ctl waits for start/stop; generous because two cores may run several clusters.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Lines of server log shown when a start fails or a test panics.
const LOG_TAIL_LINES: usize = 40;
const ARCHIVER_STATS_SQL: &str = "SELECT row_to_json(a) FROM pg_stat_archiver a";

/// A PostgreSQL server (running, or stopped by the test) that is stopped and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    data: PathBuf,
    archive: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
    bindir: &'static Path,
    /// Uid/gid the server programs run as; `None` when we are not root and run them as ourselves.
    server_user: Option<(Uid, Gid)>,
    // Last field: removed only after `Drop::drop` has stopped the server living in it.
    tmp: TempDir,
}

/// One row of `pg_stat_archiver`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ArchiverStats {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
    pub stats_reset: DateTime<Utc>,
}

impl PgCluster {
    /// A builder for a fresh cluster (`initdb -A trust -U postgres`).
    pub fn init() -> PgClusterBuilder {
        PgClusterBuilder::new(Source::Initdb)
    }

    /// A builder for a streaming standby of this running cluster (`pg_basebackup -R`), with
    /// the primary's binaries (its major must have `pg_basebackup`: the system's, or 18).
    pub fn standby(&self) -> PgClusterBuilder {
        PgClusterBuilder::new(Source::BaseBackup {
            primary_port: self.port,
        })
        .with_bindir(self.bindir)
    }

    /// A streaming standby made by copying this cluster's data directory, for majors whose
    /// test build has no `pg_basebackup`. This cluster must be stopped while the standby is
    /// built (start it again afterwards).
    pub fn cold_standby(&self) -> PgClusterBuilder {
        let major = self.major().ok();
        let b = PgClusterBuilder::new(Source::ColdCopy {
            primary_port: self.port,
            primary_data: self.data.clone(),
        })
        .with_bindir(self.bindir);
        match major {
            Some(m) => b.major(m),
            None => b,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Where [`Self::copy_archive_command`] puts segments.
    pub fn archive_dir(&self) -> &Path {
        &self.archive
    }

    /// `pg_wal/archive_status`, where `<segment>.ready` files wait for the archiver.
    pub fn ready_dir(&self) -> PathBuf {
        self.data.join("pg_wal").join("archive_status")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole server log so far (across restarts), for assertion messages.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// libpq key/value DSN over the private unix socket, database `postgres`.
    pub fn dsn(&self) -> String {
        self.dsn_for("postgres")
    }

    pub fn dsn_for(&self, dbname: &str) -> String {
        let host = quote::conninfo(&self.sock.to_string_lossy());
        let dbname = quote::conninfo(dbname);
        format!(
            "host={host} port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// URL over TCP on 127.0.0.1, database `postgres` (for sqlx and the like).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            quote::url_segment(dbname)
        )
    }

    /// The builder's default archive command: copy into `archive_dir()`, never overwrite.
    pub fn copy_archive_command(&self) -> String {
        let dir = quote::shell(&self.archive.to_string_lossy());
        format!("test ! -f {dir}/%f && cp %p {dir}/%f")
    }

    /// `pg_basebackup` of this cluster into `target` (fast checkpoint, no sync), with `args`
    /// (e.g. `["-Ft", "-Z", "zstd", "-X", "stream"]`), from the tools of the cluster's major.
    pub fn base_backup(&self, target: &Path, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(self.client("pg_basebackup")?)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-w"])
            .args(["-c", "fast", "--no-sync"])
            .args(args)
            .arg("-D")
            .arg(target)
            .output()?;
        ensure!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Runs `sql` (any number of statements, each in its own transaction) in database `postgres`
    /// and returns stdout, trimmed: unaligned, tuples only, `|` between columns.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_in("postgres", sql)
    }

    pub fn psql_in(&self, dbname: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = self.psql_command(dbname).spawn().context("spawning psql")?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        let script = sql.to_owned();
        // Written from a thread: a large script and a large result would deadlock on full pipes.
        let writer = thread::spawn(move || stdin.write_all(script.as_bytes()));
        let output = child.wait_with_output().context("waiting for psql")?;
        // A failed write (broken pipe) matters only if psql failed, and then its stderr says why.
        let _ = writer.join();
        psql_result(sql, &output)
    }

    /// A psql session kept open in database `postgres`: statements written to it run as they
    /// arrive (a transaction left open across other work, say); [`Session::finish`] ends it.
    pub fn session(&self) -> anyhow::Result<Session> {
        let mut child = self
            .psql_command("postgres")
            .stdout(Stdio::null())
            .spawn()
            .context("spawning psql")?;
        let stdin = child.stdin.take().context("psql stdin")?;
        Ok(Session { child, stdin })
    }

    /// [`Self::psql`] without blocking the async runtime's thread.
    pub async fn psql_async(&self, sql: &str) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::from(self.psql_command("postgres"))
            .kill_on_drop(true) // `eventually` may abandon us at its deadline
            .spawn()
            .context("spawning psql")?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        let write = async move {
            let _ = stdin.write_all(sql.as_bytes()).await;
        };
        let (output, ()) = tokio::join!(child.wait_with_output(), write);
        psql_result(sql, &output.context("waiting for psql")?)
    }

    pub fn archiver_stats(&self) -> anyhow::Result<ArchiverStats> {
        parse_archiver_stats(&self.psql(ARCHIVER_STATS_SQL)?)
    }

    pub async fn archiver_stats_async(&self) -> anyhow::Result<ArchiverStats> {
        parse_archiver_stats(&self.psql_async(ARCHIVER_STATS_SQL).await?)
    }

    /// Writes a little WAL and switches segments; returns the name of the segment just
    /// completed, the one that now has a `.ready` file.
    pub fn switch_wal(&self) -> anyhow::Result<String> {
        // pg_switch_wal() does nothing when no WAL was written since the last switch, hence the
        // insert. It returns the boundary just past the completed segment, and pg_walfile_name()
        // maps a boundary to the segment before it.
        self.psql(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS backwatch_harness_wal (at timestamptz DEFAULT now());
             INSERT INTO backwatch_harness_wal DEFAULT VALUES;
             SELECT pg_walfile_name(pg_switch_wal());",
        )
    }

    /// [`switch_wal`](Self::switch_wal), then waits until `pg_stat_archiver` reports the
    /// completed segment archived; returns its name.
    pub async fn switch_wal_archived(&self, within: std::time::Duration) -> anyhow::Result<String> {
        let segment = self.switch_wal()?;
        super::wait::eventually(within, "the switched segment to be archived", async || {
            let s = self.archiver_stats_async().await?;
            ensure!(
                s.last_archived_wal.as_deref() == Some(segment.as_str()),
                "archiver at {:?}",
                s.last_archived_wal
            );
            Ok(())
        })
        .await;
        Ok(segment)
    }

    /// `ALTER SYSTEM SET <key> = <value>` and a config reload. The server processes apply the
    /// reload asynchronously: wait for its effect with `eventually`.
    pub fn alter_system(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        ensure!(
            !key.is_empty() && key.chars().all(name_char),
            "not a parameter name: {key:?}"
        );
        let value = quote::sql_literal(value);
        self.psql(&format!(
            "ALTER SYSTEM SET {key} = {value};\nSELECT pg_reload_conf();"
        ))?;
        Ok(())
    }

    /// The reload also wakes the archiver, which then retries pending segments at once.
    pub fn set_archive_command(&self, command: &str) -> anyhow::Result<()> {
        self.alter_system("archive_command", command)
    }

    pub fn create_database(&self, name: &str) -> anyhow::Result<()> {
        self.psql(&format!("CREATE DATABASE {}", quote::sql_ident(name)))?;
        Ok(())
    }

    /// A UTF-8 database whose text sorts by the operating system's `locale` (a glibc locale
    /// such as `en_US.UTF-8`, the default of many installations), not by the cluster's C.
    pub fn create_database_with_locale(&self, name: &str, locale: &str) -> anyhow::Result<()> {
        let locale = quote::sql_literal(locale);
        self.psql(&format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' \
             LC_COLLATE {locale} LC_CTYPE {locale}",
            quote::sql_ident(name)
        ))?;
        Ok(())
    }

    /// Starts the (stopped) server on its port and socket dir.
    pub fn start(&self) -> anyhow::Result<()> {
        self.start_with_env(&[])
    }

    /// Starts the (stopped) server with its wall clock `offset_secs` off (negative: behind),
    /// every process it forks included (see [`crate::harness::clock`]).
    pub fn start_with_clock_offset(&self, offset_secs: i64) -> anyhow::Result<()> {
        self.start_with_env(&crate::harness::clock::env(offset_secs)?)
    }

    fn start_with_env(&self, env: &[(String, String)]) -> anyhow::Result<()> {
        let sock = quote::shell(&self.sock.to_string_lossy()); // pg_ctl runs postgres via sh
        let opts = format!("-p {} -k {sock} -c listen_addresses=127.0.0.1", self.port);
        let mut pg_ctl = self.server_command("pg_ctl");
        pg_ctl
            .args(["start", "-w", "-s", "-t", PG_CTL_TIMEOUT_SECS, "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(opts)
            .envs(env.iter().map(|(k, v)| (k, v)));
        run(&mut pg_ctl, "pg_ctl start").map_err(|e| anyhow!("{e:#}\n{}", self.log_tail()))
    }

    /// Clean shutdown (`-m fast`): a checkpoint, and statistics such as `pg_stat_archiver` are
    /// saved and survive the next start.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Crash-like shutdown (`-m immediate`): recovery at next start, statistics reset.
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// [`Self::stop`] then [`Self::start`].
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start()
    }

    /// The postmaster's pid while the server runs (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let mut pg_ctl = self.server_command("pg_ctl");
        pg_ctl
            .args([
                "stop",
                "-w",
                "-s",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "-m",
                mode,
                "-D",
            ])
            .arg(&self.data);
        run(&mut pg_ctl, "pg_ctl stop")
    }

    /// A client program of the cluster's own major when its bindir has it, else the system's
    /// (the server-only builds of other majors carry no client tools).
    fn client(&self, program: &str) -> anyhow::Result<PathBuf> {
        let own = self.bindir.join(program);
        if own.is_file() {
            return Ok(own);
        }
        Ok(bindir()?.join(program))
    }

    /// The server's major version (`PG_VERSION` of its data directory).
    pub fn major(&self) -> anyhow::Result<u32> {
        let text = fs::read_to_string(self.data.join("PG_VERSION"))?;
        Ok(text.trim().parse()?)
    }

    /// A server-side program from the bindir, as the server user, in the temp dir.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.server_user {
            // std also drops root's supplementary groups when it sets the uid.
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // The inherited cwd and HOME (/root) are off limits to `postgres`.
        cmd.current_dir(self.tmp.path())
            .env("HOME", self.tmp.path());
        hermetic_env(&mut cmd);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn psql_command(&self, dbname: &str) -> Command {
        // psql of any newer major talks to older servers; the npm builds carry none.
        let psql = self
            .client("psql")
            .unwrap_or_else(|_| self.bindir.join("psql"));
        let mut cmd = Command::new(psql);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(self.dsn_for(dbname));
        hermetic_env(&mut cmd);
        // A wedged server must fail the attempt, not hang the test.
        cmd.env("PGCONNECT_TIMEOUT", "10");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- tail of {} ---\n{tail}\n---", self.log.display())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        let Some(pid) = self.postmaster_pid() else {
            return; // never started, or stopped by the test
        };
        if self.stop_immediate().is_err() {
            kill_postmaster(pid, &self.data);
        }
    }
}

fn parse_archiver_stats(json: &str) -> anyhow::Result<ArchiverStats> {
    serde_json::from_str(json).with_context(|| format!("parsing pg_stat_archiver row {json:?}"))
}

/// An open psql session (see [`PgCluster::session`]); dropped unfinished, its input closes and
/// psql ends (an open transaction rolls back).
pub struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl Session {
    /// Sends `sql` (complete statements) to the session; it runs as soon as psql reads it.
    pub fn send(&mut self, sql: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{sql}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Ends the session (its input closed) and says whether psql succeeded.
    pub fn finish(self) -> anyhow::Result<()> {
        let Session { child, stdin } = self;
        drop(stdin);
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "psql session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}
