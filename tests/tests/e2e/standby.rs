//! Role awareness (docs/checks.md R13): a standby does not archive unless `archive_mode =
//! always`, and its `pg_stat_archiver` must not raise alarms.

use anyhow::Result;
use backwatch_tests::harness::{PgCluster, scene};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn standby_with_archive_mode_on_is_not_applicable() -> Result<()> {
    let primary = PgCluster::init().start()?;
    // The standby inherits the primary's settings, including a failing archive_command: with
    // archive_mode = on it must still not be judged.
    let standby = primary
        .standby()
        .archive_mode("on")
        .archive_command("false")
        .start()?;
    let scene = scene("db2", |a| a.wal("main", &standby.dsn(), "1s")).await?;
    let collector = &scene.collector;
    primary.switch_wal()?;
    let c = collector.wait_status("db2", "wal.main", "ok", WAIT).await;
    assert_eq!(
        c["summary"], "not applicable: standby (archiving is done by the primary)",
        "{c}"
    );
    Ok(())
}

#[tokio::test]
async fn standby_with_archive_mode_always_is_judged_like_a_primary() -> Result<()> {
    let primary = PgCluster::init().start()?;
    let standby = primary
        .standby()
        .archive_mode("always")
        .archive_command("false")
        .start()?;
    let scene = scene("db2", |a| a.wal("main", &standby.dsn(), "1s")).await?;
    let collector = &scene.collector;
    primary.switch_wal()?;
    let c = collector
        .wait_summary("db2", "wal.main", "critical", "archiving is failing", WAIT)
        .await;
    assert_eq!(c["details"]["in_recovery"], true, "{c}");
    Ok(())
}
