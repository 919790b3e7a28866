//! Clock sanity: an agent whose clock runs ahead is flagged and its skew shown, not silently
//! stored as truth.

use anyhow::{Context, Result};
use backwatch_tests::harness::scene;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn libfaketime() -> Result<String> {
    for dir in std::fs::read_dir("/usr/lib")? {
        let p = dir?.path().join("faketime/libfaketime.so.1");
        if p.exists() {
            return Ok(p.display().to_string());
        }
    }
    None.context("libfaketime.so.1 not found: apt-get install faketime (scripts/test does)")
}

#[tokio::test]
async fn agent_clock_two_hours_ahead_is_flagged() -> Result<()> {
    let lib = libfaketime()?;
    let dir = tempfile::tempdir()?;
    let s = scene("db1", |a| {
        a.disk("backup", dir.path(), "1s")
            .env("LD_PRELOAD", &lib)
            .env("FAKETIME", "+2h")
    })
    .await?;
    let c = s
        .collector
        .wait_check(
            "db1",
            "disk.backup",
            "flagged as measured in the future",
            WAIT,
            |c| {
                c["summary"].as_str().is_some_and(|t| {
                    t.contains("[agent clock ahead: measured ") && t.ends_with(" in the future]")
                })
            },
        )
        .await;
    let ahead = c["details"]["clock_ahead_secs"].as_i64().unwrap_or(0);
    assert!((7100..7300).contains(&ahead), "{c}");
    let host = s.collector.api("/api/v1/hosts/db1").await?;
    assert_eq!(host["clock_suspect"], true, "{host}");
    let skew = host["clock_skew_ms"].as_i64().unwrap_or(0);
    assert!((-7_300_000..-7_100_000).contains(&skew), "{host}");
    Ok(())
}
