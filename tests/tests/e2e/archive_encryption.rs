//! Encryption policy of the WAL archive directory end to end: a private cluster archiving plain
//! copies into a directory declared encrypted; the real agent reads the newest segments' first
//! bytes and the collector reports the plain WAL by name.

use anyhow::{Context, Result};
use backwatch_tests::harness::{PgCluster, scene};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn section(name: &str, archive: &Path, encrypted: bool) -> String {
    // Owner, group and mode comparisons off: only the policy is under test.
    format!(
        "[[archive_dir]]\nname = \"{name}\"\npath = \"{}\"\ninterval = \"1s\"\nexpected_owner = \"\"\n\
         expected_group = \"\"\nexpected_mode = \"\"\nencrypted = {encrypted}\n",
        archive.display()
    )
}

#[tokio::test]
async fn plain_wal_in_an_archive_declared_encrypted_is_reported_by_name() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    fs::set_permissions(pg.archive_dir(), fs::Permissions::from_mode(0o700))?;
    pg.switch_wal()?;
    pg.switch_wal()?;
    let last = pg.switch_wal_archived(WAIT).await?;
    let scene = scene("db1", |a| {
        a.toml(&section("enc", pg.archive_dir(), true))
            .toml(&section("plain", pg.archive_dir(), false))
    })
    .await?;
    let c = scene
        .collector
        .wait_check(
            "db1",
            "archive.enc",
            "to report the plain segments",
            WAIT,
            |c| {
                c["status"] == "critical"
                    && c["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains("archive declared encrypted, but"))
            },
        )
        .await;
    let summary = c["summary"].as_str().context("summary")?;
    assert!(
        summary.contains(&format!("{last} is a plain WAL page header")),
        "{c}"
    );
    let e = &c["details"]["encryption"];
    assert!(e["sampled"].as_u64().is_some_and(|n| n >= 3), "{c}");
    assert_eq!(e["readable"], e["sampled"], "{c}");

    // The same directory without the declaration: nothing is opened, nothing reported.
    let c = scene
        .collector
        .wait_check("db1", "archive.plain", "to be judged", WAIT, |c| {
            c["details"]["segments"].as_u64() >= Some(3)
        })
        .await;
    assert!(
        !c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("encrypted"),
        "{c}"
    );
    assert!(c["details"]["encryption"].is_null(), "{c}");
    Ok(())
}
