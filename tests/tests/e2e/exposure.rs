//! The exposure advisory end to end (docs/checks.md R19, opt-in per `[[wal]]`): a private
//! cluster with `archive_timeout = 0` has written WAL that no segment switch has handed to the
//! archiver; the collector says how much, and a switch clears it.

use anyhow::Result;
use backwatch_tests::harness::{PgCluster, scene};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn wal_not_archivable_yet_is_an_advisory_until_the_segment_switches() -> Result<()> {
    let pg = PgCluster::init().start()?;
    pg.psql("CREATE TABLE exposed AS SELECT g FROM generate_series(1, 1000) g")?;
    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[wal]]\nname = \"main\"\ndsn = \"{}\"\ninterval = \"1s\"\nexposure_advisory = true\n\
             [[wal]]\nname = \"quiet\"\ndsn = \"{}\"\ninterval = \"1s\"\n",
            pg.dsn(),
            pg.dsn()
        ))
    })
    .await?;
    let collector = &scene.collector;
    let c = collector
        .wait_summary("db1", "wal.main", "warning", "advisory: ", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("of WAL written since the last segment switch (nothing archived yet) are not archivable yet (archive_timeout = 0)"),
        "{c}"
    );
    // Off by default: the same server without the advisory is simply ok (A7).
    collector.wait_status("db1", "wal.quiet", "ok", WAIT).await;

    // A segment switch hands the WAL to the archiver: nothing is exposed any more.
    pg.switch_wal_archived(WAIT).await?;
    collector
        .wait_summary("db1", "wal.main", "ok", "archiving ok", WAIT)
        .await;
    Ok(())
}
