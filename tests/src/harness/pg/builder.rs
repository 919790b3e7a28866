//! Creating a cluster: a fresh one with initdb, or a standby with pg_basebackup, then the
//! harness's settings and a first start on a free port.
//!
//! Invariants: the harness's settings are appended after everything initdb or pg_basebackup
//! wrote, and the user's `setting()`s after the harness's, so the last word is the test's.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, ensure};

use super::process::{bindir, major_bindir, run, server_user};
use super::{PgCluster, quote};
use crate::harness::wait::free_port;

/// A unix socket path must fit in 107 bytes and PostgreSQL appends `/.s.PGSQL.<port>` (up to
/// 15 more).
const MAX_SOCKET_DIR_LEN: usize = 90;
/// Start attempts on fresh ports when the one we picked was taken in the meantime.
const START_ATTEMPTS: usize = 3;
/// What the postmaster logs when it cannot bind its port.
const PORT_TAKEN: &str = "could not create any TCP/IP sockets";

/// Written before the user's settings, so `setting()` can override any of them.
const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("shared_buffers", "16MB"),
    ("max_connections", "20"),
    // `standby()` relies on both; they are the defaults, stated so that stays visible.
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    // Timestamps in `pg_stat_archiver` come out the same whatever the machine's zone.
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
    wal_segsize_mb: Option<u32>,
    data_checksums: bool,
    major: Option<u32>,
    /// The primary's binaries, for a standby (its pg_basebackup must be of the same major).
    bindir: Option<&'static Path>,
}

#[derive(Debug, Clone)]
pub(super) enum Source {
    Initdb,
    BaseBackup {
        primary_port: u16,
    },
    /// A copy of a stopped primary's data directory: a standby for majors whose test build
    /// has no `pg_basebackup` (the npm server builds).
    ColdCopy {
        primary_port: u16,
        primary_data: std::path::PathBuf,
    },
}

impl PgClusterBuilder {
    pub(super) fn new(source: Source) -> Self {
        Self {
            source,
            archive_mode: "on".to_owned(),
            archive_command: None,
            archive_timeout_secs: 0,
            settings: Vec::new(),
            wal_segsize_mb: None,
            data_checksums: false,
            major: None,
            bindir: None,
        }
    }

    pub(super) fn with_bindir(mut self, bindir: &'static Path) -> Self {
        self.bindir = Some(bindir);
        self
    }

    /// Run PostgreSQL `major` from `target/pg/<major>` (see `scripts/install-pg-majors`)
    /// instead of the system's newest server.
    pub fn major(mut self, major: u32) -> Self {
        self.major = Some(major);
        self
    }

    /// `initdb --wal-segsize` in MiB (a power of two, 1 to 1024): 1 keeps archives of many
    /// segments small. Ignored for a standby, which has its primary's.
    pub fn wal_segment_size_mb(mut self, mb: u32) -> Self {
        self.wal_segsize_mb = Some(mb);
        self
    }

    /// `initdb --data-checksums` (the default from PostgreSQL 18 on): pages carry checksums
    /// that backup tools verify as they copy.
    pub fn data_checksums(mut self) -> Self {
        self.data_checksums = true;
        self
    }

    /// `archive_mode`: "on" (default), "off" or "always".
    pub fn archive_mode(mut self, mode: &str) -> Self {
        mode.clone_into(&mut self.archive_mode);
        self
    }

    /// `archive_command`; default: [`PgCluster::copy_archive_command`].
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
        let bindir = match (self.bindir, self.major) {
            (Some(b), _) => b,
            (None, Some(m)) => major_bindir(m)?,
            (None, None) => bindir()?,
        };
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
            // The server writes in all three; initdb and pg_basebackup create `data/` themselves.
            for dir in [pg.tmp.path(), &pg.archive, &pg.sock] {
                nix::unistd::chown(dir, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to postgres", dir.display()))?;
            }
        }
        let conf = match &self.source {
            Source::Initdb => {
                initdb(&pg, self.wal_segsize_mb, self.data_checksums, self.major)?;
                pg.data.join("postgresql.conf")
            }
            Source::ColdCopy {
                primary_port,
                primary_data,
            } => {
                cold_copy(&pg, primary_data, *primary_port, self.major)?;
                pg.data.join("postgresql.auto.conf")
            }
            Source::BaseBackup { primary_port } => {
                base_backup(&pg, *primary_port)?;
                // The copy carries the primary's settings, including ALTER SYSTEM ones in
                // postgresql.auto.conf (which beat postgresql.conf) that point at the primary's
                // archive dir. Appending there is what `pg_basebackup -R` does too.
                pg.data.join("postgresql.auto.conf")
            }
        };
        append(&conf, &self.conf_block(&pg.copy_archive_command()))?;
        start_on_free_port(&mut pg)?;
        Ok(pg)
    }

    fn conf_block(&self, default_archive_command: &str) -> String {
        let archive_command = self
            .archive_command
            .as_deref()
            .unwrap_or(default_archive_command);
        let timeout = self.archive_timeout_secs.to_string();
        let harness = [
            ("archive_mode", self.archive_mode.as_str()),
            ("archive_command", archive_command),
            ("archive_timeout", timeout.as_str()),
        ];
        let user = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let lines = FAST_SETTINGS.iter().copied().chain(harness).chain(user);
        let lines: Vec<String> = lines
            .map(|(k, v)| format!("{k} = {}\n", quote::conf(v)))
            .collect();
        format!("\n# backwatch test harness\n{}", lines.concat())
    }
}

fn initdb(
    pg: &PgCluster,
    wal_segsize_mb: Option<u32>,
    data_checksums: bool,
    major: Option<u32>,
) -> anyhow::Result<()> {
    let mut initdb = pg.server_command("initdb");
    initdb
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync");
    // --no-instructions came with 14, --wal-segsize with 11.
    if major.is_none_or(|m| m >= 14) {
        initdb.arg("--no-instructions");
    }
    if let Some(mb) = wal_segsize_mb {
        ensure!(
            major.is_none_or(|m| m >= 11),
            "PostgreSQL 10 sets the WAL segment size at build time only"
        );
        initdb.arg(format!("--wal-segsize={mb}"));
    }
    if data_checksums {
        initdb.arg("--data-checksums");
    }
    initdb.arg("-D").arg(&pg.data);
    run(&mut initdb, "initdb")?;
    // initdb's template has this line today; pg_basebackup for `standby()` connects over TCP and
    // needs it, so make sure of it rather than depend on the template.
    let hba = pg.data.join("pg_hba.conf");
    let text = fs::read_to_string(&hba).with_context(|| format!("reading {}", hba.display()))?;
    let wanted = ["host", "replication", "all", "127.0.0.1/32", "trust"];
    if !text.lines().any(|line| line.split_whitespace().eq(wanted)) {
        append(&hba, &format!("{}\n", wanted.join(" ")))?;
    }
    Ok(())
}

fn base_backup(pg: &PgCluster, primary_port: u16) -> anyhow::Result<()> {
    let mut backup = pg.server_command("pg_basebackup");
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
        .arg(&pg.data);
    run(&mut backup, "pg_basebackup")
}

/// Copy a stopped primary's data directory (ownership kept) and make it a streaming standby
/// of the primary on `primary_port`: `standby.signal` and `primary_conninfo` from 12 on,
/// `recovery.conf` with `standby_mode` before.
fn cold_copy(
    pg: &PgCluster,
    primary: &Path,
    primary_port: u16,
    major: Option<u32>,
) -> anyhow::Result<()> {
    ensure!(
        !primary.join("postmaster.pid").exists(),
        "cold copy of {}: stop the primary first",
        primary.display()
    );
    run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(primary)
            .arg(&pg.data),
        "cp -a of the primary's data directory",
    )?;
    let conninfo = format!("host=127.0.0.1 port={primary_port} user=postgres");
    let line = format!("primary_conninfo = {}\n", quote::conf(&conninfo));
    if major.is_some_and(|m| m < 12) {
        let recovery = pg.data.join("recovery.conf");
        fs::write(&recovery, format!("standby_mode = 'on'\n{line}"))?;
        if let Some((uid, gid)) = pg.server_user {
            nix::unistd::chown(&recovery, Some(uid), Some(gid))?;
        }
    } else {
        let signal = pg.data.join("standby.signal");
        fs::write(&signal, "")?;
        if let Some((uid, gid)) = pg.server_user {
            nix::unistd::chown(&signal, Some(uid), Some(gid))?;
        }
        append(&pg.data.join("postgresql.auto.conf"), &line)?;
    }
    Ok(())
}

/// The port is picked, then released, then bound by the postmaster: another process can take
/// it in between, so a start that failed for that reason is retried on a new port.
fn start_on_free_port(pg: &mut PgCluster) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        pg.port = free_port();
        let log_before = fs::metadata(&pg.log).map_or(0, |m| m.len());
        match pg.start() {
            Err(_)
                if attempt < START_ATTEMPTS
                    && log_since(&pg.log, log_before).contains(PORT_TAKEN) =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn log_since(log: &Path, offset: u64) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
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
