//! The demo's fleet (`scripts/demo`): demo hosts with a month of history written into the
//! demo collector's store before it starts, so the fleet page, host charts, trends, alerts
//! and the monthly review have something to show on a fresh machine; then, with `--live`,
//! the same hosts keep reporting over the agent protocol (mutual TLS, one stream each, the
//! fleet simulator), so a demo left running stays a fleet and not a list of silent hosts.
//!
//! Usage:
//!   `demo-fleet --url sqlite:///path/collector.db [--hosts 24] [--days 35]`   (seed)
//!   `demo-fleet --live https://localhost:7443 --certs DIR [--hosts 24] [--days 35] [--every 60]`
//! `--certs` holds `ca.pem` and `agents/db-01.pem`, `agents/db-01-key.pem`, … as
//! `backwatch-collector certs --agent db-01 …` writes them.

use anyhow::{Context, Result};
use backwatch_proto::wire;
use backwatch_tests::harness::seed;
use backwatch_tests::sim;
use chrono::Utc;
use std::path::PathBuf;
use std::time::Duration;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = arg(&args, "--hosts").map_or(Ok(24), |v| v.parse())?;
    let days: i64 = arg(&args, "--days").map_or(Ok(35), |v| v.parse())?;
    if let Some(url) = arg(&args, "--live") {
        let certs = PathBuf::from(arg(&args, "--certs").context("--live needs --certs DIR")?);
        let every: u64 = arg(&args, "--every").map_or(Ok(60), |v| v.parse())?;
        return live(&url, &certs, hosts, days, every).await;
    }
    let url = arg(&args, "--url").context("--url sqlite:///… is required")?;
    let names = seed::demo_fleet(&url, hosts, days).await?;
    println!(
        "{} demo hosts with {days} days of history ({} … {})",
        names.len(),
        names.first().map_or("", String::as_str),
        names.last().map_or("", String::as_str)
    );
    Ok(())
}

/// Every demo host but the silent one reports every `every` seconds, going on from where its
/// seeded history ends, until the process is stopped.
async fn live(
    url: &str,
    certs: &std::path::Path,
    hosts: usize,
    days: i64,
    every: u64,
) -> Result<()> {
    let ca = std::fs::read(certs.join("ca.pem")).context("reading the fleet CA")?;
    let now = Utc::now();
    let mut agents = Vec::new();
    for mut host in seed::demo_hosts_at(hosts, days, now) {
        if host.silent_at(now) {
            continue;
        }
        let name = host.name.clone();
        let (cert, key) = (
            certs.join(format!("agents/{name}.pem")),
            certs.join(format!("agents/{name}-key.pem")),
        );
        let endpoint = sim::endpoint_files(&ca, &cert, &key, url)
            .with_context(|| format!("certificate of {name} in {}", certs.display()))?;
        let labels = host.labels().into_iter().collect();
        let mut last = now;
        let next = Box::new(move || {
            let at = Utc::now();
            let step = (at - last).num_milliseconds() as f64 / 3_600_000.0;
            last = at;
            host.results(at, step, every as u32)
                .into_iter()
                .map(|mut r| {
                    // Result ids are letters, digits and '-' only (the collector refuses others).
                    r.result_id = format!(
                        "{}-{}-live-{}",
                        r.name,
                        r.kind.name(),
                        at.timestamp_millis()
                    );
                    wire::ProbeResult::from(&r)
                })
                .collect()
        });
        agents.push((name, endpoint, sim::Script { labels, next }));
    }
    let count = agents.len();
    let _fleet = sim::start_scripted(agents, Duration::from_secs(every));
    println!("{count} demo hosts reporting every {every} s to {url}");
    std::future::pending::<()>().await;
    Ok(())
}
