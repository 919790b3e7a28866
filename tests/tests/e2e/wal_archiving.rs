//! WAL archiving end to end: a private PostgreSQL cluster, the real agent probing it over a
//! socket, the real collector judging over mutual TLS, and the API showing the verdict.

use anyhow::{Context, Result};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Agent, Certs, Collector, PgCluster, eventually, free_port, scene};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn failing_archive_command_turns_wal_critical_and_fixing_it_clears() -> Result<()> {
    let pg = PgCluster::init().archive_command("false").start()?;
    let scene = scene("db1", |a| a.wal("main", &pg.dsn(), "1s")).await?;
    let collector = &scene.collector;

    // Nothing waiting yet: a fresh cluster is healthy, whatever archive_command says.
    collector.wait_status("db1", "wal.main", "ok", WAIT).await;

    let segment = pg.switch_wal()?;
    let c = collector
        .wait_status("db1", "wal.main", "critical", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("archiving is failing: "), "{summary}");
    assert!(
        summary.contains(&segment),
        "{summary} should name {segment}"
    );
    assert_eq!(c["details"]["last_failed_wal"], segment.as_str(), "{c}");

    pg.set_archive_command(&pg.copy_archive_command())?;
    let c = collector.wait_status("db1", "wal.main", "ok", WAIT).await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("archiving ok"), "{summary}");
    assert!(
        summary.contains(&segment),
        "{summary} should name the archived {segment}"
    );

    // History keeps the incident: ok -> critical -> ok.
    let h = collector
        .api("/api/v1/hosts/db1/history?check=wal.main")
        .await?;
    let path: Vec<&str> = h["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| t["to"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(path, ["ok", "critical", "ok"], "{h}");
    Ok(())
}

#[tokio::test]
async fn segment_waiting_longer_than_15_minutes_is_critical_without_any_failure() -> Result<()> {
    // An archive_command that hangs: no failure is ever recorded (docs/checks.md R16), only the
    // age of the pending segment shows the problem.
    let pg = PgCluster::init().archive_command("sleep 600").start()?;
    let segment = pg.switch_wal()?;
    let ready = pg.ready_dir().join(format!("{segment}.ready"));
    // Make time real, not waited for: the segment has been waiting for 20 minutes.
    let touched = Command::new("touch")
        .args(["-d", "20 minutes ago"])
        .arg(&ready)
        .status()?;
    assert!(touched.success(), "touch {}", ready.display());

    let scene = scene("db1", |a| a.wal("main", &pg.dsn(), "1s")).await?;
    let collector = &scene.collector;
    let c = collector
        .wait_status("db1", "wal.main", "critical", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("archive delay 20 min (limit 15 min)"),
        "{summary}"
    );
    assert!(summary.contains(&segment), "{summary}");
    assert_eq!(c["details"]["failed_count"], 0, "{c}");
    Ok(())
}

#[tokio::test]
async fn unreachable_database_is_unknown_with_the_reason() -> Result<()> {
    let port = free_port();
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2");
    let scene = scene("db1", |a| a.wal("main", &dsn, "1s")).await?;
    let collector = &scene.collector;
    let c = collector
        .wait_status("db1", "wal.main", "unknown", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("cannot connect"), "{summary}");
    Ok(())
}

#[tokio::test]
async fn disabled_archiving_is_critical() -> Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    let scene = scene("db1", |a| a.wal("main", &pg.dsn(), "1s")).await?;
    let collector = &scene.collector;
    let c = collector
        .wait_status("db1", "wal.main", "critical", WAIT)
        .await;
    assert_eq!(
        c["summary"], "archiving disabled: archive_mode = off",
        "{c}"
    );
    Ok(())
}

/// A token file the collector accepts (mode 600, 64 hex characters).
#[tokio::test]
async fn archive_command_is_masked_by_the_agent_and_shown_only_to_ack_callers() -> Result<()> {
    // Works (the variable is ignored) and carries a password in a quoted form.
    let pg = PgCluster::init()
        .archive_command("PGPASSWORD='hunter 2' /bin/true %p")
        .start()?;
    let keys = tempfile::tempdir()?;
    let (screen_file, screen) = backwatch_tests::harness::fleet::token_file(keys.path(), "screen")?;
    let (oncall_file, oncall) = backwatch_tests::harness::fleet::token_file(keys.path(), "oncall")?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!(
            "[[http.tokens]]\nname = \"screen\"\ntoken_file = \"{screen_file}\"\nrole = \"read\"\n\
             [[http.tokens]]\nname = \"oncall\"\ntoken_file = \"{oncall_file}\"\nrole = \"ack\"\n"
        ))
        .start()
        .await?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .start()?;
    let http = http_client();
    let url = collector.url("/api/v1/hosts/db1/history?check=wal.main");
    let command_as = async |token: &str| -> Result<(String, String)> {
        let resp = http.get(&url).bearer_auth(token).send().await?;
        let text = resp.text().await?;
        let h: Value = serde_json::from_str(&text)?;
        let command = h["results"][0]["observation"]["wal"]["archive_command"]
            .as_str()
            .with_context(|| format!("no wal result yet: {h}"))?
            .to_string();
        Ok((command, text))
    };

    let (command, text) = eventually(WAIT, "a wal.main result for the ack token", async || {
        command_as(&oncall).await
    })
    .await;
    assert_eq!(command, "PGPASSWORD='***' /bin/true %p", "{text}");
    assert!(!text.contains("hunter"), "{text}");

    let (command, text) = command_as(&screen).await?;
    assert_eq!(command, "(hidden: needs role ack)", "{text}");
    assert!(!text.contains("/bin/true"), "{text}");
    // The rest of the observation is still there for a read caller.
    let h: Value = serde_json::from_str(&text)?;
    assert!(
        h["results"][0]["observation"]["wal"]["archive_mode"].is_string(),
        "{h}"
    );
    Ok(())
}

/// A base backup the server has been sending for longer than `max_base_backup_duration` is
/// named on the WAL check (pg_stat_progress_basebackup): a `pg_basebackup --max-rate` crawling
/// through a cluster with a table, against a 2 s limit on the collector.
#[tokio::test]
async fn a_base_backup_running_too_long_is_named() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let pg = PgCluster::init().start()?;
    pg.psql(
        "CREATE TABLE pad AS SELECT g, repeat('x', 200) AS t FROM generate_series(1, 100000) g",
    )?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml("[thresholds.wal]\nmax_base_backup_duration = \"2s\"\n")
        .start()
        .await?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .start()?;
    let target = tempfile::tempdir()?;
    // 32 kB/s through about 30 MB: minutes, far longer than the test.
    let mut crawling = Command::new(backwatch_tests::harness::pg::bindir()?.join("pg_basebackup"))
        .env_clear()
        .arg("-h")
        .arg(pg.socket_dir())
        .args(["-p", &pg.port().to_string(), "-U", "postgres", "-w"])
        .args(["--max-rate=32k", "-X", "none", "-D"])
        .arg(target.path().join("b1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let c = collector
        .wait_check(
            "db1",
            "wal.main",
            "to name the stuck base backup",
            WAIT,
            |c| {
                c["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("; base backup pg_basebackup (pid "))
            },
        )
        .await;
    let _ = crawling.kill();
    let _ = crawling.wait();
    assert_eq!(c["status"], "warning", "{c}");
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("archiving ok"), "{summary}");
    assert!(summary.ends_with("(limit 2 s): is it stuck?"), "{summary}");
    assert!(
        c["details"]["base_backups_running"][0]["running_secs"]
            .as_i64()
            .is_some_and(|s| s > 2),
        "{c}"
    );
    Ok(())
}

/// A monitoring role without `pg_monitor` may neither list `archive_status` nor read a
/// segment's age (`pg_stat_file()`): the waiting WAL is estimated from WAL positions and the
/// agent dates the oldest waiting segment itself. A hung `archive_command` is still caught
/// (here against a 5 s limit on the collector); it used to be "archiving ok … oldest of unknown
/// age" for as long as it hung.
#[tokio::test]
async fn a_hung_archiver_is_caught_without_pg_monitor() -> Result<()> {
    let pg = PgCluster::init().start()?;
    pg.psql("CREATE ROLE watcher LOGIN")?;
    // One segment archived (the estimate counts from it), then the archiver hangs.
    let archived = pg.switch_wal()?;
    eventually(WAIT, "the first segment archived", async || {
        anyhow::ensure!(pg.archive_dir().join(&archived).exists(), "not yet");
        Ok(())
    })
    .await;
    pg.set_archive_command("sleep 600")?;
    let waiting = pg.switch_wal()?;

    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml("[thresholds.wal]\nmax_delay = \"5s\"\n")
        .start()
        .await?;
    let dsn = pg.dsn().replace("user=postgres", "user=watcher");
    let _agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &dsn, "1s")
        .start()?;
    let c = collector
        .wait_status("db1", "wal.main", "critical", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("archive delay "), "{summary}");
    assert!(summary.contains(&waiting), "{summary}");
    Ok(())
}
