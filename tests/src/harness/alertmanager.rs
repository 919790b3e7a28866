//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, clustering
//! off, with a receiver that sends nothing and README's inhibition rule: the tests read its v2
//! API to see what it holds.
//!
//! Invariants: started and answering `/-/ready` before `start` returns; killed on drop.

use super::fleet::http_client;
use super::wait::{eventually, free_port};
use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";

pub struct Alertmanager {
    port: u16,
    child: Child,
    _dir: TempDir,
}

impl Alertmanager {
    pub async fn start() -> Result<Alertmanager> {
        ensure!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing (scripts/test installs prometheus-alertmanager)"
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        // README's inhibition: a critical copy mutes the warning copy of the same check.
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n\
             inhibit_rules:\n\
             \x20 - source_matchers: [alertname=\"BackwatchCheck\", severity=\"critical\"]\n\
             \x20   target_matchers: [alertname=\"BackwatchCheck\", severity=\"warning\"]\n\
             \x20   equal: [host, check]\n",
        )?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus-alertmanager")?;
        let am = Alertmanager {
            port,
            child,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), "Alertmanager ready", async || {
            let r = http_client().get(am.url("/-/ready")).send().await?;
            ensure!(r.status().is_success(), "{}", r.status());
            Ok(())
        })
        .await;
        Ok(am)
    }

    /// `http://127.0.0.1:<port>`, what a Backwatch route's `url` takes.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The alerts it holds now (`GET /api/v2/alerts`: active ones, resolved ones left out).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let v: Value = http_client()
            .get(self.url("/api/v2/alerts"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
