//! Plain `pg_basebackup` directories in a backup directory check: the newest backup's start
//! and end time, duration, WAL range and size, read from its `backup_label` and
//! `backup_manifest` by the real agent and shown by the collector's API.

use anyhow::Result;
use backwatch_tests::harness::{PgCluster, scene};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn plain_base_backup_appears_with_its_duration_and_wal_range() -> Result<()> {
    base_backup_appears(&[]).await
}

/// A tar-format backup (`-Ft`) keeps its backup_label inside base.tar: read from there.
#[tokio::test]
async fn tar_base_backup_appears_with_its_duration_and_wal_range() -> Result<()> {
    base_backup_appears(&["-Ft"]).await
}

async fn base_backup_appears(format: &[&str]) -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let root = tempfile::tempdir()?;
    let backup = root.path().join("2026-11-25");
    let mut args = vec!["-l", "nightly"];
    args.extend_from_slice(format);
    pg.base_backup(&backup, &args)?;
    let scene = scene("db1", |a| a.backup_dir("daily", root.path(), "24h", "1s")).await?;
    let c = scene
        .collector
        .wait_check(
            "db1",
            "backup.daily",
            "to show the base backup",
            WAIT,
            |c| c["details"]["newest_base_backup"].is_object(),
        )
        .await;
    assert_eq!(c["status"], "ok", "{c}");
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("; newest base backup took "), "{c}");
    let b = &c["details"]["newest_base_backup"];
    assert_eq!(b["path"], backup.display().to_string(), "{c}");
    assert_eq!(b["label"], "nightly", "{c}");
    assert_eq!(b["error"], serde_json::Value::Null, "{c}");
    assert!(b["duration_secs"].as_i64().is_some_and(|d| d >= 0), "{c}");
    assert!(
        b["start_time"].is_string() && b["end_time"].is_string(),
        "{c}"
    );
    assert!(b["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20), "{c}");
    assert_eq!(b["wal_segment_size_bytes"], 1 << 20, "{c}");
    assert_eq!(b["timeline"], 1, "{c}");
    for key in ["start_lsn", "start_segment", "end_lsn", "end_segment"] {
        assert!(b[key].is_string(), "{key}: {c}");
    }
    Ok(())
}
