//! Host labels end to end: agents declare `[labels]`, the collector's groups select hosts by
//! them (`cluster=billing`), and what uses groups follows (an override's thresholds here; the
//! Alertmanager test checks routes and labels on the alert); the API, the daily report and the
//! fleet page in Chromium filter by label; a host that changes its labels changes groups at
//! its next hello, without touching the collector.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{Agent, Browser, Certs, Collector, eventually};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Base disk limits nothing reaches; the `billing` group (by label) warns at 1 % used.
const COLLECTOR: &str = "[thresholds.disk]\nwarning_pct = 100\ncritical_pct = 100\n\
    [groups]\nbilling = [\"cluster=billing\"]\nall-prod = [\"env=prod\"]\n\
    [[overrides]]\ngroups = [\"billing\"]\n[overrides.thresholds.disk]\nwarning_pct = 1\ncritical_pct = 100\n";

fn labels(env: &str, cluster: &str) -> String {
    format!("[labels]\nenv = \"{env}\"\ncluster = \"{cluster}\"\n")
}

#[tokio::test]
async fn labels_pick_groups_overrides_and_filters_and_follow_a_changed_agent() -> Result<()> {
    let certs = Certs::fleet(&["db1", "db2"])?;
    let collector = Collector::sqlite(&certs).toml(COLLECTOR).start().await?;
    let dir = tempfile::tempdir()?;
    let mut db1 = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .toml(&labels("prod", "billing"))
        .start()?;
    let _db2 = Agent::for_host("db2", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .toml(&labels("staging", "orders"))
        .start()?;

    // Same disk, different verdicts: only db1's labels put it in the overridden group.
    collector
        .wait_status("db1", "disk.backup", "warning", WAIT)
        .await;
    collector
        .wait_status("db2", "disk.backup", "ok", WAIT)
        .await;
    let h = collector.api("/api/v1/hosts/db1").await?;
    assert_eq!(
        h["labels"],
        json!({"cluster": "billing", "env": "prod"}),
        "{h}"
    );
    assert_eq!(h["groups"], json!(["all-prod", "billing"]), "{h}");

    // The API and the daily report filter by a selector; a bad one is named.
    let picked = collector.api("/api/v1/hosts?label=cluster=ord*").await?;
    let names: Vec<&str> = picked
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["host"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["db2"]);
    let bad = collector.api("/api/v1/hosts?label=2x=y").await.unwrap_err();
    assert!(
        bad.to_string().contains("400") && bad.to_string().contains("not a label name"),
        "{bad}"
    );
    let report = collector
        .api("/api/v1/reports/daily?format=json&label=env=prod")
        .await?;
    let hosts: Vec<&str> = report["hosts"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["host"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hosts, ["db1"], "{report}");
    assert!(
        report["title"]
            .as_str()
            .is_some_and(|t| t.ends_with("hosts with env=prod")),
        "{}",
        report["title"]
    );

    // The fleet page offers every name=value of the fleet and filters by it.
    let browser = Browser::start().await?;
    browser.goto(&collector.url("/")).await?;
    let options = browser
        .wait_js(
            WAIT,
            "label options",
            "const s = document.querySelector('select[aria-label=\"Filter by label\"]');\
             const o = s ? [...s.options].map(o => o.value).filter(v => v) : [];\
             return o.length === 4 ? o : null;",
        )
        .await;
    assert_eq!(
        options,
        json!([
            "cluster=billing",
            "cluster=orders",
            "env=prod",
            "env=staging"
        ])
    );
    browser
        .js(
            "const s = document.querySelector('select[aria-label=\"Filter by label\"]');\
             s.value = 'cluster=orders'; s.dispatchEvent(new Event('change')); return true;",
            json!([]),
        )
        .await?;
    let shown = browser
        .wait_js(
            WAIT,
            "label filter applied",
            "const t = document.querySelector('table.fleet');\
             return t && t.dataset.rows === '1' ? [...t.querySelectorAll('tbody tr')].map(r => r.dataset.host) : null;",
        )
        .await;
    assert_eq!(shown, json!(["db2"]));
    let search = browser.js("return location.search;", json!([])).await?;
    assert_eq!(search, "?label=cluster%3Dorders");
    browser.screenshot("fleet-label-filter").await?;
    // And by group (a group that selects by label): its options are real options too.
    browser
        .js(
            "const l = document.querySelector('select[aria-label=\"Filter by label\"]');\
             l.value = ''; l.dispatchEvent(new Event('change'));\
             const g = document.querySelector('select[aria-label=\"Filter by group\"]');\
             g.value = 'billing'; g.dispatchEvent(new Event('change')); return g.value;",
            json!([]),
        )
        .await?;
    let shown = browser
        .wait_js(
            WAIT,
            "group filter applied",
            "const t = document.querySelector('table.fleet');\
             return t && t.dataset.rows === '1' ? [...t.querySelectorAll('tbody tr')].map(r => r.dataset.host) : null;",
        )
        .await;
    assert_eq!(shown, json!(["db1"]));
    let errors = browser.script_errors().await?;
    ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // db1 moves to another cluster: at its next hello it leaves the group and its override.
    db1.kill();
    let text = std::fs::read_to_string(db1.config_path())?
        .replace("cluster = \"billing\"", "cluster = \"orders\"");
    std::fs::write(db1.config_path(), text)?;
    db1.launch()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    eventually(WAIT, "db1's new groups", async || {
        let h = collector.api("/api/v1/hosts/db1").await?;
        ensure!(h["groups"] == json!(["all-prod"]), "{h}");
        Ok(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn an_agent_with_a_bad_label_is_refused_naming_the_key() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs).toml("").start().await?;
    let dir = tempfile::tempdir()?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .toml("[labels]\nhost = \"spoofed\"\nteam = \"\"\n")
        .write()?;
    let out = agent.run_cli(&["config", "check"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("labels.host") && err.contains("reserved"),
        "{err}"
    );
    assert!(
        err.contains("labels.team") && err.contains("empty"),
        "{err}"
    );
    Ok(())
}
