//! Retiring a host (README, "Retire a host"), end to end: a real agent with an open alert, the
//! API and the CLI, what the fleet view, /metrics, the alert and its mail show, the refused
//! certificate, and the host's return.

use anyhow::{Result, ensure};
use backwatch_tests::harness::alerting::{DB1_DISK_WARNS, DBA, alerting_toml};
use backwatch_tests::harness::fleet::token_file;
use backwatch_tests::harness::{Agent, Certs, Collector, Smtp, bin, count, eventually};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn a_retired_host_leaves_the_fleet_its_alert_closes_and_it_can_come_back() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1", "db2"])?;
    let keys = tempfile::tempdir()?;
    let (ops_file, ops) = token_file(keys.path(), "ops")?;
    let (oncall_file, oncall) = token_file(keys.path(), "oncall")?;
    let toml = format!(
        "{}{DB1_DISK_WARNS}\
         [[http.tokens]]\nname = \"ops\"\ntoken_file = \"{ops_file}\"\nrole = \"admin\"\n\
         [[http.tokens]]\nname = \"oncall\"\ntoken_file = \"{oncall_file}\"\nrole = \"ack\"\n",
        alerting_toml(&smtp)
    );
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let http = collector.http_client();
    let send = async |method: reqwest::Method, token: &str, body: serde_json::Value| {
        let resp = http
            .request(method, collector.url("/api/v1/hosts/db1/retire"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let code = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        anyhow::Ok((code, v))
    };
    let get = async |path: &str| -> Result<serde_json::Value> {
        Ok(http
            .get(collector.url(path))
            .bearer_auth(&ops)
            .send()
            .await?
            .json()
            .await?)
    };
    let dir = tempfile::tempdir()?;
    let agent = |host: &str| {
        Agent::for_host(host, &certs, &collector)
            .disk("backup", dir.path(), "1s")
            .start()
    };
    let mut db1 = agent("db1")?;
    let _db2 = agent("db2")?;
    smtp.wait_for(WAIT, "the disk warning", |m| {
        count(m, DBA, "[WARNING] db1 disk.backup") == 1
    })
    .await;

    // Retire it: admin only; who is the token's name, whatever the body says.
    let why = json!({"by": "mallory", "reason": "decommissioned, replaced by db3"});
    let (code, refused) = send(reqwest::Method::POST, &oncall, why.clone()).await?;
    assert_eq!(code, 403, "an ack token may not: {refused}");
    let (code, bad) = send(reqwest::Method::POST, &ops, json!({"by": "x"})).await?;
    assert_eq!(code, 400, "a reason is required: {bad}");
    let (code, retired) = send(reqwest::Method::POST, &ops, why.clone()).await?;
    assert_eq!(code, 201, "{retired}");
    assert_eq!(retired["retired_by"], "ops");
    let (code, again) = send(reqwest::Method::POST, &ops, why).await?;
    assert_eq!(code, 409, "{again}");
    // The Nagios plugin says so, rather than the host's last (history) states.
    let out = Command::new(bin("backwatch-collector"))
        .args(["status", "--host", "db1", "--config"])
        .arg(collector.config_path())
        .output()?;
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{line}");
    assert!(
        line.starts_with("BACKWATCH UNKNOWN - host \"db1\" was retired by ops at ")
            && line
                .trim_end()
                .ends_with(": decommissioned, replaced by db3"),
        "{line}"
    );

    // Its open alert resolves with the reason, and those who heard of it are told.
    let resolved = eventually(WAIT, "db1's alert resolved", async || {
        let alerts = get("/api/v1/alerts?state=resolved").await?;
        let a = alerts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["host"] == "db1" && a["check"] == "disk.backup")
            .cloned();
        a.ok_or_else(|| anyhow::anyhow!("not yet: {alerts}"))
    })
    .await;
    assert_eq!(
        resolved["summary"], "host retired by ops: decommissioned, replaced by db3",
        "{resolved}"
    );
    smtp.wait_for(WAIT, "the resolution", |m| {
        count(m, DBA, "[RESOLVED] db1 disk.backup") == 1
    })
    .await;

    // Out of the fleet view and /metrics; its own page and history stay readable.
    let hosts = get("/api/v1/hosts").await?;
    let names: Vec<&str> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(names, ["db2"], "{hosts}");
    let one = get("/api/v1/hosts/db1").await?;
    assert_eq!(one["retired"]["reason"], "decommissioned, replaced by db3");
    let history = get("/api/v1/hosts/db1/history?check=disk.backup").await?;
    ensure!(
        history["results"].as_array().is_some_and(|r| !r.is_empty()),
        "{history}"
    );
    let page = http
        .get(collector.url("/metrics"))
        .bearer_auth(&ops)
        .send()
        .await?
        .text()
        .await?;
    assert!(!page.contains("host=\"db1\""), "{page}");
    assert!(page.contains("host=\"db2\""));

    // Its certificate is refused from now on: a new stream is turned away, saying why.
    db1.kill();
    let _db1_again = agent("db1")?;
    eventually(WAIT, "the retired host refused", async || {
        ensure!(
            collector.log().contains("refusing a retired host"),
            "not yet"
        );
        Ok(())
    })
    .await;

    // The CLI lists it and brings it back; the agent's next attempt is let in.
    let cli = |args: &[&str]| {
        Command::new(bin("backwatch-collector"))
            .args(args)
            .arg("--config")
            .arg(collector.config_path())
            .output()
    };
    let listed = cli(&["hosts", "retired"])?;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.starts_with("db1\t") && text.contains("\tops\tdecommissioned"),
        "{text}"
    );
    let before = get("/api/v1/hosts/db1").await?["last_contact"].clone();
    let back = cli(&["hosts", "unretire", "db1"])?;
    assert!(back.status.success(), "{back:?}");
    let again = cli(&["hosts", "unretire", "db1"])?;
    assert_eq!(again.status.code(), Some(1), "not retired any more");
    eventually(
        Duration::from_secs(90),
        "db1 back and reporting",
        async || {
            let hosts = get("/api/v1/hosts").await?;
            let db1 = hosts
                .as_array()
                .and_then(|h| h.iter().find(|h| h["host"] == "db1"))
                .cloned()
                .unwrap_or_default();
            ensure!(
                db1["last_contact"].as_str() > before.as_str(),
                "not yet: {db1}"
            );
            Ok(())
        },
    )
    .await;
    Ok(())
}
