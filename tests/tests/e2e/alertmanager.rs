//! Alertmanager routes end to end: the collector keeps a real Alertmanager's alerts in step
//! with its own (`collector/src/notify/alertmanager.rs`): an alert appears there with its
//! labels and annotations (a critical one also as a warning), and ends there once resolved.

use anyhow::{Result, ensure};
use backwatch_tests::harness::alerting::FAST;
use backwatch_tests::harness::alertmanager::Alertmanager;
use backwatch_tests::harness::{Agent, Certs, Collector, eventually};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn touch(path: &std::path::Path, when: &str) -> Result<()> {
    std::fs::write(path, vec![0u8; 4096])?;
    let ok = Command::new("touch")
        .args(["-d", when])
        .arg(path)
        .status()?
        .success();
    ensure!(ok, "touch -d {when}");
    Ok(())
}

#[tokio::test]
async fn an_alert_appears_in_alertmanager_with_its_labels_and_ends_there_when_resolved()
-> Result<()> {
    let am = Alertmanager::start().await?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!(
        "{FAST}alertmanager_every = \"1s\"\n\
         [groups]\nbilling = [\"cluster=billing\"]\n\
         [[routes]]\nname = \"oncall\"\nchannel = \"alertmanager\"\nurl = \"{}\"\nmin_status = \"warning\"\n",
        am.base()
    );
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let daily = tempfile::tempdir()?;
    touch(&daily.path().join("base.tar.gz"), "3 days ago")?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .backup_dir("daily", daily.path(), "24h", "1s")
        .toml("[labels]\nenv = \"prod\"\ncluster = \"billing\"\n")
        .start()?;

    // Critical is sent with both severities, as paired Prometheus rules fire (so an escalation
    // never ends the warning one).
    let copies: Vec<Value> = eventually(WAIT, "the alert in Alertmanager", async || {
        let mut copies: Vec<Value> = am
            .alerts()
            .await?
            .into_iter()
            .filter(|a| a["labels"]["check"] == "backup.daily")
            .collect();
        ensure!(copies.len() == 2, "{copies:#?}");
        copies.sort_by_key(|a| a["labels"]["severity"].to_string());
        Ok(copies)
    })
    .await;
    assert_eq!(copies[1]["labels"]["severity"], "warning", "{copies:#?}");
    // README's inhibition rule mutes it there.
    eventually(WAIT, "the warning copy inhibited", async || {
        let warning = am
            .alerts()
            .await?
            .into_iter()
            .find(|a| {
                a["labels"]["check"] == "backup.daily" && a["labels"]["severity"] == "warning"
            })
            .ok_or_else(|| anyhow::anyhow!("gone"))?;
        ensure!(warning["status"]["state"] == "suppressed", "{warning}");
        ensure!(
            warning["status"]["inhibitedBy"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{warning}"
        );
        Ok(())
    })
    .await;
    let alert = copies[0].clone();
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "BackwatchCheck", "{alert}");
    assert_eq!(labels["host"], "db1", "{alert}");
    assert_eq!(labels["severity"], "critical", "{alert}");
    // The group selects by the agent's label; the host's own labels ride along.
    assert_eq!(labels["groups"], "billing", "{alert}");
    assert_eq!(labels["env"], "prod", "{alert}");
    assert_eq!(labels["cluster"], "billing", "{alert}");
    let notes = &alert["annotations"];
    assert!(
        notes["summary"]
            .as_str()
            .is_some_and(|s| s.contains("base.tar.gz")),
        "{alert}"
    );
    assert!(
        notes["procedure"]
            .as_str()
            .is_some_and(|p| p.starts_with("Check the backup logs")),
        "{alert}"
    );
    assert!(
        notes["dashboard"]
            .as_str()
            .is_some_and(|d| d.ends_with("/hosts/db1")),
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");

    // A fresh backup: the check clears, the alert resolves, and Alertmanager ends it.
    touch(&daily.path().join("base-2.tar.gz"), "1 minute ago")?;
    eventually(WAIT, "the alert gone from Alertmanager", async || {
        let left: Vec<Value> = am
            .alerts()
            .await?
            .into_iter()
            .filter(|a| a["labels"]["check"] == "backup.daily")
            .collect();
        ensure!(left.is_empty(), "{left:#?}");
        Ok(())
    })
    .await;
    Ok(())
}
