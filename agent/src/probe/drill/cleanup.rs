//! Stopping a scratch server and removing its directory, at the end of a drill and for the
//! leftovers of a killed agent.
//!
//! Only processes whose working directory is our data directory are ever signalled
//! (PostgreSQL's postmaster changes into its data directory at start, and its children
//! inherit it), so a pid reused by another process after a crash is left alone. Never a
//! process group: pg_ctl starts the postmaster in a session of its own, and pg_ctl's group
//! id, once pg_ctl has exited, may belong to any process of the host (a production backend
//! is a group leader too).

use super::SCRATCH_PREFIX;
use crate::probe::backup_dir::os_text;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The postmaster of `data` per its postmaster.pid, when that process lives in `data`.
pub fn postmaster_of(data: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let data = std::fs::canonicalize(data).ok()?;
    (cwd == data).then(|| Pid::from_raw(pid))
}

/// Every process whose working directory is `data` (the postmaster and its children).
fn processes_in(data: &Path) -> Vec<Pid> {
    let Ok(data) = std::fs::canonicalize(data) else {
        return Vec::new();
    };
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data))
        .map(Pid::from_raw)
        .collect()
}

pub fn stop_and_remove(
    dir: &Path,
    bindir: Option<&Path>,
    user: Option<(Uid, Gid)>,
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
    // Whatever pg_ctl could not stop: the postmaster first (its children exit when it is
    // gone), then any child still there.
    if let Some(pid) = postmaster_of(&data) {
        let _ = kill(pid, Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(10);
        while kill(pid, None).is_ok() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for pid in processes_in(&data) {
        let _ = kill(pid, Signal::SIGKILL);
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
            match stop_and_remove(&e.path(), None, None) {
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
    use std::os::unix::process::CommandExt as _;

    /// What lives in the data directory is killed; a process group leader elsewhere (what
    /// pg_ctl's old group id may have become) is not.
    #[test]
    fn only_processes_in_the_data_directory_are_killed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("backwatch-drill-x");
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let mut inside = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(dir.join("data"))
            .spawn()
            .expect("sleep in data");
        let mut leader = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .expect("sleep elsewhere");
        stop_and_remove(&dir, None, None).expect("removed");
        let status = inside.wait().expect("waited");
        assert!(!status.success(), "{status}");
        assert!(
            leader.try_wait().expect("try_wait").is_none(),
            "the group leader was killed"
        );
        let _ = leader.kill();
        let _ = leader.wait();
        assert!(!dir.exists());
    }
}
