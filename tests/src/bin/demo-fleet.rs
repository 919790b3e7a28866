//! The demo's fleet (`scripts/demo`): demo hosts with a month of history written into the
//! demo collector's store before it starts, so the fleet page, host charts, trends, alerts
//! and the monthly review have something to show on a fresh machine.
//!
//! Usage: `demo-fleet --url sqlite:///path/collector.db [--hosts 24] [--days 35]`.

use anyhow::{Context, Result};

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
    let url = arg(&args, "--url").context("--url sqlite:///… is required")?;
    let hosts: usize = arg(&args, "--hosts").map_or(Ok(24), |v| v.parse())?;
    let days: i64 = arg(&args, "--days").map_or(Ok(35), |v| v.parse())?;
    let names = backwatch_tests::harness::seed::demo_fleet(&url, hosts, days).await?;
    println!(
        "{} demo hosts with {days} days of history ({} … {})",
        names.len(),
        names.first().map_or("", String::as_str),
        names.last().map_or("", String::as_str)
    );
    Ok(())
}
