//! pgBackRest and Barman as backup sources end to end: the real tools (Debian packages) back up
//! a private PostgreSQL cluster, the real agent asks them (`pgbackrest info`, `barman
//! list-backups` / `show-backup` / `check`), the collector judges, the API shows it.
//!
//! As root the tools run as the user the harness runs the cluster as (`postgres`): pgBackRest
//! must own its repository like the server that pushes WAL into it. Barman runs as root with
//! `barman_user = root`, and the server's `archive_command` copies into its incoming directory.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::pg::bindir;
use backwatch_tests::harness::{PgCluster, eventually, scene};
use nix::unistd::{Uid, User, chown};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("version").output().is_ok()
}

/// Runs `argv` as `postgres` when we are root (as ourselves otherwise); fails with its output.
fn as_server_user(argv: &[&str]) -> Result<String> {
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

fn give_to_server_user(path: &Path) -> Result<()> {
    if Uid::effective().is_root() {
        let user = User::from_name("postgres")?.context("no postgres user")?;
        chown(path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

#[tokio::test]
async fn pgbackrest_backups_appear_with_their_durations_and_a_bad_stanza_is_critical() -> Result<()>
{
    ensure!(
        installed("pgbackrest"),
        "pgbackrest is not installed (scripts/test installs it)"
    );
    let dir = tempfile::tempdir()?;
    give_to_server_user(dir.path())?;
    let conf = dir.path().join("pgbackrest.conf");
    let conf_arg = format!("--config={}", conf.display());
    let pg = PgCluster::init()
        .archive_command(&format!(
            "pgbackrest {conf_arg} --stanza=main archive-push %p"
        ))
        .start()?;
    fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=2\nlock-path={}\nlog-level-console=warn\n\
             log-level-file=off\nstart-fast=y\n[main]\npg1-path={}\npg1-socket-path={}\npg1-port={}\npg1-user=postgres\n",
            dir.path().join("repo").display(),
            dir.path().join("lock").display(),
            pg.data_dir().display(),
            pg.socket_dir().display(),
            pg.port()
        ),
    )?;
    give_to_server_user(&conf)?;
    as_server_user(&["pgbackrest", &conf_arg, "--stanza=main", "stanza-create"])?;
    as_server_user(&[
        "pgbackrest",
        &conf_arg,
        "--stanza=main",
        "--type=full",
        "backup",
    ])?;
    as_server_user(&[
        "pgbackrest",
        &conf_arg,
        "--stanza=main",
        "--type=incr",
        "backup",
    ])?;

    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[pgbackrest]]\nname = \"main\"\nconfig = \"{0}\"\ninterval = \"1s\"\n\
             [[pgbackrest]]\nname = \"typo\"\nconfig = \"{0}\"\nstanza = \"mian\"\ninterval = \"1s\"\n",
            conf.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "pgbackrest.main", "ok", "main: newest incr ", WAIT)
        .await;
    let set = &c["details"]["sets"][0];
    let (incr, full) = (&set["newest"], &set["newest_full"]);
    assert_eq!(incr["type"], "incr", "{c}");
    assert_eq!(full["type"], "full", "{c}");
    assert!(
        full["label"].as_str().is_some_and(|l| l.ends_with('F')),
        "{c}"
    );
    for b in [incr, full] {
        assert!(b["duration_secs"].as_i64().is_some_and(|d| d >= 0), "{c}");
        assert!(
            b["start_time"].is_string() && b["stop_time"].is_string(),
            "{c}"
        );
        assert!(
            b["wal_start"].is_string() && b["wal_stop"].is_string(),
            "{c}"
        );
    }
    assert!(
        full["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20),
        "{c}"
    );
    assert_eq!(set["backup_count"], 2, "{c}");
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("; newest full "),
        "{c}"
    );
    // The recoverable window (docs/checks.md R32): from the oldest backup's end to when the
    // newest archived segment was stored (repo-ls), in the recovery API too.
    let w = &c["details"]["window"];
    assert_eq!(w["earliest_backup"], full["label"], "{c}");
    assert_eq!(w["start"], full["stop_time"], "{c}");
    assert_eq!(w["end_segment"], set["archive_max"], "{c}");
    let time = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let (start, end) = (time(&w["start"]), time(&w["end"]));
    assert!(start.is_some() && end >= start, "{c}");
    let clusters = scene.collector.api("/api/v1/recovery?host=db1").await?;
    let tool = clusters
        .as_array()
        .and_then(|a| a.iter().find(|c| c["cluster"] == "pgbackrest.main"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tool["window"]["end"], w["end"], "{clusters}");
    // And for Prometheus, as Unix times.
    for (series, at) in [("start", start), ("end", end)] {
        let got = scene
            .collector
            .metric(&format!(
                "backwatch_recovery_window_{series}_timestamp_seconds{{host=\"db1\",check=\"pgbackrest.main\"}}"
            ))
            .await?;
        assert_eq!(
            got.map(|v| v as i64),
            at.map(|t| t.timestamp()),
            "{series} in /metrics"
        );
    }

    // The tool's own status: a stanza that does not exist.
    let c = scene
        .collector
        .wait_summary("db1", "pgbackrest.typo", "critical", "mian: status ", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("missing stanza path"),
        "{c}"
    );
    Ok(())
}

#[tokio::test]
async fn barman_backup_appears_with_its_duration_and_failing_checks_are_critical() -> Result<()> {
    ensure!(
        installed("barman"),
        "barman is not installed (scripts/test installs it)"
    );
    let dir = tempfile::tempdir()?;
    // The server (as postgres) copies WAL into Barman's incoming directory.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    let home = dir.path().join("barman");
    let incoming = home.join("pg/incoming");
    fs::create_dir_all(&incoming)?;
    fs::set_permissions(&incoming, fs::Permissions::from_mode(0o777))?;
    let pg = PgCluster::init()
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
            bin = bindir()?.display(),
            sock = pg.socket_dir().display(),
            port = pg.port()
        ),
    )?;
    let barman = |args: &[&str]| -> Result<String> {
        let out = Command::new("barman")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "barman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Barman's backup refuses to start before it has received WAL: ship one segment first.
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
    barman(&["archive-wal", "pg"])?;
    barman(&["backup", "pg"])?;
    pg.switch_wal()?;

    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[barman]]\nname = \"pg\"\nserver = \"pg\"\nconfig = \"{}\"\ninterval = \"1s\"\n",
            conf.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "ok", "pg: newest full ", WAIT)
        .await;
    let newest = &c["details"]["sets"][0]["newest"];
    assert!(
        newest["duration_secs"].as_i64().is_some_and(|d| d >= 0),
        "{c}"
    );
    assert!(
        newest["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20),
        "{c}"
    );
    assert!(newest["wal_start"].is_string(), "{c}");
    assert!(
        c["summary"].as_str().unwrap_or_default().contains("took"),
        "{c}"
    );
    // The recoverable window: the oldest backup's end to the newest WAL in xlog.db.
    let w = &c["details"]["window"];
    assert_eq!(w["start"], newest["stop_time"], "{c}");
    assert!(w["end"].is_string() && w["end_segment"].is_string(), "{c}");

    // The server goes away: Barman's own check fails, and says which checks.
    pg.stop()?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "critical", "pg: failing checks: ", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("postgresql"),
        "{c}"
    );
    Ok(())
}

/// A tool that hangs with a child of its own, and one that never stops printing: the probe's
/// timeout takes the whole process group with it, and endless output is an error at 4 MiB
/// instead of agent memory without bound.
#[tokio::test]
async fn a_hung_tool_leaves_no_process_behind_and_endless_output_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pids = dir.path().join("pids");
    let hung = dir.path().join("hung-tool.sh");
    // The grandchild keeps nothing of ours open, as `ssh` in the background of a wrapper would.
    fs::write(
        &hung,
        format!(
            "#!/bin/sh\nsleep 600 </dev/null >/dev/null 2>&1 &\necho $! >> {}\nwait\n",
            pids.display()
        ),
    )?;
    let chatty = dir.path().join("chatty-tool.sh");
    fs::write(&chatty, "#!/bin/sh\nexec yes '{\"backwatch\": 1}'\n")?;
    for f in [&hung, &chatty] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o755))?;
    }
    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[pgbackrest]]\nname = \"hung\"\ncommand = [\"{}\"]\ninterval = \"1h\"\ntimeout = \"2s\"\n\
             [[pgbackrest]]\nname = \"chatty\"\ncommand = [\"{}\"]\ninterval = \"1s\"\ntimeout = \"1m\"\n",
            hung.display(),
            chatty.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.hung",
            "unknown",
            "probe could not observe: probe timed out after 2s",
            WAIT,
        )
        .await;
    let pid: i32 = fs::read_to_string(&pids)?
        .lines()
        .next()
        .with_context(|| format!("the tool never started its child: {c}"))?
        .trim()
        .parse()?;
    eventually(
        Duration::from_secs(10),
        "the tool's child is killed",
        async || {
            // Gone, or a zombie waiting for init: either way it no longer runs.
            match fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat)
                    if !stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    anyhow::bail!("process {pid} still runs: {stat}")
                }
                _ => Ok(()),
            }
        },
    )
    .await;

    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.chatty",
            "unknown",
            "pgBackRest could not be asked: output larger than 4 MiB on stdout from \
             chatty-tool.sh; stopped it",
            WAIT,
        )
        .await;
    // Several runs of it have been refused by now; the agent's peak memory stays small.
    let agent = scene.agent.pid().context("agent running")?;
    let status = fs::read_to_string(format!("/proc/{agent}/status"))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in {status}"))?;
    assert!(
        peak_kib < 100 * 1024,
        "agent peak memory {peak_kib} KiB after refusing endless output: {c}"
    );
    Ok(())
}
