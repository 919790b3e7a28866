//! Reconnect storm: 500 simulated agents on real mutual-TLS streams ride through a collector
//! restart; reconnects spread out (exponential backoff with full jitter) and every agent is
//! back without any of them hammering the collector.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{Certs, Collector, eventually};
use backwatch_tests::sim;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const AGENTS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_agents_reconnect_after_a_collector_restart() -> Result<()> {
    let hosts = sim::host_names(AGENTS);
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let certs = Certs::fleet(&names)?;
    let mut collector = Collector::sqlite(&certs).start().await?;
    let fleet = sim::start(
        &certs,
        &hosts,
        &collector.grpc_url(),
        Duration::from_secs(5),
    )?;

    eventually(
        Duration::from_secs(120),
        "all agents connected",
        async || {
            let n = fleet.connected();
            ensure!(n == AGENTS, "{n} of {AGENTS} connected");
            Ok(())
        },
    )
    .await;
    let hosts_seen = collector.api("/api/v1/hosts").await?;
    assert_eq!(hosts_seen.as_array().map(Vec::len), Some(AGENTS));

    let attempts_before = fleet.total(|s| s.attempts.load(Ordering::Relaxed));
    collector.restart().await?;
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(120),
        "all agents back after the restart",
        async || {
            let n = fleet.connected();
            let sessions = fleet.total(|s| s.sessions.load(Ordering::Relaxed));
            ensure!(
                n == AGENTS && sessions >= 2 * AGENTS as u64,
                "{n} of {AGENTS} connected, {sessions} sessions"
            );
            Ok(())
        },
    )
    .await;
    let recovery = restarted.elapsed();
    let retries = fleet.total(|s| s.attempts.load(Ordering::Relaxed)) - attempts_before;
    let worst = fleet
        .agents
        .iter()
        .map(|(_, s)| s.attempts.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    eprintln!(
        "storm: {AGENTS} agents back in {recovery:?} with {retries} connection attempts (worst agent {worst} in total)"
    );
    // Backoff, not a hammer: a handful of attempts per agent at most.
    assert!(worst <= 8, "an agent tried {worst} times");
    assert!(
        retries <= 4 * AGENTS as u64,
        "{retries} attempts for {AGENTS} agents"
    );
    assert!(
        !collector.log().contains("accept failed"),
        "collector ran out of something"
    );
    // And the collector stores what each agent sends after coming back (one result at the
    // start of every session).
    eventually(
        Duration::from_secs(60),
        "results of both sessions acknowledged",
        async || {
            let behind = fleet
                .agents
                .iter()
                .filter(|(_, s)| s.acked.load(Ordering::Relaxed) < 2)
                .count();
            ensure!(
                behind == 0,
                "{behind} agents without two acknowledged results"
            );
            Ok(())
        },
    )
    .await;
    Ok(())
}
