//! SIGHUP reloads the collector's rules without a restart (`collector/src/server.rs`, `Live`):
//! thresholds, routes and dashboard tokens change on a running collector with an agent
//! streaming, and a file with a mistake changes nothing and says which key is wrong; nor does
//! one that moves the HTTP listener (who may use the API depends on it).

use anyhow::{Result, ensure};
use backwatch_tests::harness::alerting::FAST;
use backwatch_tests::harness::fleet::token_file;
use backwatch_tests::harness::webhook::Webhook;
use backwatch_tests::harness::{Agent, Certs, Collector, consistently, eventually};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Disk limits no disk reaches.
const NEVER: &str = "[thresholds.disk]\nwarning_pct = 100\ncritical_pct = 100\n";

async fn get(collector: &Collector, path: &str, token: Option<&str>) -> Result<(u16, Value)> {
    let mut req = collector.http_client().get(collector.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn disk_status(collector: &Collector, token: &str) -> Result<String> {
    let (code, h) = get(collector, "/api/v1/hosts/db1", Some(token)).await?;
    ensure!(code == 200, "{code} {h}");
    let c = h["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "disk.backup"))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(c["status"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn sighup_reloads_thresholds_routes_and_tokens_and_a_bad_file_changes_nothing() -> Result<()>
{
    let hook = Webhook::start().await?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!("{FAST}{NEVER}"))
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    // New limits, a new route and a first token, all in one reload.
    let (token_path, token) = token_file(dir.path(), "screen.token")?;
    let path = collector.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path)?.replace(
        "warning_pct = 100\ncritical_pct = 100",
        "warning_pct = 1\ncritical_pct = 100",
    ) + &format!(
        "[[routes]]\nname = \"pager\"\nchannel = \"webhook\"\nurl = \"{}\"\nchecks = [\"disk.*\"]\n\
         [[http.tokens]]\nname = \"screen\"\ntoken_file = \"{token_path}\"\nrole = \"read\"\n",
        hook.url()
    );
    std::fs::write(&path, &text)?;
    collector.sighup();

    eventually(WAIT, "the new threshold applied", async || {
        let s = disk_status(&collector, &token).await?;
        ensure!(s == "warning", "disk.backup is {s}");
        Ok(())
    })
    .await;
    let (code, _) = get(&collector, "/api/v1/hosts", None).await?;
    assert_eq!(code, 401, "with a token configured, no token is refused");
    eventually(WAIT, "the reloaded route delivered", async || {
        let got = hook.received();
        ensure!(
            got.iter()
                .any(|r| r.body["kind"] == "opened" && r.body["alert"]["check"] == "disk.backup"),
            "{} received",
            got.len()
        );
        Ok(())
    })
    .await;
    assert!(
        collector.log().contains("configuration reloaded"),
        "{}",
        collector.log()
    );

    // A mistake: nothing changes, and the log names the file and the key.
    let bad = text.replace("warning_pct = 1\n", "warning_pct = 101\n");
    std::fs::write(&path, bad)?;
    collector.sighup();
    eventually(WAIT, "the refusal logged", async || {
        let log = collector.log();
        ensure!(
            log.contains("reload refused") && log.contains("thresholds.disk"),
            "{log}"
        );
        ensure!(
            log.contains(&path.display().to_string()),
            "no file name: {log}"
        );
        Ok(())
    })
    .await;
    consistently(
        Duration::from_secs(3),
        "the running rules kept",
        async || {
            let s = disk_status(&collector, &token).await?;
            ensure!(s == "warning", "disk.backup is {s}");
            Ok(())
        },
    )
    .await;

    // A valid file that moves the HTTP listener (and drops the tokens: open access on the
    // loopback address it names) is refused whole: the running listener is not that one.
    let port = collector.http_port;
    let moved = text
        .replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1")
        .replace("[[http.tokens]]", "# [[http.tokens]]")
        .replace("name = \"screen\"", "# screen")
        .replace(&format!("token_file = \"{token_path}\""), "# token")
        .replace("role = \"read\"", "# read");
    std::fs::write(&path, moved)?;
    collector.sighup();
    eventually(WAIT, "the moved listener refused", async || {
        let log = collector.log();
        ensure!(
            log.contains("http.listen or http.tls_cert/tls_key changed"),
            "{log}"
        );
        Ok(())
    })
    .await;
    let (code, _) = get(&collector, "/api/v1/hosts", None).await?;
    assert_eq!(code, 401, "the tokens still apply");
    Ok(())
}
