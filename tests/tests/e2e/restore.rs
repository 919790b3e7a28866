//! Restore readiness end to end: a private PostgreSQL cluster, real `pg_basebackup` plain
//! backups with manifests, the real agent running the real `pg_verifybackup`, the collector
//! judging, the API and `backwatch-agent check` showing it.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::{PgCluster, bin, consistently, eventually, scene};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Flips bytes in the middle of the largest relation file, keeping its size: only a checksum
/// can tell. Returns its path relative to the backup, as pg_verifybackup names it.
fn corrupt_a_relation_file(backup: &Path) -> Result<String> {
    let mut largest: Option<(u64, PathBuf)> = None;
    for db in fs::read_dir(backup.join("base"))? {
        for f in fs::read_dir(db?.path())? {
            let f = f?;
            let len = f.metadata()?.len();
            if f.file_type()?.is_file() && largest.as_ref().is_none_or(|(l, _)| len > *l) {
                largest = Some((len, f.path()));
            }
        }
    }
    let (len, path) = largest.context("no relation file in the backup")?;
    let mut file = fs::OpenOptions::new().write(true).open(&path)?;
    file.seek(SeekFrom::Start(len / 2))?;
    file.write_all(b"backwatch was here")?;
    Ok(path.strip_prefix(backup)?.display().to_string())
}

fn restore_section(root: &Path, archive: Option<&Path>) -> String {
    let mut s = format!(
        "[[restore]]\nname = \"base\"\nbackup_dir = \"{}\"\ninterval = \"1s\"\n",
        root.display()
    );
    if let Some(a) = archive {
        s.push_str(&format!("archive_dir = \"{}\"\n", a.display()));
    }
    s
}

#[tokio::test]
async fn corrupted_file_or_missing_wal_fails_restore_readiness() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let root = tempfile::tempdir()?;
    // An older backup first: the newest one (by its manifest) is the one verified.
    pg.base_backup(
        &root.path().join("a-older"),
        &["-X", "none", "-l", "backwatch-test"],
    )?;
    std::thread::sleep(Duration::from_millis(1100));
    let backup = root.path().join("b-newest");
    // `-X none`: the WAL this backup needs is only in the archive.
    pg.base_backup(&backup, &["-X", "none", "-l", "backwatch-test"])?;
    let scene = scene("db1", |a| {
        a.toml(&restore_section(root.path(), Some(pg.archive_dir())))
    })
    .await?;
    let collector = &scene.collector;
    let shown = backup.display().to_string();
    let c = collector
        .wait_summary(
            "db1",
            "restore.base",
            "ok",
            &format!(
                "base backup {shown} verified by pg_verifybackup {} in ",
                pg.major()?
            ),
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("present in the archive"), "{c}");
    let d = &c["details"];
    assert_eq!(d["verify_exit_code"], 0, "{c}");
    assert_eq!(d["wal_parsed"], false, "{c}");
    assert!(d["verify_started_at"].is_string(), "{c}");
    assert!(d["verify_duration_ms"].is_u64(), "{c}");
    assert!(
        d["io_limit"]
            .as_str()
            .is_some_and(|l| l.starts_with("nice -n 19")),
        "{c}"
    );
    // What backup_label and backup_manifest say: label, start, end, WAL range, size.
    let b = &d["backup"];
    assert_eq!(b["label"], "backwatch-test", "{c}");
    assert!(b["duration_secs"].as_i64().is_some_and(|s| s >= 0), "{c}");
    assert!(b["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20), "{c}");
    let start = b["start_segment"]
        .as_str()
        .context("start segment")?
        .to_string();

    // The segment the backup starts in disappears from the archive.
    let archived = pg.archive_dir().join(&start);
    let saved = fs::read(&archived)?;
    fs::remove_file(&archived)?;
    collector
        .wait_summary(
            "db1",
            "restore.base",
            "critical",
            &format!(
                "base backup {shown} cannot be restored: WAL segment {start} it needs is not in its pg_wal and not in the archive"
            ),
            WAIT,
        )
        .await;
    fs::write(&archived, saved)?;
    collector
        .wait_status("db1", "restore.base", "ok", WAIT)
        .await;

    // A data file of the backup is damaged: pg_verifybackup's own message names it.
    let damaged = corrupt_a_relation_file(&backup)?;
    let c = collector
        .wait_summary(
            "db1",
            "restore.base",
            "critical",
            &format!("base backup {shown} fails verification: "),
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("checksum mismatch for file \"{damaged}\"")),
        "{c}"
    );
    Ok(())
}

#[test]
fn check_verifies_a_streamed_backup_with_its_own_wal() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let root = tempfile::tempdir()?;
    let backup = root.path().join("base");
    pg.base_backup(&backup, &["-X", "stream", "-l", "backwatch-test"])?;
    let cfg = root.path().join("agent.toml");
    // The backup directory itself is the backup; no archive: its pg_wal has the WAL.
    fs::write(
        &cfg,
        format!(
            "backup_dir = []\ndisk = []\n{}",
            restore_section(&backup, None)
        ),
    )?;
    let run = || -> Result<(i32, String)> {
        let out = Command::new(bin("backwatch-agent"))
            .args(["check", "--config"])
            .arg(&cfg)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (code, out) = run()?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restore.base"), "{out}");
    assert!(
        out.contains("its WAL in the backup's pg_wal, parsed"),
        "{out}"
    );

    let damaged = corrupt_a_relation_file(&backup)?;
    let (code, out) = run()?;
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("CRITICAL restore.base"), "{out}");
    assert!(
        out.contains(&format!("checksum mismatch for file \"{damaged}\"")),
        "{out}"
    );
    Ok(())
}

/// Restore readiness reads a whole base backup: a restarted agent resumes its weekly schedule
/// instead of verifying again at start, and the collector keeps showing the last verification.
#[tokio::test]
async fn a_restarted_agent_does_not_verify_again_within_the_interval() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let root = tempfile::tempdir()?;
    pg.base_backup(
        &root.path().join("base"),
        &["-X", "stream", "-l", "backwatch-test"],
    )?;
    let weekly = format!(
        "[[restore]]\nname = \"base\"\nbackup_dir = \"{}\"\ninterval = \"7d\"\n",
        root.path().display()
    );
    let mut scene = scene("db1", |a| a.toml(&weekly)).await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "restore.base", "ok", WAIT)
        .await;
    let verified = collector.stored_ids("db1", "restore.base").await?;
    assert_eq!(verified.len(), 1, "{verified:?}");

    scene.agent.kill();
    scene.agent.launch()?;
    eventually(
        WAIT,
        "the restarted agent resumes the schedule",
        async || {
            let log = scene.agent.log();
            ensure!(log.contains("resuming its schedule"), "{log}");
            Ok(())
        },
    )
    .await;
    // For a few seconds it does not verify again.
    consistently(
        Duration::from_secs(3),
        "no second verification",
        async || {
            let after = collector.stored_ids("db1", "restore.base").await?;
            ensure!(after == verified, "{}", scene.agent.log());
            Ok(())
        },
    )
    .await;
    collector
        .wait_status("db1", "restore.base", "ok", WAIT)
        .await;
    Ok(())
}
