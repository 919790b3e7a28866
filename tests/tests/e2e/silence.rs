//! Silence is a status: an agent that stops talking turns its host silent and its checks
//! unknown, and coming back clears it.

use anyhow::Result;
use backwatch_tests::harness::{Agent, Certs, Collector, eventually};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn killed_agent_goes_silent_and_recovers_when_it_returns() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml("[silence]\nhost_after = \"3s\"\ncheck_grace = \"1s\"\nsweep_every = \"500ms\"")
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let mut agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    agent.kill();
    let c = collector
        .wait_summary("db1", "disk.backup", "unknown", "agent silent since", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("no contact for"),
        "{c}"
    );
    let host = collector.api("/api/v1/hosts/db1").await?;
    assert_eq!(host["silent"], true, "{host}");
    assert_eq!(host["status"], "unknown", "{host}");

    agent.launch()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    eventually(WAIT, "host no longer silent", async || {
        let h = collector.api("/api/v1/hosts/db1").await?;
        anyhow::ensure!(h["silent"] == false, "{h}");
        Ok(())
    })
    .await;
    Ok(())
}
