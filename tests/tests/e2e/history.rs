//! Fleet history survives a collector restart, on the embedded SQLite store and on PostgreSQL;
//! results measured while the collector was down arrive from the agent's spool.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::{Agent, Certs, Collector, CollectorBuilder, PgCluster, eventually};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn ids(history: &Value) -> BTreeSet<String> {
    history["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["result_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn history_survives_restart(builder: CollectorBuilder<'_>, certs: &Certs) -> Result<()> {
    let mut collector = builder.start().await?;
    let dir = tempfile::tempdir()?;
    let agent = Agent::for_host("db1", certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let path = "/api/v1/hosts/db1/history?check=disk.backup&since=1h";
    let before = eventually(WAIT, "three stored results", async || {
        let h = collector.api(path).await?;
        ensure!(ids(&h).len() >= 3, "only {} results", ids(&h).len());
        Ok(ids(&h))
    })
    .await;

    collector.stop()?;
    // The agent keeps measuring into its spool while the collector is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    collector.restart().await?;

    let after = eventually(
        WAIT,
        "history kept and extended after restart",
        async || {
            let h = collector.api(path).await?;
            let now = ids(&h);
            ensure!(
                now.is_superset(&before),
                "lost results: {:?}",
                before.difference(&now).collect::<Vec<_>>()
            );
            ensure!(
                now.len() >= before.len() + 3,
                "{} results, {} before",
                now.len(),
                before.len()
            );
            Ok(h)
        },
    )
    .await;
    // Measurements taken during the outage were stored once each, in measurement order.
    // Compared as instants: RFC 3339 text drops a zero fraction ("…:52Z" after "…:52.969Z"
    // sorts wrongly as a string).
    let times: Vec<chrono::DateTime<chrono::Utc>> = after["results"]
        .as_array()
        .context("results")?
        .iter()
        .filter_map(|r| r["measured_at"].as_str()?.parse().ok())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "history is oldest first");
    assert_eq!(
        after["transitions"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    drop(agent);
    Ok(())
}

#[tokio::test]
async fn sqlite_history_survives_a_collector_restart() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    history_survives_restart(Collector::sqlite(&certs), &certs).await
}

#[tokio::test]
async fn postgres_history_survives_a_collector_restart() -> Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database("backwatch")?;
    let certs = Certs::fleet(&["db1"])?;
    history_survives_restart(
        Collector::postgres(&certs, &pg.url_for("backwatch")),
        &certs,
    )
    .await
}
