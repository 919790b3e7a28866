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
//! - Server binaries come from `BACKWATCH_PG_BINDIR`, else the newest
//!   `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir`.
//! - Clusters are throwaway: no fsync anywhere, tiny shared memory, UTC, C locale.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::{fs, thread};

use anyhow::{Context as _, anyhow, bail, ensure};
use chrono::{DateTime, Utc};
use nix::unistd::{Gid, Uid, User};
use serde::Deserialize;
use tempfile::TempDir;

use super::wait::free_port;

/// Seconds pg_ctl waits for start/stop; generous because two cores may run several clusters.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// A unix socket path must fit in 107 bytes and PostgreSQL appends `/.s.PGSQL.<port>.lock`.
const MAX_SOCKET_DIR_LEN: usize = 85;
/// Start attempts on fresh ports when the one we picked was taken in the meantime.
const START_ATTEMPTS: usize = 3;
/// What the postmaster logs when it cannot bind its port.
const PORT_TAKEN: &str = "could not create any TCP/IP sockets";
/// Lines of server log printed when a test panics with a cluster alive.
const LOG_TAIL_LINES: usize = 40;

/// Written before the user's settings, so `setting()` can override any of them.
const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("shared_buffers", "16MB"),
    ("max_connections", "20"),
    // `standby()` needs both; they are the defaults, stated so a reader sees they are relied on.
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    // Timestamps in `pg_stat_archiver` parse the same way whatever the machine's zone is.
    ("timezone", "UTC"),
    ("log_timezone", "UTC"),
];

/// Builds a cluster; get one from [`PgCluster::init`] or [`PgCluster::standby`].
#[must_use = "a builder does nothing until `start()`"]
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    source: Source,
    archive_mode: String,
    archive_command: Option<String>,
    archive_timeout_secs: u64,
    settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Initdb,
    BaseBackup { primary_port: u16 },
}

/// A running (or stopped, by the test) PostgreSQL server that is stopped and deleted on drop.
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
    // Last field: dropped after `Drop::drop` has stopped the server that uses it.
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

const ARCHIVER_STATS_SQL: &str = "SELECT row_to_json(a) FROM pg_stat_archiver a";

// === impl PgClusterBuilder ===

impl PgClusterBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            archive_mode: "on".to_owned(),
            archive_command: None,
            archive_timeout_secs: 0,
            settings: Vec::new(),
        }
    }

    /// `archive_mode`: "on" (default), "off" or "always".
    pub fn archive_mode(mut self, mode: &str) -> Self {
        mode.clone_into(&mut self.archive_mode);
        self
    }

    /// `archive_command`; default: copy into [`PgCluster::archive_dir`], refusing to overwrite.
    pub fn archive_command(mut self, command: &str) -> Self {
        self.archive_command = Some(command.to_owned());
        self
    }

    /// `archive_timeout` in seconds; default 0 (never force a segment switch).
    pub fn archive_timeout_secs(mut self, secs: u64) -> Self {
        self.archive_timeout_secs = secs;
        self
    }

    /// Any other `postgresql.conf` parameter; the value is written quoted, which suits every type.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Creates the cluster (initdb, or pg_basebackup for a standby) and starts it.
    pub fn start(self) -> anyhow::Result<PgCluster> {
        let bindir = bindir()?;
        let server_user = server_user()?;
        let tmp = tempfile::Builder::new()
            .prefix("bw-pg-")
            .tempdir()
            .context("creating cluster temp dir")?;
        let root = tmp.path();
        let mut pg = PgCluster {
            data: root.join("data"),
            archive: root.join("archive"),
            sock: root.join("sock"),
            log: root.join("server.log"),
            port: 0,
            bindir,
            server_user,
            tmp,
        };
        ensure!(
            pg.sock.as_os_str().len() <= MAX_SOCKET_DIR_LEN,
            "socket dir {} is too long for a unix socket path: point TMPDIR somewhere shorter",
            pg.sock.display()
        );
        for dir in [&pg.archive, &pg.sock] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Some((uid, gid)) = server_user {
            // The server writes all three; initdb and pg_basebackup create `data/` themselves.
            for dir in [pg.tmp.path(), &pg.archive, &pg.sock] {
                nix::unistd::chown(dir, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to postgres", dir.display()))?;
            }
        }
        let conf = match self.source {
            Source::Initdb => {
                pg.initdb()?;
                pg.data.join("postgresql.conf")
            }
            Source::BaseBackup { primary_port } => {
                pg.base_backup(primary_port)?;
                // The copy carries the primary's settings, including any ALTER SYSTEM ones in
                // postgresql.auto.conf (which override postgresql.conf), pointing at the
                // primary's archive dir. Appending there is what `pg_basebackup -R` does too.
                pg.data.join("postgresql.auto.conf")
            }
        };
        append(&conf, &self.conf_block(&pg.copy_archive_command()))?;
        pg.start_on_free_port()?;
        Ok(pg)
    }

    fn conf_block(&self, default_archive_command: &str) -> String {
        let archive_command = self
            .archive_command
            .as_deref()
            .unwrap_or(default_archive_command);
        let timeout = self.archive_timeout_secs.to_string();
        let mut block = String::from("\n# backwatch test harness\n");
        let harness = [
            ("archive_mode", self.archive_mode.as_str()),
            ("archive_command", archive_command),
            ("archive_timeout", timeout.as_str()),
        ];
        let user = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in FAST_SETTINGS.iter().copied().chain(harness).chain(user) {
            block.push_str(&format!("{key} = {}\n", conf_quote(value)));
        }
        block
    }
}

// === impl PgCluster ===

impl PgCluster {
    /// A builder for a fresh cluster (`initdb -A trust -U postgres`).
    pub fn init() -> PgClusterBuilder {
        PgClusterBuilder::new(Source::Initdb)
    }

    /// A builder for a streaming standby of this (running) cluster, via `pg_basebackup -R`.
    pub fn standby(&self) -> PgClusterBuilder {
        PgClusterBuilder::new(Source::BaseBackup {
            primary_port: self.port,
        })
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

    /// Where the default archive command copies segments.
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
        let host = conninfo_quote(&self.sock.to_string_lossy());
        format!(
            "host={host} port={} user=postgres dbname={}",
            self.port,
            conninfo_quote(dbname)
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
            percent_encode(dbname)
        )
    }

    /// The archive command the builder uses by default: copy into `archive_dir()`, never overwrite.
    pub fn copy_archive_command(&self) -> String {
        let dir = shell_quote(&self.archive.to_string_lossy());
        format!("test ! -f {dir}/%f && cp %p {dir}/%f")
    }

    /// Runs `sql` (any number of statements, each in its own transaction) in database `postgres`
    /// and returns stdout, trimmed: unaligned, tuples only, `|` between columns.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_in("postgres", sql)
    }

    pub fn psql_in(&self, dbname: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = self.psql_command(dbname).spawn().context("spawning psql")?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        let sql_owned = sql.to_owned();
        // Written from a thread: a large script and a large result would otherwise deadlock
        // on full pipes.
        let writer = thread::spawn(move || stdin.write_all(sql_owned.as_bytes()));
        let output = child.wait_with_output().context("waiting for psql")?;
        // A write error (broken pipe) only matters if psql failed too, and then its stderr says why.
        let _ = writer.join();
        psql_result(sql, &output)
    }

    /// [`Self::psql`] without blocking the async runtime's thread.
    pub async fn psql_async(&self, sql: &str) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::from(self.psql_command("postgres"))
            .kill_on_drop(true)
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
    /// completed, i.e. the one that now has a `.ready` file.
    pub fn switch_wal(&self) -> anyhow::Result<String> {
        // pg_switch_wal() is a no-op when nothing was written since the last switch, hence the
        // insert. pg_walfile_name() maps the returned boundary LSN to the segment before it.
        self.psql(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS backwatch_harness_wal (at timestamptz DEFAULT now());
             INSERT INTO backwatch_harness_wal DEFAULT VALUES;
             SELECT pg_walfile_name(pg_switch_wal());",
        )
    }

    /// `ALTER SYSTEM SET <key> = <value>` and a config reload. The reload is asynchronous:
    /// wait for its effect with `eventually`.
    pub fn alter_system(&self, key: &str, value: &str) -> anyhow::Result<()> {
        ensure!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
            "not a parameter name: {key:?}"
        );
        self.psql(&format!(
            "ALTER SYSTEM SET {key} = {};\nSELECT pg_reload_conf();",
            sql_literal(value)
        ))?;
        Ok(())
    }

    /// A reload also wakes the archiver, which then retries pending segments right away.
    pub fn set_archive_command(&self, command: &str) -> anyhow::Result<()> {
        self.alter_system("archive_command", command)
    }

    pub fn create_database(&self, name: &str) -> anyhow::Result<()> {
        self.psql(&format!("CREATE DATABASE {}", sql_ident(name)))?;
        Ok(())
    }

    /// Starts a stopped server again on the same port and socket dir.
    pub fn start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            shell_quote(&self.sock.to_string_lossy())
        );
        let mut pg_ctl = self.server_command("pg_ctl");
        pg_ctl
            .args(["start", "-w", "-s", "-t", PG_CTL_TIMEOUT_SECS, "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(opts);
        run(&mut pg_ctl, "pg_ctl start").map_err(|e| {
            anyhow!(
                "{e:#}\n--- tail of {} ---\n{}",
                self.log.display(),
                self.log_tail()
            )
        })
    }

    /// Clean shutdown (`-m fast`): checkpoint, and statistics such as `pg_stat_archiver` are
    /// saved to disk and survive the next start.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Crash-like shutdown (`-m immediate`): no checkpoint, statistics are reset at next start.
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start()
    }

    /// The postmaster's pid while the server runs (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn start_on_free_port(&mut self) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            self.port = free_port();
            let log_before = fs::metadata(&self.log).map_or(0, |m| m.len());
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt < START_ATTEMPTS
                        && self.log_since(log_before).contains(PORT_TAKEN) =>
                {
                    attempt += 1;
                    drop(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let mut initdb = self.server_command("initdb");
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
            ])
            .args(["--locale=C", "-D"])
            .arg(&self.data);
        run(&mut initdb, "initdb")?;
        // Current initdb already writes this line; a standby's pg_basebackup connects over TCP
        // and needs it, so make sure rather than depend on the template.
        let hba = self.data.join("pg_hba.conf");
        let text =
            fs::read_to_string(&hba).with_context(|| format!("reading {}", hba.display()))?;
        let wanted = ["host", "replication", "all", "127.0.0.1/32", "trust"];
        if !text.lines().any(|line| line.split_whitespace().eq(wanted)) {
            append(&hba, &format!("{}\n", wanted.join(" ")))?;
        }
        Ok(())
    }

    fn base_backup(&self, primary_port: u16) -> anyhow::Result<()> {
        let mut backup = self.server_command("pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-w",
            ])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-D"])
            .arg(&self.data);
        run(&mut backup, "pg_basebackup")
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

    /// A server-side program from the bindir, as the server user, in the temp dir.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.server_user {
            // std also drops root's supplementary groups when it sets the uid.
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // The inherited cwd and HOME (/root) are unreadable for `postgres`.
        cmd.current_dir(self.tmp.path())
            .env("HOME", self.tmp.path());
        hermetic_env(&mut cmd);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn psql_command(&self, dbname: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join("psql"));
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
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- tail of {} ---\n{}\n---",
                self.log.display(),
                self.log_tail()
            );
        }
        let Some(pid) = self.postmaster_pid() else {
            return; // never started, or stopped by the test
        };
        if self.stop_immediate().is_err() {
            kill_postmaster(pid, &self.data);
        }
    }
}

// === helpers ===

/// The PostgreSQL server binary directory (see the module docs for the search order).
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
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "BACKWATCH_PG_BINDIR={}: no initdb there",
                dir.display()
            ))
        };
    }
    // Debian/Ubuntu keep each major version side by side; pg_config there may belong to the
    // client package and name a version without server binaries.
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
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_initdb(&dir) {
                Ok(dir)
            } else {
                Err(format!(
                    "pg_config --bindir names {}, which has no initdb",
                    dir.display()
                ))
            }
        }
        _ => Err(
            "no PostgreSQL server binaries: set BACKWATCH_PG_BINDIR, or install a server \
                  under /usr/lib/postgresql/<major>/bin or with pg_config on PATH"
                .to_owned(),
        ),
    }
}

fn server_user() -> anyhow::Result<Option<(Uid, Gid)>> {
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

/// Environment that would steer libpq or the server elsewhere (PGPORT=5432, a service file).
fn hermetic_env(cmd: &mut Command) {
    for var in [
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
    ] {
        cmd.env_remove(var);
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {what} ({})", cmd.get_program().display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn psql_result(sql: &str, out: &Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "psql failed ({}) running {sql:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn parse_archiver_stats(json: &str) -> anyhow::Result<ArchiverStats> {
    serde_json::from_str(json).with_context(|| format!("parsing pg_stat_archiver row {json:?}"))
}

/// Stops a postmaster that pg_ctl could not: SIGQUIT is PostgreSQL's immediate shutdown,
/// SIGKILL the last resort (its children notice the postmaster is gone and exit).
fn kill_postmaster(pid: i32, data: &Path) {
    use nix::sys::signal::{Signal, kill};
    let pid_t = nix::unistd::Pid::from_raw(pid);
    for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
        if !postmaster_alive(pid, data) {
            return;
        }
        let _ = kill(pid_t, signal);
        for _ in 0..50 {
            if !postmaster_alive(pid, data) {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Whether `pid` is still a live postmaster of `data`. A postmaster runs with its data dir as
/// cwd; checking that keeps us from signalling an unrelated process that reused a stale pid.
/// A zombie (nobody reaps orphans in some containers) has no cwd and counts as gone.
fn postmaster_alive(pid: i32, data: &Path) -> bool {
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    let data = fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    cwd.is_ok_and(|cwd| cwd == data)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    // Appending keeps the file's owner (postgres) even when we write as root.
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A postgresql.conf string value: quotes doubled, and backslashes escaped because the config
/// file parser treats them as escapes.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// An SQL string literal (standard_conforming_strings is on by default since 9.1).
fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// For `pg_ctl -o` and archive commands, both of which go through `/bin/sh`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn conninfo_quote(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
