//! The scratch server of a drill: its directory, settings, start, wait, and removal.
//!
//! [`Scratch`] owns the subdirectory from the moment it exists: [`Scratch::cleanup`] (or its
//! `Drop`, when the drill's future is dropped by an agent stop) stops the server and removes
//! the directory. Only a postmaster whose working directory is our data directory is ever
//! signalled (PostgreSQL changes into its data directory at start), so a pid reused by
//! another process after a crash is left alone.

use super::{DrillProbe, SCRATCH_PREFIX, Target};
use crate::probe::backup_dir::os_text;
use backwatch_proto::error::chain;
use backwatch_proto::model::DrillObs;
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Gid, Pid, Uid, User};
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tracing::{info, warn};

/// Any port: the server listens on no TCP address, only on its socket in our directory.
const PORT: u16 = 5432;
/// Server log lines kept when a drill fails.
const LOG_LINES: usize = 5;
/// How often recovery's end is polled.
const POLL: Duration = Duration::from_millis(200);

pub struct Scratch {
    dir: PathBuf,
    user: Option<(Uid, Gid)>,
    bindir: Option<PathBuf>,
    /// Process group of pg_ctl, which the postmaster inherits.
    pgid: Option<Pid>,
    /// Segment (log and seg number as 16 hex digits) replay ended in, and the segment size.
    replay: Option<String>,
    done: bool,
}

/// What the promoted server says about its recovery.
pub struct ServerFacts {
    pub recovered_at: Option<DateTime<Utc>>,
    pub replay_lsn: Option<String>,
    pub segment_bytes: Option<u64>,
}

impl ServerFacts {
    /// The 16 hex digits after the timeline in the name of the segment holding the replay
    /// location, comparable with archived names.
    pub fn replay_segment(&self) -> Option<String> {
        let (hi, lo) = self.replay_lsn.as_deref()?.split_once('/')?;
        let lsn = (u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?;
        let size = self.segment_bytes.filter(|s| *s > 0)?;
        let per_log = 0x1_0000_0000 / size;
        let segno = lsn / size;
        Some(format!("{:08X}{:08X}", segno / per_log, segno % per_log))
    }
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

impl Scratch {
    pub fn create(scratch_dir: &Path, name: &str, run_as: Option<&str>) -> Result<Scratch, String> {
        let user = resolve_user(run_as)?;
        let dir = scratch_dir.join(format!(
            "{SCRATCH_PREFIX}{name}-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.3f")
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {}", dir.display(), os_text(&e)))?;
        Ok(Scratch {
            dir,
            user,
            bindir: None,
            pgid: None,
            replay: None,
            done: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    fn fetched(&self) -> PathBuf {
        self.dir.join("restore_command.log")
    }

    pub fn set_replay(&mut self, segment: Option<String>, _segment_bytes: Option<u64>) {
        self.replay = segment;
    }

    /// After the files are in place: binaries, settings, ownership. Returns the bindir.
    pub async fn prepare(&mut self, p: &DrillProbe, obs: &mut DrillObs) -> Result<PathBuf, String> {
        let data = self.data();
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
        let bindir = p
            .pg_bindir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
        obs.bindir = Some(bindir.display().to_string());
        if !bindir.join("pg_ctl").is_file() {
            return Err(format!(
                "PostgreSQL {major} binaries not found: no pg_ctl in {} (install the PostgreSQL {major} server package or set pg_bindir)",
                bindir.display()
            ));
        }
        self.bindir = Some(bindir.clone());
        let what = format!("writing the settings in {}", data.display());
        let settings = self.settings(p, obs);
        let (dir, user, sock, fetched) = (self.dir.clone(), self.user, self.sock(), self.fetched());
        let bytes = crate::blocking::run(&what, move || -> Result<u64, String> {
            write_settings(&dir.join("data"), &sock, &fetched, &settings)?;
            if let Some((uid, gid)) = user {
                chown_tree(&dir, uid, gid)?;
            }
            Ok(super::backup::tree_bytes(&dir.join("data")))
        })
        .await
        .and_then(|r| r)?;
        obs.bytes_restored = bytes;
        Ok(bindir)
    }

    /// The block appended to postgresql.auto.conf (the last word on every setting).
    fn settings(&self, p: &DrillProbe, obs: &mut DrillObs) -> String {
        let q = |s: &str| s.replace('\'', "''");
        let restore_command = match &p.archive_dir {
            // `%` is restore_command's escape; paths were checked free of quotes.
            Some(a) => {
                let a = a.display().to_string().replace('%', "%%");
                let log = self.fetched().display().to_string().replace('%', "%%");
                format!(
                    "if [ -f '{a}/%f' ]; then cp '{a}/%f' '%p' && echo 'restored %f' >> '{log}'; else echo 'missing %f' >> '{log}'; exit 1; fi"
                )
            }
            None => "false".into(),
        };
        let mut s = format!(
            "\n# backwatch drill {}: a private, throw-away server\n\
             restore_command = '{}'\n\
             archive_mode = off\n\
             archive_command = ''\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{}'\n\
             hba_file = '{}'\n\
             ssl = off\n\
             hot_standby = off\n\
             primary_conninfo = ''\n\
             shared_buffers = '16MB'\n\
             work_mem = '4MB'\n\
             maintenance_work_mem = '16MB'\n\
             logging_collector = off\n\
             log_destination = 'stderr'\n\
             lc_messages = 'C'\n\
             cluster_name = 'backwatch-drill'\n\
             recovery_target = ''\n\
             recovery_target_lsn = ''\n\
             recovery_target_name = ''\n\
             recovery_target_xid = ''\n",
            p.name,
            q(&restore_command),
            q(&self.sock().display().to_string()),
            q(&self.data().join("pg_hba.drill.conf").display().to_string()),
        );
        match p.target {
            Target::Latest => s.push_str("recovery_target_time = ''\n"),
            Target::Before(d) => {
                let t = Utc::now() - chrono::Duration::from_std(d).unwrap_or_default();
                obs.target_time = Some(t);
                s.push_str(&format!(
                    "recovery_target_time = '{}'\nrecovery_target_action = 'promote'\n",
                    t.format("%Y-%m-%d %H:%M:%S%.6f+00")
                ));
            }
        }
        s
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
            // The postmaster inherits this group: the cleanup can signal what is left of it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("running pg_ctl: {}", os_text(&e)))?;
        self.pgid = child.id().map(|id| Pid::from_raw(id as i32));
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
            let Ok(client) = self.connect(p).await else {
                continue;
            };
            let Ok(row) = client
                .query_one(
                    "select pg_is_in_recovery(), \
                     (extract(epoch from pg_last_xact_replay_timestamp()) * 1e6)::int8, \
                     pg_last_wal_replay_lsn()::text, \
                     (select setting::bigint from pg_settings where name = 'wal_segment_size')",
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
        postmaster_of(&self.data())
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

    /// What restore_command fetched and missed, against the archive's newest segment.
    pub fn analyse(&self, obs: &mut DrillObs, archive: Option<&Path>) {
        let log = std::fs::read_to_string(self.fetched()).unwrap_or_default();
        let seg = |w: &str| w.len() == 24 && w.bytes().all(|b| b.is_ascii_hexdigit());
        let mut missing = Vec::new();
        for line in log.lines() {
            match line.split_once(' ') {
                Some(("restored", f)) if seg(f) => obs.wal_segments_restored += 1,
                Some(("missing", f)) if seg(f) => missing.push(f.to_string()),
                _ => {}
            }
        }
        let newest = archive.and_then(newest_segment);
        if let Some((name, mtime)) = &newest {
            obs.archive_newest_segment = Some(name.clone());
            let tail = &name[8..];
            // Asked for, absent, and the archive holds later ones: a gap, not the end.
            obs.missing_segment = missing.iter().find(|m| &m[8..] < tail).cloned();
            obs.archive_end_reached = self.replay.as_deref().is_some_and(|r| r >= tail);
            let reference = obs.target_time.unwrap_or(*mtime);
            obs.target_distance_secs = obs.recovered_at.map(|r| (reference - r).num_seconds());
            if obs.rto_ms.is_some() && obs.target_time.is_none() && !obs.archive_end_reached {
                obs.shortfall_secs = Some(obs.target_distance_secs.unwrap_or(0).max(0));
            }
        }
    }

    /// Stop the server, remove the directory.
    pub fn cleanup(mut self) -> Result<(), String> {
        self.done = true;
        stop_and_remove(&self.dir, self.bindir.as_deref(), self.user, self.pgid)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = stop_and_remove(&self.dir, self.bindir.as_deref(), self.user, self.pgid)
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

fn write_settings(data: &Path, sock: &Path, fetched: &Path, settings: &str) -> Result<(), String> {
    let io =
        |what: &Path, e: std::io::Error| format!("writing {}: {}", what.display(), os_text(&e));
    // A Debian cluster keeps postgresql.conf in /etc: the backup has none, and the server
    // needs one. Files of the backup that would start it as something else are removed.
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").map_err(|e| io(&conf, e))?;
    }
    for f in [
        "standby.signal",
        "postmaster.pid",
        "postmaster.opts",
        "backup_manifest",
    ] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let hba = data.join("pg_hba.drill.conf");
    std::fs::write(
        &hba,
        "# the scratch server's socket is in a 0700 directory\nlocal all all trust\n",
    )
    .map_err(|e| io(&hba, e))?;
    let signal = data.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| io(&signal, e))?;
    let auto = data.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(|e| io(&auto, e))?;
    f.write_all(settings.as_bytes()).map_err(|e| io(&auto, e))?;
    std::fs::create_dir_all(sock).map_err(|e| io(sock, e))?;
    std::fs::write(fetched, "").map_err(|e| io(fetched, e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(data, e))?;
    Ok(())
}

fn chown_tree(dir: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &d,
            Some(uid),
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("chown {}: {e}", d.display()))?;
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if meta.is_dir() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| format!("listing {}: {}", d.display(), os_text(&e)))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// The newest WAL segment in the archive (by name after the timeline) and its mtime.
fn newest_segment(archive: &Path) -> Option<(String, DateTime<Utc>)> {
    let mut best: Option<(String, std::time::SystemTime)> = None;
    for e in std::fs::read_dir(archive).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| name[8..] > b[8..]) {
            best = Some((name, mtime));
        }
    }
    best.map(|(n, t)| (n, DateTime::<Utc>::from(t)))
}

/// The postmaster of `data` per its postmaster.pid, when that process lives in `data`.
fn postmaster_of(data: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let data = std::fs::canonicalize(data).ok()?;
    (cwd == data).then(|| Pid::from_raw(pid))
}

fn stop_and_remove(
    dir: &Path,
    bindir: Option<&Path>,
    user: Option<(Uid, Gid)>,
    pgid: Option<Pid>,
) -> Result<(), String> {
    let data = dir.join("data");
    let postmaster = postmaster_of(&data);
    if let (Some(_), Some(bindir)) = (postmaster, bindir) {
        let mut cmd = std::process::Command::new(bindir.join("pg_ctl"));
        cmd.args(["stop", "-m", "immediate", "-w", "-t", "15", "-s", "-D"])
            .arg(&data)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let _ = cmd.status();
    }
    // Whatever pg_ctl could not stop: the postmaster (its children exit when it is gone)
    // and the rest of pg_ctl's group.
    if let Some(pid) = postmaster_of(&data) {
        let _ = kill(pid, Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(10);
        while kill(pid, None).is_ok() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let mut last = None;
    for _ in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A backend still exiting may create a file meanwhile: try again shortly.
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "removing {}: {}",
        dir.display(),
        last.map(|e| os_text(&e)).unwrap_or_default()
    ))
}

/// At agent start: stop the servers and remove the scratch directories a killed agent left
/// in these scratch directories (only `backwatch-drill-*` subdirectories).
pub fn remove_leftovers(scratch_dirs: &[PathBuf]) {
    for scratch in scratch_dirs {
        let Ok(entries) = std::fs::read_dir(scratch) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(SCRATCH_PREFIX) || !e.path().is_dir() {
                continue;
            }
            let running = postmaster_of(&e.path().join("data"));
            match stop_and_remove(&e.path(), None, None, None) {
                Ok(()) => info!(
                    dir = %e.path().display(),
                    server_stopped = running.is_some(),
                    "removed a drill's scratch directory left by an earlier agent"
                ),
                Err(err) => {
                    warn!(dir = %e.path().display(), error = %err, "cannot remove a drill's leftover scratch directory")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_location_names_its_segment() {
        let f = |lsn: &str, size: u64| {
            ServerFacts {
                recovered_at: None,
                replay_lsn: Some(lsn.into()),
                segment_bytes: Some(size),
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
