//! WAL archiving end to end: a private PostgreSQL cluster, the real agent probing it over a
//! socket, the real collector judging over mutual TLS, and the API showing the verdict.

use anyhow::Result;
use backwatch_tests::harness::{PgCluster, free_port, scene};
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
