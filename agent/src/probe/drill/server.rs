//! The scratch server of a drill: its directory, settings, start, wait, and removal.
//!
//! [`Scratch`] owns the subdirectory from the moment it exists: [`Scratch::cleanup`] (or its
//! `Drop`, when the drill's future is dropped by an agent stop) stops the server and removes
//! the directory. Only a postmaster whose working directory is our data directory is ever
//! signalled (PostgreSQL changes into its data directory at start), so a pid reused by
//! another process after a crash is left alone.

use super::settings::{self, PORT};
use super::{DrillProbe, SCRATCH_PREFIX, cleanup};
use crate::probe::archive_dir::names::{self, WalFile};
use crate::probe::backup_dir::os_text;
use backwatch_common::error::chain;
use backwatch_proto::model::DrillObs;
use chrono::{DateTime, Utc};
use nix::sys::signal::kill;
use nix::unistd::{Gid, Pid, Uid, User};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tracing::warn;

/// Server log lines kept when a drill fails.
const LOG_LINES: usize = 5;
/// How often recovery's end is polled.
const POLL: Duration = Duration::from_millis(200);
/// Failed connections to a server that says it is ready before the drill gives up (5 s).
const READY_REFUSALS: u32 = 25;

pub struct Scratch {
    dir: PathBuf,
    user: Option<(Uid, Gid)>,
    bindir: Option<PathBuf>,
    /// Segment (log and seg number as 16 hex digits) replay ended in, and the segment size.
    replay: Option<String>,
    /// The newest archived segment and when it was stored, for a source whose archive is not
    /// a directory to list (pgBackRest).
    archive_end: Option<super::pgbackrest::ArchiveEnd>,
    /// An archive directory's newest segment and its time when recovery ended (see
    /// [`Scratch::mark_archive_end`]).
    archive_at_end: Option<(String, DateTime<Utc>)>,
    done: bool,
}

/// What the promoted server says about its recovery.
pub struct ServerFacts {
    pub recovered_at: Option<DateTime<Utc>>,
    pub replay_lsn: Option<String>,
    pub segment_bytes: Option<u64>,
    /// pg_control_system().system_identifier: the cluster the drill restored.
    pub system_identifier: Option<String>,
}

impl ServerFacts {
    /// The 16 hex digits after the timeline in the name of the segment holding the replay
    /// location, comparable with archived names.
    pub fn replay_segment(&self) -> Option<String> {
        let lsn = backwatch_proto::model::parse_lsn(self.replay_lsn.as_deref()?)?;
        let size = self.segment_bytes.filter(|s| *s > 0)?;
        // The timeline (first 8 digits) is left out: it does not order positions.
        let name = names::SegName::from_segno(0, lsn / size, size).name();
        Some(name[8..].to_string())
    }
}

/// What runs a backup tool as `run_as` when the agent is root (`runuser -u postgres --`), so
/// the tool's own files (pgBackRest's locks and logs) keep their usual owner; nothing else.
pub fn tool_prefix(run_as: Option<&str>) -> Vec<String> {
    if !Uid::effective().is_root() {
        return Vec::new();
    }
    let name = run_as.unwrap_or("postgres");
    ["runuser", "-u", name, "--"].map(String::from).to_vec()
}

fn resolve_user(run_as: Option<&str>) -> Result<Option<(Uid, Gid)>, String> {
    let name = match run_as {
        Some(n) => n,
        // PostgreSQL refuses to run as root.
        None if Uid::effective().is_root() => "postgres",
        None => return Ok(None),
    };
    match User::from_name(name) {
        Ok(Some(u)) => Ok(Some((u.uid, u.gid))),
        Ok(None) => Err(format!(
            "no OS user {name:?} to run the scratch server as (set run_as)"
        )),
        Err(e) => Err(format!("looking up OS user {name:?}: {e}")),
    }
}

/// The longest socket path the kernel accepts (`sun_path` holds 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The scratch directory of drill `name` started `at`: `backwatch-drill-<name>-<time>`.
fn scratch_name(name: &str, at: DateTime<Utc>) -> String {
    format!("{SCRATCH_PREFIX}{name}-{}", at.format("%Y%m%dT%H%M%S%.3f"))
}

/// How long the scratch server's socket path is for a drill `name` in `scratch_dir` (the
/// timestamp in the directory's name is of fixed width).
pub fn socket_path_len(scratch_dir: &Path, name: &str) -> usize {
    sock_of(&scratch_dir.join(scratch_name(name, Utc::now())))
        .join(format!(".s.PGSQL.{}", super::settings::PORT))
        .as_os_str()
        .len()
}

/// The socket directory of the scratch server in scratch directory `dir`.
fn sock_of(dir: &Path) -> PathBuf {
    dir.join("sock")
}

/// The system identifier in a data directory's `global/pg_control`: its first field, a 64-bit
/// integer in the byte order of the machine that wrote it (the same architecture as this one,
/// for a backup restored here). Read before the server starts, so that a drill that fails
/// still names the cluster it was proving.
pub fn control_system_identifier(data: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut first = [0u8; 8];
    std::fs::File::open(data.join("global").join("pg_control"))
        .ok()?
        .read_exact(&mut first)
        .ok()?;
    let id = u64::from_ne_bytes(first);
    (id != 0).then(|| id.to_string())
}

impl Scratch {
    pub fn create(scratch_dir: &Path, name: &str, run_as: Option<&str>) -> Result<Scratch, String> {
        let user = resolve_user(run_as)?;
        let dir = scratch_dir.join(scratch_name(name, Utc::now()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {}", dir.display(), os_text(&e)))?;
        if let Some((uid, gid)) = user {
            nix::unistd::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        Ok(Scratch {
            dir,
            user,
            bindir: None,
            replay: None,
            archive_end: None,
            archive_at_end: None,
            done: false,
        })
    }

    /// Owner of the scratch server's files (`None`: the agent's own user).
    pub fn owner(&self) -> Option<(Uid, Gid)> {
        self.user
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// The PostgreSQL binaries the server runs with, once [`Scratch::prepare`] chose them.
    pub fn bindir(&self) -> Option<&Path> {
        self.bindir.as_deref()
    }
    pub(super) fn sock(&self) -> PathBuf {
        sock_of(&self.dir)
    }
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    pub(super) fn fetched(&self) -> PathBuf {
        self.dir.join("restore_command.log")
    }

    pub fn set_archive_end(&mut self, end: super::pgbackrest::ArchiveEnd) {
        self.archive_end = Some(end);
    }

    pub fn set_replay(&mut self, segment: Option<String>) {
        self.replay = segment;
    }

    /// After the files are in place: binaries, settings, ownership. Returns the bindir.
    pub async fn prepare(&mut self, p: &DrillProbe, obs: &mut DrillObs) -> Result<PathBuf, String> {
        let data = self.data();
        // A tablespace is a link (pg_tblspc/<oid>, or a line of tablespace_map that the server
        // turns into one at start) to a directory outside the scratch: the scratch server
        // would write there, perhaps into the backup or the live cluster. Not started, unless
        // the link stays inside the scratch (pgBackRest's --tablespace-map-all does that).
        let links: Vec<String> = std::fs::read_dir(data.join("pg_tblspc"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| std::fs::read_link(e.path()).map_or(true, |to| !to.starts_with(&self.dir)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // A tar backup carries a tablespace_map, empty when there is no tablespace.
        let mapped = std::fs::read_to_string(data.join("tablespace_map"))
            .is_ok_and(|m| !m.trim().is_empty());
        if !links.is_empty() || mapped {
            return Err(format!(
                "the backup has tablespaces ({}): a drill restores only backups without them, \
                 since the scratch server would write where a tablespace link points",
                if links.is_empty() {
                    "tablespace_map".to_string()
                } else {
                    format!("pg_tblspc/{}", links.join(", pg_tblspc/"))
                }
            ));
        }
        let version = std::fs::read_to_string(data.join("PG_VERSION")).map_err(|e| {
            format!(
                "the restored backup has no readable PG_VERSION: {}",
                os_text(&e)
            )
        })?;
        let major = version.trim().to_string();
        obs.pg_version = Some(major.clone());
        let n: u32 = major
            .parse()
            .map_err(|_| format!("PG_VERSION {major:?} is not a major version"))?;
        if n < 12 {
            return Err(format!(
                "PostgreSQL {major} recovers from recovery.conf; drills need 12 or later (recovery.signal)"
            ));
        }
        let bindir = match &p.pg_bindir {
            Some(b) => b.clone(),
            None => crate::probe::restore::major_bindir(&p.pg_roots, n, "pg_ctl").ok_or_else(
                || {
                    let roots: Vec<String> =
                        p.pg_roots.iter().map(|r| r.display().to_string()).collect();
                    format!(
                        "PostgreSQL {major} binaries not found: no {major}/bin/pg_ctl or pgsql-{major}/bin/pg_ctl under {} (install the PostgreSQL {major} server package, or set pg_roots or pg_bindir)",
                        roots.join(", ")
                    )
                },
            )?,
        };
        obs.bindir = Some(bindir.display().to_string());
        if !bindir.join("pg_ctl").is_file() {
            return Err(format!(
                "PostgreSQL {major} binaries not found: no pg_ctl in {} (install the PostgreSQL {major} server package or set pg_bindir)",
                bindir.display()
            ));
        }
        self.bindir = Some(bindir.clone());
        let what = format!("writing the settings in {}", data.display());
        let settings = settings::block(p, self, obs);
        let (dir, user, sock, fetched) = (self.dir.clone(), self.user, self.sock(), self.fetched());
        let bytes = crate::blocking::run(&what, move || -> Result<u64, String> {
            settings::write(&dir.join("data"), &sock, &fetched, &settings)?;
            if let Some((uid, gid)) = user {
                settings::chown_tree(&dir, uid, gid)?;
            }
            Ok(super::backup::tree_bytes(&dir.join("data")))
        })
        .await
        .and_then(|r| r)?;
        obs.bytes_restored = bytes;
        Ok(bindir)
    }

    /// Start the server and wait until recovery ended and it answers as a primary.
    pub async fn start_and_wait(
        &mut self,
        bindir: &Path,
        limit: &[String],
        p: &DrillProbe,
    ) -> Result<ServerFacts, String> {
        let mut argv: Vec<String> = limit.to_vec();
        argv.push(bindir.join("pg_ctl").display().to_string());
        argv.extend(["start", "-W", "-s", "-D"].map(String::from));
        argv.push(self.data().display().to_string());
        argv.push("-l".into());
        argv.push(self.log().display().to_string());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("running pg_ctl: {}", os_text(&e)))?;
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("waiting for pg_ctl: {}", os_text(&e)))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let started = Instant::now();
        let mut seen = false;
        // A ready server that keeps refusing us (no role `user`, no database) will not change
        // its mind: say so after a few seconds rather than wait for the drill's timeout.
        let mut refused = 0;
        loop {
            tokio::time::sleep(POLL).await;
            match self.postmaster_pid() {
                Some(pid) if kill(pid, None).is_err() => {
                    return Err("the server stopped during recovery".into());
                }
                Some(_) => seen = true,
                // postmaster.pid is gone again when the server stopped (a FATAL at start or
                // at the end of recovery).
                None if seen || self.log_has_fatal() => {
                    return Err(if seen {
                        "the server stopped during recovery".into()
                    } else {
                        "the server did not start".into()
                    });
                }
                None if started.elapsed() > Duration::from_secs(30) => {
                    return Err("the server did not start (no postmaster.pid after 30 s)".into());
                }
                None => continue,
            }
            // pg_ctl's own test: the postmaster writes "ready" once it accepts connections,
            // which with hot_standby = off is after recovery ended. Connecting earlier would
            // only fill the log with "the database system is starting up".
            if self.postmaster_status().as_deref() != Some("ready") {
                continue;
            }
            let client = match self.connect(p).await {
                Ok(c) => c,
                Err(e) if refused >= READY_REFUSALS => {
                    return Err(format!("the promoted server refuses the drill: {e}"));
                }
                Err(_) => {
                    refused += 1;
                    continue;
                }
            };
            let Ok(row) = client
                .query_one(
                    "select pg_is_in_recovery(), \
                     (extract(epoch from pg_last_xact_replay_timestamp()) * 1e6)::int8, \
                     pg_last_wal_replay_lsn()::text, \
                     (select setting::bigint from pg_settings where name = 'wal_segment_size'), \
                     (select system_identifier::text from pg_control_system())",
                    &[],
                )
                .await
            else {
                continue;
            };
            let in_recovery: bool = row.get(0);
            if in_recovery {
                continue;
            }
            return Ok(ServerFacts {
                recovered_at: row
                    .get::<_, Option<i64>>(1)
                    .and_then(DateTime::from_timestamp_micros),
                replay_lsn: row.get(2),
                segment_bytes: row.get::<_, Option<i64>>(3).map(|s| s as u64),
                system_identifier: row.get(4),
            });
        }
    }

    pub async fn connect(&self, p: &DrillProbe) -> Result<Session, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(self.sock())
            .port(PORT)
            .user(&p.user)
            .dbname(&p.database)
            .application_name("backwatch-drill")
            .connect_timeout(Duration::from_secs(5));
        let (client, conn) = tokio::time::timeout(Duration::from_secs(10), cfg.connect(NoTls))
            .await
            .map_err(|_| "timed out connecting to the scratch server".to_string())?
            .map_err(|e| format!("cannot connect to the scratch server: {}", chain(&e)))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Session { client, task })
    }

    fn postmaster_pid(&self) -> Option<Pid> {
        cleanup::postmaster_of(&self.data())
    }

    /// Line 8 of postmaster.pid: "starting", "stopping", "ready" or "standby".
    fn postmaster_status(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().nth(7).map(|l| l.trim().to_string())
    }

    fn log_has_fatal(&self) -> bool {
        !self.log_errors().is_empty()
    }

    /// The server log's last FATAL/PANIC/ERROR lines.
    pub fn log_errors(&self) -> Vec<String> {
        let text = std::fs::read(self.log()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("FATAL:") || l.contains("PANIC:") || l.contains("ERROR:"))
            // Refused connections while recovering say nothing about the backup.
            .filter(|l| !l.contains("the database system is") && !l.contains("not yet accepting"))
            .map(|l| l.trim().to_string())
            .collect();
        let skip = lines.len().saturating_sub(LOG_LINES);
        lines.drain(..skip);
        lines
    }

    /// Note the archive directory's end now, when recovery has ended: a busy server archives
    /// on while the drill runs its smoke checks and `pg_amcheck`, and what it stores meanwhile
    /// is neither a gap recovery met nor an end the drill fell short of. Read on this host's
    /// own sense of order (the listing), not by comparing its clock with the storage's.
    pub fn mark_archive_end(&mut self, archive: Option<&Path>) {
        if self.archive_end.is_none() {
            self.archive_at_end = archive.and_then(newest_segment);
        }
    }

    /// The archive's end as the drill judges it: a repository's, else the directory's when
    /// recovery ended, else now.
    fn archive_tail(&self, archive: Option<&Path>) -> Option<(String, DateTime<Utc>)> {
        // A repository's end whose storing time is unknown is taken as now: replay that did
        // not reach it is then short by the whole time since the recovered point.
        match &self.archive_end {
            Some((name, at)) => Some((name.clone(), at.unwrap_or_else(Utc::now))),
            None => self
                .archive_at_end
                .clone()
                .or_else(|| archive.and_then(newest_segment)),
        }
    }

    /// PostgreSQL 13 and later stop with "recovery ended before configured recovery target
    /// was reached" when recovery ran out of WAL before a commit after an offset target: on
    /// a server idle since before the target that is everything, not a failure. When
    /// recovery asked for nothing below the archive's end (no gap), the target is cleared
    /// (see [`Scratch::clear_target`]) and the server started again: it replays nothing more
    /// and promotes at the end of the archive, which is then what the drill proves. An idle
    /// server archives nothing for hours (PostgreSQL switches no segment without WAL), so the
    /// archive's age says nothing here; an archive that stopped while the server went on
    /// writing is the WAL check's finding (data at risk, WAL waiting). False: another
    /// failure, or a gap.
    pub fn past_the_last_commit(&self, obs: &DrillObs, archive: Option<&Path>) -> bool {
        let refused = self
            .log_errors()
            .iter()
            .any(|l| l.contains("recovery ended before configured recovery target was reached"));
        if obs.target_time.is_none() || !refused {
            return false;
        }
        let mut seen = obs.clone();
        self.analyse(&mut seen, archive);
        seen.archive_newest_segment.is_some() && seen.missing_segment.is_none()
    }

    /// Clear the recovery target (the last word in postgresql.auto.conf) and set the failed
    /// start's log aside, for a start that recovers to the end of the archive.
    pub fn clear_target(&self) -> Result<(), String> {
        let auto = self.data().join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&auto)
            .map_err(|e| format!("opening {}: {}", auto.display(), os_text(&e)))?;
        use std::io::Write as _;
        f.write_all(
            b"\n# backwatch drill: no transaction after the target\nrecovery_target_time = ''\n",
        )
        .map_err(|e| format!("writing {}: {}", auto.display(), os_text(&e)))?;
        let log = self.log();
        std::fs::rename(&log, log.with_extension("log.1"))
            .map_err(|e| format!("renaming {}: {}", log.display(), os_text(&e)))
    }

    /// What restore_command fetched and missed, against the archive's newest segment.
    pub fn analyse(&self, obs: &mut DrillObs, archive: Option<&Path>) {
        let log = std::fs::read_to_string(self.fetched()).unwrap_or_default();
        let seg = |w: &str| w.len() == 24 && w.bytes().all(|b| b.is_ascii_hexdigit());
        let mut missing = Vec::new();
        // Positions (the name after its timeline) restored from some timeline: recovery asks
        // for a position on each timeline of its history, newest first, so a name missing on
        // one timeline and restored on an older one is not a gap.
        let mut restored = std::collections::HashSet::new();
        for line in log.lines() {
            match line.split_once(' ') {
                Some(("restored", f)) if seg(f) => {
                    obs.wal_segments_restored += 1;
                    restored.insert(f[8..].to_string());
                }
                Some(("missing", f)) if seg(f) => missing.push(f.to_string()),
                _ => {}
            }
        }
        let newest = self.archive_tail(archive);
        // A segment recovery asked for in vain that the archive holds now was on its way
        // then (a busy server archives on while the server promotes): not a gap, and replay
        // that stopped before it reached the archive's end as it was.
        let arrived = |m: &str| archive.is_some_and(|a| in_archive_now(a, m));
        if let Some((name, mtime)) = &newest {
            obs.archive_newest_segment = Some(name.clone());
            let tail = &name[8..];
            // Asked for, absent, and the archive holds later ones: a gap, not the end.
            obs.missing_segment = missing
                .iter()
                .find(|m| &m[8..] < tail && !restored.contains(&m[8..]) && !arrived(m))
                .cloned();
            // The first position recovery asked for after the one it ended in.
            let next_asked = self.replay.as_deref().and_then(|r| {
                missing
                    .iter()
                    .filter(|m| &m[8..] > r)
                    .min_by(|a, b| a[8..].cmp(&b[8..]))
            });
            obs.archive_end_reached = self.replay.as_deref().is_some_and(|r| r >= tail)
                || next_asked.is_some_and(|m| arrived(m));
            let reference = obs.target_time.unwrap_or(*mtime);
            // No transaction replayed (a server idle since the backup): the point reached is
            // about when the segment replay ended in was complete, its time in the archive
            // (else the distance is unknown, and a shortfall then counts 0: a repository's
            // segments have no time here).
            let reached = obs.recovered_at.or_else(|| {
                let replay = self.replay.as_deref()?;
                archive.and_then(|a| segment_time(a, replay))
            });
            obs.target_distance_secs = reached.map(|r| (reference - r).num_seconds());
            // Short: replay that stopped before the end of the archive (latest target), or
            // at a gap before an offset target (PostgreSQL 12 promotes there without a word;
            // later ones refuse, and the drill fails).
            let short = match obs.target_time {
                None => !obs.archive_end_reached,
                Some(_) => obs.missing_segment.is_some(),
            };
            if obs.rto_ms.is_some() && short {
                obs.shortfall_secs = Some(obs.target_distance_secs.unwrap_or(0).max(0));
            }
        }
    }

    /// Stop the server, remove the directory.
    pub fn cleanup(mut self) -> Result<(), String> {
        self.done = true;
        cleanup::stop_and_remove(&self.dir, self.bindir.as_deref(), self.user)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = cleanup::stop_and_remove(&self.dir, self.bindir.as_deref(), self.user)
        {
            warn!(dir = %self.dir.display(), error = %e, "drill scratch left behind");
        }
    }
}

/// A connection to the scratch server; dropping it ends the connection task.
pub struct Session {
    client: Client,
    task: JoinHandle<()>,
}

impl std::ops::Deref for Session {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// First column of the first row `sql` returns, as text (`None`: no row or NULL).
pub async fn first_value(client: &Client, sql: &str) -> Result<Option<String>, String> {
    let msgs = client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => chain(&e),
        })?;
    Ok(msgs
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten())
}

/// Whether the archive directory holds segment `name`, as it is or under a compression or
/// encryption suffix.
fn in_archive_now(archive: &Path, name: &str) -> bool {
    names::stored_names(name)
        .iter()
        .any(|(stored, _)| archive.join(stored).is_file())
}

/// Every segment in the archive directory, compressed or not, by its own name, with when it
/// was stored (its modification time).
fn archived_segments(archive: &Path) -> Vec<(String, std::time::SystemTime)> {
    let Ok(dir) = std::fs::read_dir(archive) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let WalFile::Segment(seg) = names::parse(&e.file_name().to_string_lossy()).0 else {
                return None;
            };
            Some((seg.name(), e.metadata().and_then(|m| m.modified()).ok()?))
        })
        .collect()
}

/// When the archive stored the segment at position `position` (its name after the timeline,
/// 16 hex digits) on any timeline: the latest such copy.
fn segment_time(archive: &Path, position: &str) -> Option<DateTime<Utc>> {
    archived_segments(archive)
        .into_iter()
        .filter(|(name, _)| name.get(8..) == Some(position))
        .map(|(_, at)| at)
        .max()
        .map(DateTime::<Utc>::from)
}

/// The newest WAL segment in the archive and its mtime: the one archived last (by mtime, the
/// greatest name among equals). Not the greatest position: an archive that still holds a branch
/// abandoned by a point-in-time restore (timeline 1 going on past where timeline 2 began, and
/// archived before it) would put the end on that branch, which recovery never replays, and the
/// drill would take timeline 2's next segment, asked for at the real end, for a gap. Not the
/// highest timeline either: a clone restored from a production backup and promoted with the
/// production archive as its `archive_command` leaves timeline 2 there while production goes
/// on archiving timeline 1; recovery then follows the clone's timeline and ends early, and the
/// drill must say so rather than call the clone's last segment the end.
fn newest_segment(archive: &Path) -> Option<(String, DateTime<Utc>)> {
    // Names are fixed-width upper-case hex, timeline first: among equal times, the greatest.
    archived_segments(archive)
        .into_iter()
        .max_by(|(a, at), (b, bt)| (at, a).cmp(&(bt, b)))
        .map(|(n, t)| (n, DateTime::<Utc>::from(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `name` in `dir`, modified `secs` after an hour ago.
    fn put_at(dir: &Path, name: &str, secs: u64) {
        let at =
            std::time::SystemTime::now() - Duration::from_secs(3600) + Duration::from_secs(secs);
        let f = std::fs::File::create(dir.join(name)).expect("create");
        f.set_modified(at).expect("mtime");
    }

    /// An archive directory holding timeline 1's `segments` (each stored `(segno, secs)`
    /// after an hour ago, see [`put_at`]) and, beside it, a scratch whose restore_command log
    /// is `fetched` and whose data directory has an empty `postgresql.auto.conf`.
    fn fixture(segments: &[(u64, u64)], fetched: &str) -> (tempfile::TempDir, PathBuf, Scratch) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let archive = tmp.path().join("archive");
        std::fs::create_dir(&archive).expect("mkdir archive");
        for &(n, secs) in segments {
            put_at(
                &archive,
                &format!("{:024X}", 0x1_0000_0000_0000_0000_u128 + u128::from(n)),
                secs,
            );
        }
        let scratch_dir = tmp.path().join("scratch");
        std::fs::create_dir(&scratch_dir).expect("mkdir scratch");
        let scratch = Scratch::create(&scratch_dir, "t", None).expect("scratch");
        std::fs::create_dir(scratch.data()).expect("data");
        std::fs::write(scratch.data().join("postgresql.auto.conf"), "").expect("auto.conf");
        std::fs::write(scratch.fetched(), fetched).expect("fetch log");
        (tmp, archive, scratch)
    }

    #[test]
    fn the_archive_ends_where_it_was_written_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Timeline 1 went on to segment 9; a point-in-time restore then branched timeline 2
        // off at segment 5, which got as far as 7 (compressed); a backup history file and a
        // partial beside them.
        for n in 1..=9 {
            put_at(d, &format!("00000001000000000000000{n}"), n);
        }
        put_at(d, "00000002.history", 100);
        put_at(d, "000000020000000000000005.gz", 101);
        put_at(d, "000000020000000000000006", 102);
        put_at(d, "000000020000000000000007.zst", 103);
        put_at(d, "000000020000000000000008.partial", 104);
        put_at(d, "000000010000000000000003.00000028.backup", 105);
        let (name, _) = newest_segment(d).expect("newest");
        assert_eq!(name, "000000020000000000000007");

        // A clone promoted onto timeline 2 archived 5 to 7 into production's archive, while
        // production went on with timeline 1 to segment 9: the end is production's.
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        put_at(d, "00000002.history", 1);
        for n in 5..=7 {
            put_at(d, &format!("00000002000000000000000{n}"), n);
        }
        for n in 1..=9 {
            put_at(d, &format!("00000001000000000000000{n}"), 10 + n);
        }
        let (name, _) = newest_segment(d).expect("newest");
        assert_eq!(name, "000000010000000000000009");
    }

    /// A drill after a point-in-time restore: timeline 1 went on to segment 9, timeline 2
    /// branched off at 5 later and got to 7. Recovery (PostgreSQL before 14 asks for each position
    /// on timeline 2 first) replays 3 and 4 from timeline 1, 5 to 7 from timeline 2, and ends
    /// where timeline 2 ends: the end of the archive, no gap.
    #[test]
    fn recovery_along_the_newest_timeline_reaches_the_end_without_a_gap() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let archive = tmp.path().join("archive");
        std::fs::create_dir(&archive).expect("mkdir");
        for n in 1..=9 {
            put_at(&archive, &format!("00000001000000000000000{n}"), n);
        }
        put_at(&archive, "00000002.history", 100);
        for n in 5..=7 {
            put_at(&archive, &format!("00000002000000000000000{n}"), 100 + n);
        }
        let mut scratch = Scratch::create(tmp.path(), "t", None).expect("scratch");
        let fetched = [
            "restored 00000002.history",
            "missing 000000020000000000000003",
            "restored 000000010000000000000003",
            "missing 000000020000000000000004",
            "restored 000000010000000000000004",
            "restored 000000020000000000000005",
            "restored 000000020000000000000006",
            "restored 000000020000000000000007",
            "missing 000000020000000000000008",
            "missing 00000003.history",
        ];
        scratch.replay = Some("0000000000000007".into());
        // What the drill makes of recovery's requests, `lines` of its restore_command log.
        let analysed = |scratch: &Scratch, lines: &[String]| {
            std::fs::write(scratch.fetched(), lines.join("\n")).expect("log");
            let mut obs = DrillObs::default();
            scratch.analyse(&mut obs, Some(&archive));
            obs
        };
        let fetched = fetched.map(String::from);
        let obs = analysed(&scratch, &fetched);
        assert_eq!(
            obs.archive_newest_segment.as_deref(),
            Some("000000020000000000000007")
        );
        assert_eq!(obs.missing_segment, None);
        assert!(obs.archive_end_reached);
        assert_eq!(obs.wal_segments_restored, 5);

        // A position missing on every timeline is a gap.
        let gap = fetched
            .clone()
            .map(|l| l.replace("restored 000000010000000000000004", "missing x"));
        let obs = analysed(&scratch, &gap);
        assert_eq!(
            obs.missing_segment.as_deref(),
            Some("000000020000000000000004")
        );

        // The same timelines, but timeline 1 is the one still archived to (a clone promoted
        // onto timeline 2 wrote into production's archive): recovery followed the clone and
        // stopped at 7, short of production's 9.
        for n in 1..=9 {
            put_at(&archive, &format!("00000001000000000000000{n}"), 200 + n);
        }
        let obs = analysed(&scratch, &fetched);
        assert_eq!(
            obs.archive_newest_segment.as_deref(),
            Some("000000010000000000000009")
        );
        assert!(!obs.archive_end_reached);
        assert_eq!(
            obs.missing_segment.as_deref(),
            Some("000000020000000000000008")
        );
        scratch.done = true;
    }

    /// A busy server archives on while the drill runs its checks: segments stored after
    /// recovery ended are neither a gap nor the end it fell short of.
    #[test]
    fn segments_archived_after_recovery_ended_are_no_gap() {
        let (_tmp, archive, mut scratch) = fixture(
            &(1..=7).map(|n| (n, n)).collect::<Vec<_>>(),
            "restored 000000010000000000000006\nrestored 000000010000000000000007\n\
             missing 000000010000000000000008\nmissing 00000002.history\n",
        );
        scratch.replay = Some("0000000000000007".into());
        scratch.mark_archive_end(Some(&archive));
        // Archived while the smoke checks ran.
        put_at(&archive, "000000010000000000000008", 60);
        put_at(&archive, "000000010000000000000009", 61);
        let mut obs = DrillObs::default();
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(
            obs.archive_newest_segment.as_deref(),
            Some("000000010000000000000007")
        );
        assert_eq!(obs.missing_segment, None);
        assert!(obs.archive_end_reached);
        // Without the mark, today's whole archive: 8, had it not arrived, would be a gap.
        scratch.archive_at_end = None;
        std::fs::remove_file(archive.join("000000010000000000000008")).expect("remove");
        let mut obs = DrillObs::default();
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(
            obs.missing_segment.as_deref(),
            Some("000000010000000000000008")
        );
        scratch.done = true;
    }

    /// An offset target after the archive's end (a server idle since): the target is cleared,
    /// whatever the archive's age (an idle server archives nothing for hours), and the drill
    /// is not short; a gap below the archive's end is the drill's failure.
    #[test]
    fn a_cleared_target_is_not_short_and_a_gap_is_no_idle_server() {
        let (_tmp, archive, mut scratch) = fixture(
            &[(1, 1), (2, 2), (3, 3)],
            "restored 000000010000000000000003\nmissing 000000010000000000000004\n",
        );
        std::fs::write(
            scratch.log(),
            "FATAL:  recovery ended before configured recovery target was reached\n",
        )
        .expect("server log");
        // The newest segment was stored about an hour ago (put_at); the target 10 min ago.
        let target = Utc::now() - chrono::Duration::minutes(10);
        let mut obs = DrillObs {
            target_time: Some(target),
            ..DrillObs::default()
        };
        assert!(scratch.past_the_last_commit(&obs, Some(&archive)));
        scratch.clear_target().expect("cleared");
        scratch.replay = Some("0000000000000003".into());
        obs.rto_ms = Some(1000);
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(obs.shortfall_secs, None);
        assert_eq!(obs.missing_segment, None);
        // A gap below the archive's end is the drill's failure, not an idle server.
        std::fs::write(
            scratch.fetched(),
            "restored 000000010000000000000001\nmissing 000000010000000000000002\n",
        )
        .expect("fetch log");
        std::fs::remove_file(archive.join("000000010000000000000002")).expect("gap");
        let obs = DrillObs {
            target_time: Some(target),
            ..DrillObs::default()
        };
        assert!(!scratch.past_the_last_commit(&obs, Some(&archive)));
        scratch.done = true;
    }

    /// A segment recovery asked for in vain that arrived right after (a busy server archives
    /// on while the drill's server promotes, before the archive is listed) is no gap, and
    /// replay reached the end as it was.
    #[test]
    fn a_segment_that_arrived_after_the_miss_is_no_gap() {
        let (_tmp, archive, mut scratch) = fixture(
            &(1..=9).map(|n| (n, n)).collect::<Vec<_>>(),
            "restored 000000010000000000000007\nmissing 000000010000000000000008\nmissing 00000002.history\n",
        );
        scratch.replay = Some("0000000000000007".into());
        scratch.mark_archive_end(Some(&archive));
        let mut obs = DrillObs {
            rto_ms: Some(1000),
            ..DrillObs::default()
        };
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(obs.missing_segment, None);
        assert!(obs.archive_end_reached);
        assert_eq!(obs.shortfall_secs, None);
        // Still absent, with later ones there: a gap.
        std::fs::remove_file(archive.join("000000010000000000000008")).expect("gap");
        let mut obs = DrillObs {
            rto_ms: Some(1000),
            ..DrillObs::default()
        };
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(
            obs.missing_segment.as_deref(),
            Some("000000010000000000000008")
        );
        assert!(!obs.archive_end_reached);
        scratch.done = true;
    }

    /// Replay that stopped at a gap with no transaction replayed (a server idle since the
    /// backup): short by the time from the segment it stopped in to the archive's end, not 0.
    #[test]
    fn a_gap_with_no_transaction_replayed_is_short_by_the_segments_times() {
        let (_tmp, archive, mut scratch) = fixture(
            &[1, 2, 3, 5, 6].map(|n| (n, n * 600)),
            "restored 000000010000000000000003\nmissing 000000010000000000000004\n",
        );
        scratch.replay = Some("0000000000000003".into());
        let mut obs = DrillObs {
            rto_ms: Some(1000),
            ..DrillObs::default()
        };
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(
            obs.shortfall_secs,
            Some(1800),
            "segment 3 at 30 min, 6 at 60 min"
        );
        scratch.done = true;
    }

    /// PostgreSQL 12 promotes at a gap before an offset target without a word: the drill is
    /// short by the distance to the target, not ok.
    #[test]
    fn a_gap_before_an_offset_target_is_short() {
        let (_tmp, archive, mut scratch) = fixture(
            &[1, 2, 3, 5, 6].map(|n| (n, n)),
            "restored 000000010000000000000003\nmissing 000000010000000000000004\n",
        );
        scratch.replay = Some("0000000000000003".into());
        let now = Utc::now();
        let mut obs = DrillObs {
            rto_ms: Some(1000),
            target_time: Some(now),
            recovered_at: Some(now - chrono::Duration::seconds(600)),
            ..DrillObs::default()
        };
        scratch.analyse(&mut obs, Some(&archive));
        assert_eq!(
            obs.missing_segment.as_deref(),
            Some("000000010000000000000004")
        );
        assert_eq!(obs.shortfall_secs, Some(600));
        scratch.done = true;
    }

    #[test]
    fn replay_location_names_its_segment() {
        let f = |lsn: &str, size: u64| {
            ServerFacts {
                recovered_at: None,
                replay_lsn: Some(lsn.into()),
                segment_bytes: Some(size),
                system_identifier: None,
            }
            .replay_segment()
        };
        assert_eq!(
            f("0/3000028", 16 << 20).as_deref(),
            Some("0000000000000003")
        );
        assert_eq!(f("1/A00000", 1 << 20).as_deref(), Some("000000010000000A"));
    }
}
