//! Running an external tool (pgBackRest, Barman, pg_verifybackup) for a probe: the one place
//! every probe starts a process, so each gets the same bounds.
//!
//! Invariants:
//! - stdin is closed; stdout and stderr are read as they arrive, each up to its [`Limits`]
//!   (never more is held in memory). A stream that goes beyond is the run's error ("output
//!   larger than 4 MiB on stdout from pgbackrest"), and the tool is stopped at once.
//! - The child starts in a process group of its own. When the run does not end by itself (the
//!   probe's timeout drops this future, or the output was too large), the whole group gets
//!   SIGKILL, so what the tool started (`ssh` to a repository host, a shell pipeline, a
//!   `sleep`) goes with it instead of piling up one set per run.

use super::backup_dir::os_text;
use backwatch_proto::model::BackupSet;
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt};

const MIB: usize = 1 << 20;

/// Most bytes kept of each stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub stdout: usize,
    pub stderr: usize,
    /// A key of the JSON on stdout whose array values are emptied as the output arrives
    /// (`"reference":[…]` becomes `"reference":[]`): what is dropped is neither held nor
    /// counted against `stdout`.
    pub drop_array: Option<&'static str>,
}

/// For tools that answer with a JSON document: `pgbackrest info` of a large repository is a
/// few hundred KiB; beyond 4 MiB something is wrong. Errors fit in 64 KiB.
pub const JSON_TOOL: Limits = Limits {
    stdout: 4 * MIB,
    stderr: 64 * 1024,
    drop_array: None,
};

/// `pgbackrest info`: each backup lists every backup it references, cumulatively along an
/// incremental chain (each copies its prior's list and adds one), so the output grows with
/// the square of the chain: a week of hourly incrementals is megabytes of labels that
/// nothing here reads. They are dropped as they arrive.
pub const PGBACKREST_INFO: Limits = Limits {
    drop_array: Some("reference"),
    ..JSON_TOOL
};

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stderr's last non-empty line (the tool's own error), else stdout's.
    pub fn last_words(&self) -> String {
        let last = |s: &str| {
            s.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(str::to_string)
        };
        last(&self.stderr)
            .or_else(|| last(&self.stdout))
            .unwrap_or_else(|| format!("exit status {:?}", self.code))
    }
}

/// Run `argv` like [`run`], and make a non-zero exit an error in the tool's own words: "<the
/// command, without its first `prefix` words (nice, runuser, ...)> failed: <last words>".
pub async fn run_ok(argv: &[String], prefix: usize, limits: Limits) -> Result<Output, String> {
    let out = run(argv, limits).await?;
    if out.code != Some(0) {
        return Err(format!(
            "{} failed: {}",
            shown(argv.get(prefix..).unwrap_or(argv)),
            out.last_words()
        ));
    }
    Ok(out)
}

/// The command line as shown to people.
pub fn shown(argv: &[String]) -> String {
    argv.join(" ")
}

/// Kills the child's process group when dropped armed: the run was abandoned (timeout) or
/// stopped (output too large). Disarmed once the child has exited and its output ended, so a
/// finished run never signals a group id that may have been reused.
struct GroupKill {
    pgid: Option<Pid>,
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nothing left) is the usual and fine answer.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Optional steps of a run (the tool's version, a listing that only dates the window's end,
/// Barman's own checks) may go on until this share of the run's timeout: a slow one must not
/// turn the whole run into "timed out", which throws away what the essential command found
/// (a stale backup's critical hidden behind an unknown).
pub fn optional_until(
    start: tokio::time::Instant,
    timeout: std::time::Duration,
) -> tokio::time::Instant {
    start + timeout.mul_f64(0.9)
}

/// [`run`], given up at `until`: then the error says so.
pub async fn run_until(
    argv: &[String],
    limits: Limits,
    until: tokio::time::Instant,
) -> Result<Output, String> {
    match tokio::time::timeout_at(until, run(argv, limits)).await {
        Ok(out) => out,
        Err(_) => Err(format!(
            "{}: no answer in the time the run had left",
            shown(argv)
        )),
    }
}

/// Run `argv` and collect its output within `limits`.
pub async fn run(argv: &[String], limits: Limits) -> Result<Output, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group (pgid = its pid), so the group can be killed without touching ours.
        .process_group(0)
        // The child itself is also killed and reaped by tokio when this future is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {prog}: {}", os_text(&e)))?;
    // While the child is not reaped its pid cannot be reused, and while anything of its group
    // lives neither can the group id: the guard signals only what this run started.
    let mut guard = GroupKill {
        pgid: child.id().map(|id| Pid::from_raw(id as i32)),
    };
    let stdout = child.stdout.take().ok_or("stdout not captured")?;
    let stderr = child.stderr.take().ok_or("stderr not captured")?;
    let name = short(prog);
    // Both at once (a tool filling stderr's pipe must not block while we wait on stdout); the
    // first stream over its limit ends the run, and the guard kills the group.
    let (out, err) = tokio::try_join!(
        read_capped(stdout, limits.stdout, limits.drop_array, "stdout", name),
        read_capped(stderr, limits.stderr, None, "stderr", name),
    )?;
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {prog}: {}", os_text(&e)))?;
    guard.pgid = None;
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(Output {
        code: status.code(),
        stdout: text(out),
        stderr: text(err),
    })
}

/// The stream to its end, or an error as soon as it is longer than `cap` bytes (reading at
/// most `cap + 1`, or, when arrays of `drop_array` are emptied, keeping at most that).
async fn read_capped(
    mut stream: impl AsyncRead + Unpin,
    cap: usize,
    drop_array: Option<&str>,
    which: &str,
    prog: &str,
) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("reading the {which} of {prog}: {}", os_text(&e));
    let mut buf = Vec::new();
    match drop_array {
        None => {
            (&mut stream)
                .take(cap as u64 + 1)
                .read_to_end(&mut buf)
                .await
                .map_err(failed)?;
        }
        Some(key) => {
            let mut dropper = ArrayDrop::new(key);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = stream.read(&mut chunk).await.map_err(failed)?;
                if n == 0 {
                    dropper.finish(&mut buf);
                    break;
                }
                dropper.feed(&chunk[..n], &mut buf);
                if buf.len() > cap {
                    break;
                }
            }
        }
    }
    if buf.len() > cap {
        return Err(format!(
            "output larger than {} on {which} from {prog}; stopped it",
            size(cap)
        ));
    }
    Ok(buf)
}

/// Empties every `"<key>":[…]` array of a JSON text as it streams through: the array's
/// elements are skipped (strings and nested arrays included), `"<key>":[]` is kept. The key
/// is matched as a whole quoted name followed by `:[` with no blank, as compact JSON writes
/// it; the same text inside a string is escaped (`\"key\":[`) and never matches.
struct ArrayDrop {
    pattern: Vec<u8>,
    matched: usize,
    /// Inside a dropped array: its depth, and whether inside a string (after a backslash).
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ArrayDrop {
    fn new(key: &str) -> ArrayDrop {
        ArrayDrop {
            pattern: format!("\"{key}\":[").into_bytes(),
            matched: 0,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.depth > 0 {
                if self.in_string {
                    match (self.escaped, b) {
                        (true, _) => self.escaped = false,
                        (false, b'\\') => self.escaped = true,
                        (false, b'"') => self.in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'[' => self.depth += 1,
                    b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            out.push(b']');
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if b == self.pattern[self.matched] {
                self.matched += 1;
                if self.matched == self.pattern.len() {
                    out.extend_from_slice(&self.pattern);
                    self.matched = 0;
                    self.depth = 1;
                }
                continue;
            }
            // Not the key after all: what was held back goes out, and this byte may start it.
            out.extend_from_slice(&self.pattern[..self.matched]);
            self.matched = usize::from(b == self.pattern[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
    }

    /// The end of the stream: a partial match held back is text after all.
    fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pattern[..self.matched]);
        self.matched = 0;
    }
}

/// The program's file name, for messages.
fn short(prog: &str) -> &str {
    prog.rsplit('/').next().unwrap_or(prog)
}

/// "4 MiB", "64 KiB", "100 bytes".
fn size(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// The JSON document in `stdout`, skipping anything printed before it.
pub fn json(out: &Output) -> Result<serde_json::Value, String> {
    let start = out
        .stdout
        .find(['{', '['])
        .ok_or_else(|| format!("no JSON in the output: {}", out.last_words()))?;
    serde_json::from_str(&out.stdout[start..]).map_err(|e| format!("unreadable JSON: {e}"))
}

/// For a backup tool section linked to a `[[wal]]` server: mark the observation as taken on a
/// standby (the primary's probe judges the sets, so an HA pair raises one alert, and the new
/// primary takes over after a failover), or say why the role is unknown (then judged here).
/// The server's major goes with it, so a tool too old for the server can be named.
pub async fn mark_server(
    wal: Option<&super::wal_archive::WalProbe>,
    obs: &mut backwatch_proto::model::BackupToolObs,
) {
    if let Some(w) = wal {
        match w.role_and_major().await {
            Ok((standby, major)) => {
                obs.on_standby = standby;
                obs.server_major = (major > 0).then_some(major);
            }
            Err(e) => obs.role_error = Some(format!("wal.{}: {e}", w.name)),
        }
    }
}

/// When each set's running backup was first seen running, by set name. pgBackRest shows only
/// that its backup lock is held, so how long a backup has run is counted from the first run
/// that saw it (at least that long: up to one interval more, and an agent restart starts the
/// count again). A start the tool gives (Barman's backup id) is kept when it is earlier.
#[derive(Debug, Default)]
pub struct RunningSince(std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>);

impl RunningSince {
    pub fn mark(&self, sets: &mut [BackupSet], now: DateTime<Utc>) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|name, _| sets.iter().any(|s| s.backup_running && &s.name == name));
        for s in sets.iter_mut().filter(|s| s.backup_running) {
            let since = *seen.entry(s.name.clone()).or_insert(now);
            let counted = (now - since).num_seconds().max(0);
            s.backup_running_secs = Some(s.backup_running_secs.map_or(counted, |k| k.max(counted)));
        }
    }
}

#[cfg(test)]
mod running_tests {
    use super::*;

    #[test]
    fn a_running_backup_is_timed_from_when_it_was_first_seen() {
        let r = RunningSince::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let running = |on: bool| BackupSet {
            name: "main".into(),
            backup_running: on,
            ..BackupSet::default()
        };
        let mut sets = [running(true)];
        r.mark(&mut sets, t0);
        assert_eq!(sets[0].backup_running_secs, Some(0));
        let mut sets = [running(true)];
        r.mark(&mut sets, t0 + chrono::Duration::seconds(600));
        assert_eq!(sets[0].backup_running_secs, Some(600));
        // It ended: the next one counts afresh.
        let mut sets = [running(false)];
        r.mark(&mut sets, t0 + chrono::Duration::seconds(700));
        assert_eq!(sets[0].backup_running_secs, None);
        let mut sets = [running(true)];
        r.mark(&mut sets, t0 + chrono::Duration::seconds(800));
        assert_eq!(sets[0].backup_running_secs, Some(0));
        // A start the tool knows, earlier than the first sight, wins.
        let mut sets = [BackupSet {
            backup_running_secs: Some(5000),
            ..running(true)
        }];
        r.mark(&mut sets, t0 + chrono::Duration::seconds(900));
        assert_eq!(sets[0].backup_running_secs, Some(5000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn alive(pid: i32) -> bool {
        // A zombie waiting for init to reap it is gone as far as anyone can tell.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn output_within_the_limits_is_kept() {
        let out = run(&sh("echo out; echo err >&2; exit 3"), JSON_TOOL)
            .await
            .unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (Some(3), "out\n"));
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.last_words(), "err");
    }

    #[test]
    fn reference_arrays_are_emptied_as_they_stream() {
        let text = r#"[{"backup":[{"label":"F","reference":null},{"label":"F_I2","reference":["F","F_I1"],"annotation":{"note":"\"reference\":[x]"}},{"reference":[["a]"],"b\"]"]}],"name":"main"}]"#;
        // Byte by byte and whole: chunk boundaries change nothing.
        for chunk in [1, 7, text.len()] {
            let mut d = ArrayDrop::new("reference");
            let mut out = Vec::new();
            for part in text.as_bytes().chunks(chunk) {
                d.feed(part, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"[{"backup":[{"label":"F","reference":null},{"label":"F_I2","reference":[],"annotation":{"note":"\"reference\":[x]"}},{"reference":[]}],"name":"main"}]"#
            );
        }
    }

    /// `info` of a long incremental chain: 8 MiB of labels in `reference` lists, which the
    /// 4 MiB bound refused for ever (the check unknown), pass as the few bytes read.
    #[tokio::test]
    async fn a_pgbackrest_info_with_megabytes_of_references_fits() {
        let script = "printf '[{\"backup\":[{\"label\":\"F\",\"reference\":['; \
                      yes '\"20261125-190526F_20261125-190531I\",' | head -n 240000; \
                      printf '\"F\"]}],\"name\":\"main\"}]'";
        let out = run(&sh(script), PGBACKREST_INFO).await.unwrap();
        let doc = json(&out).unwrap();
        assert_eq!(doc[0]["name"], "main");
        assert_eq!(doc[0]["backup"][0]["reference"], serde_json::json!([]));
        assert!(run(&sh(script), JSON_TOOL).await.is_err());
    }

    #[tokio::test]
    async fn endless_output_is_an_error_not_unbounded_memory() {
        let limits = Limits {
            stdout: 64 * 1024,
            stderr: 1024,
            drop_array: None,
        };
        let err = run(&sh("exec yes backwatch"), limits).await.err().unwrap();
        assert_eq!(
            err,
            "output larger than 64 KiB on stdout from sh; stopped it"
        );
        let err = run(&sh("yes backwatch >&2"), limits).await.err().unwrap();
        assert_eq!(
            err,
            "output larger than 1 KiB on stderr from sh; stopped it"
        );
    }

    #[tokio::test]
    async fn a_run_given_up_kills_what_the_tool_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {}; wait",
            pidfile.display()
        );
        let argv = sh(&script);
        let given_up = tokio::time::timeout(Duration::from_secs(1), run(&argv, JSON_TOOL)).await;
        assert!(given_up.is_err(), "the script waits for its sleep");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "the grandchild {pid} survived the timeout");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(4 * MIB), "4 MiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(100), "100 bytes");
    }
}
