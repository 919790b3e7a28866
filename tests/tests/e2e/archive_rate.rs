//! Archive success rate and archive_command latency from successive samples: a private cluster
//! whose archive_command takes a second, the real agent reading pg_stat_archiver and the
//! archive_status listing, the collector's verdict details over time.

use anyhow::Result;
use backwatch_tests::harness::{PgCluster, scene};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn slow_archive_command_shows_its_latency_and_the_success_rate() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    pg.set_archive_command(&format!("sleep 1 && {}", pg.copy_archive_command()))?;
    let scene = scene("db1", |a| a.wal("main", &pg.dsn(), "1s")).await?;
    let collector = &scene.collector;
    collector.wait_status("db1", "wal.main", "ok", WAIT).await;

    pg.switch_wal_archived(WAIT).await?;
    let c = collector
        .wait_check(
            "db1",
            "wal.main",
            "to show the archive latency",
            WAIT,
            |c| c["details"]["last_archive_latency_ms"].as_i64() >= Some(1000),
        )
        .await;
    // The ready-to-archived time includes the second archive_command sleeps, and not much more.
    let latency = c["details"]["last_archive_latency_ms"]
        .as_i64()
        .unwrap_or(0);
    assert!(latency < 30_000, "{c}");
    assert_eq!(c["status"], "ok", "{c}");
    // Every later sample compares with the one before: no attempt failed.
    let c = collector
        .wait_check(
            "db1",
            "wal.main",
            "to compare with the previous sample",
            WAIT,
            |c| c["details"]["since_previous"].is_object(),
        )
        .await;
    assert_eq!(c["details"]["since_previous"]["failed"], 0, "{c}");
    Ok(())
}
