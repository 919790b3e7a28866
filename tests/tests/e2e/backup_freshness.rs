//! Backup directory freshness end to end, with file times set by `touch -d` rather than waited
//! for.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{consistently, scene};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn backup_file(path: &Path, age: &str) -> Result<()> {
    std::fs::write(path, b"pg_basebackup output")?;
    let ok = Command::new("touch").args(["-d", age]).arg(path).status()?;
    ensure!(ok.success(), "touch -d {age:?} {}", path.display());
    Ok(())
}

#[tokio::test]
async fn stale_daily_backup_is_critical_until_a_fresh_one_lands() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (daily, weekly) = (root.path().join("daily"), root.path().join("weekly"));
    std::fs::create_dir_all(&daily)?;
    std::fs::create_dir_all(&weekly)?;
    backup_file(&daily.join("base-1.tar.gz"), "25 hours ago")?;
    backup_file(&weekly.join("base-w.tar.gz"), "6 days ago")?;

    let scene = scene("db1", |a| {
        a.backup_dir("daily", &daily, "24h", "1s")
            .backup_dir("weekly", &weekly, "7d", "1s")
    })
    .await?;
    let collector = &scene.collector;

    let c = collector
        .wait_status("db1", "backup.daily", "critical", WAIT)
        .await;
    assert_eq!(
        c["summary"].as_str().unwrap_or_default(),
        format!(
            "newest backup base-1.tar.gz is 25 h old (limit 24 h) in {}",
            daily.display()
        ),
        "{c}"
    );
    collector
        .wait_status("db1", "backup.weekly", "ok", WAIT)
        .await;

    // An in-progress file does not count as a backup ...
    backup_file(&daily.join("base-2.tar.gz.part"), "now")?;
    consistently(
        Duration::from_secs(3),
        "backup.daily critical with only a .part file",
        async || {
            let c = collector.check("db1", "backup.daily").await?;
            ensure!(c["status"] == "critical", "{c}");
            Ok(())
        },
    )
    .await;

    // ... a finished one does.
    backup_file(&daily.join("base-2.tar.gz"), "10 minutes ago")?;
    let c = collector
        .wait_status("db1", "backup.daily", "ok", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("newest backup base-2.tar.gz is 10 min old"),
        "{summary}"
    );

    let host = collector.api("/api/v1/hosts/db1").await?;
    assert_eq!(host["status"], "ok", "{host}");
    Ok(())
}

#[tokio::test]
async fn missing_backup_directory_is_critical_and_clears_when_it_appears() -> Result<()> {
    let root = tempfile::tempdir()?;
    let daily = root.path().join("daily");
    let scene = scene("db1", |a| a.backup_dir("daily", &daily, "24h", "1s")).await?;
    let collector = &scene.collector;
    let c = collector
        .wait_status("db1", "backup.daily", "critical", WAIT)
        .await;
    assert_eq!(
        c["summary"].as_str().unwrap_or_default(),
        format!("backup directory {} is missing", daily.display())
    );
    std::fs::create_dir_all(&daily)?;
    collector
        .wait_summary("db1", "backup.daily", "critical", "no backup file in", WAIT)
        .await;
    backup_file(&daily.join("base.tar"), "1 hour ago")?;
    collector
        .wait_status("db1", "backup.daily", "ok", WAIT)
        .await;
    Ok(())
}

/// A probe removed from the agent's configuration is retired at the agent's next hello: the
/// check leaves the host (so it never turns overdue) and its open alert resolves.
#[tokio::test]
async fn a_probe_removed_from_the_configuration_is_retired_and_its_alert_resolves() -> Result<()> {
    use backwatch_tests::harness::{Agent, eventually};
    let root = tempfile::tempdir()?;
    let daily = root.path().join("daily");
    std::fs::create_dir_all(&daily)?;
    backup_file(&daily.join("base-1.tar.gz"), "1 hour ago")?;
    let gone = root.path().join("old-server-backups");
    let mut scene = scene("db1", |a| {
        a.backup_dir("daily", &daily, "24h", "1s")
            .backup_dir("old", &gone, "24h", "1s")
    })
    .await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "backup.old", "critical", WAIT)
        .await;
    let alert_open = eventually(WAIT, "the backup.old alert", async || {
        let open = collector.api("/api/v1/alerts?state=open").await?;
        open.as_array()
            .and_then(|a| a.iter().find(|a| a["check"] == "backup.old").cloned())
            .ok_or_else(|| anyhow::anyhow!("not open yet: {open}"))
    })
    .await;

    // The collector is away a moment, so results of backup.old wait in the agent's spool;
    // then the operator removes the probe and restarts the agent on that spool.
    scene.collector.stop()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    scene.agent.kill();
    let spool = scene.agent.spool_dir();
    let waiting = scene.agent.spooled_ids()?;
    ensure!(
        waiting.len() >= 2,
        "results waiting in the spool: {waiting:?}"
    );
    scene.collector.restart().await?;
    let collector = &scene.collector;
    let agent = Agent::for_host("db1", &scene.certs, collector)
        .backup_dir("daily", &daily, "24h", "1s")
        .spool_dir(&spool)
        .start()?;
    eventually(WAIT, "backup.old to leave the host", async || {
        let host = collector.api("/api/v1/hosts/db1").await?;
        let names: Vec<&str> = host["checks"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        ensure!(!names.contains(&"backup.old"), "still there: {names:?}");
        ensure!(names.contains(&"backup.daily"), "{names:?}");
        Ok(())
    })
    .await;
    let id = alert_open["id"].as_i64().unwrap_or_default();
    let alert = eventually(WAIT, "the alert to resolve", async || {
        let a = collector.api(&format!("/api/v1/alerts/{id}")).await?;
        ensure!(a["resolved_at"].is_string(), "{a}");
        Ok(a)
    })
    .await;
    assert!(
        alert
            .to_string()
            .contains("retired: no longer in the agent's configuration"),
        "{alert}"
    );
    // Its spooled results were taken off the spool, not stored: it does not come back.
    eventually(WAIT, "the spool drained", async || {
        let left = agent.spooled_ids()?;
        ensure!(left.is_empty(), "{left:?}");
        Ok(())
    })
    .await;
    consistently(
        Duration::from_secs(3),
        "backup.old stays gone",
        async || {
            let host = collector.api("/api/v1/hosts/db1").await?;
            ensure!(!host.to_string().contains("backup.old"), "{host}");
            Ok(())
        },
    )
    .await;
    Ok(())
}
