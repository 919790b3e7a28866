//! The WAL archive directory check end to end: private PostgreSQL clusters archiving into real
//! directories, the real agent listing them and asking the server what it archived, the
//! collector judging, the API showing it.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::{AgentBuilder, PgCluster, eventually, scene};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// A cluster with 1 MiB segments (an archive of many segments stays small) whose archive
/// directory is set up as the procedure wants: mode 0700 (the harness makes it with the
/// process umask).
fn cluster(archive_command: Option<&str>) -> Result<PgCluster> {
    let mut b = PgCluster::init().wal_segment_size_mb(1);
    if let Some(c) = archive_command {
        b = b.archive_command(c);
    }
    let pg = b.start()?;
    chmod(pg.archive_dir(), 0o700)?;
    Ok(pg)
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// The owner and group the directory has: `postgres` when the tests run as root (the harness
/// hands the cluster to that user), the test user otherwise.
fn owner_keys(path: &Path) -> Result<[(&'static str, String); 2]> {
    use nix::unistd::{Gid, Group, Uid, User};
    let meta = fs::metadata(path)?;
    let user = User::from_uid(Uid::from_raw(meta.uid()))?.context("owner has no name")?;
    let group = Group::from_gid(Gid::from_raw(meta.gid()))?.context("group has no name")?;
    Ok([
        ("expected_owner", user.name),
        ("expected_group", group.name),
    ])
}

/// `[[archive_dir]] main` on the cluster's archive, every second, with the expected owner.
fn archive_probe(a: AgentBuilder, pg: &PgCluster, extra: &[(&str, &str)]) -> AgentBuilder {
    let owners = owner_keys(pg.archive_dir()).expect("archive owner");
    let mut keys: Vec<(&str, &str)> = vec![("interval", "1s")];
    keys.extend(owners.iter().map(|(k, v)| (*k, v.as_str())));
    keys.extend_from_slice(extra);
    a.archive_dir("main", pg.archive_dir(), &keys)
}

/// Completes `n` segments and waits until the archiver reports the last one archived.
async fn switch_segments(pg: &PgCluster, n: usize) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(pg.switch_wal()?);
    }
    let last = names.last().cloned().unwrap_or_default();
    eventually(WAIT, "the last segment to be archived", async || {
        let s = pg.archiver_stats_async().await?;
        ensure!(
            s.last_archived_wal.as_deref() == Some(last.as_str()),
            "archiver at {:?}",
            s.last_archived_wal
        );
        Ok(())
    })
    .await;
    Ok(names)
}

/// Waits until `archive.main` is critical for the lost segment `lost`, below the `last`
/// archived one, `after` segments before the newest; returns the check.
async fn wait_lost(
    collector: &backwatch_tests::harness::Collector,
    lost: &str,
    last: &str,
    after: u32,
) -> Value {
    let c = collector
        .wait_summary(
            "db1",
            "archive.main",
            "critical",
            &format!(
                "gap in the archive: {lost} is missing although PostgreSQL reports everything up \
                 to {last} archived, {after} segments before the newest"
            ),
            WAIT,
        )
        .await;
    assert_eq!(c["details"]["continuity"]["gaps"][0]["first_missing"], lost);
    c
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn archive_command_that_copies_nothing_is_critical_while_the_archiver_looks_healthy()
-> Result<()> {
    let pg = cluster(Some("/bin/true"))?;
    let scene = scene("db1", |a| {
        archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")])
    })
    .await?;
    let collector = &scene.collector;
    // Nothing archived yet: nothing can be missing.
    collector
        .wait_status("db1", "archive.main", "ok", WAIT)
        .await;

    let segment = pg.switch_wal()?;
    let c = collector
        .wait_summary(
            "db1",
            "archive.main",
            "critical",
            &format!("{segment} is not in the archive although PostgreSQL reports it archived"),
            WAIT,
        )
        .await;
    assert!(summary(&c).contains("archive_command '/bin/true'"), "{c}");
    assert_eq!(c["details"]["last_archived_present"], false, "{c}");
    assert!(c["details"]["archived_count"].as_i64() >= Some(1), "{c}");
    // What pg_stat_archiver shows is healthy, and so is the check built on it alone.
    let stats = pg.archiver_stats()?;
    assert!(
        stats.archived_count >= 1 && stats.failed_count == 0,
        "{stats:?}"
    );
    let wal = collector.wait_status("db1", "wal.main", "ok", WAIT).await;
    assert!(summary(&wal).starts_with("archiving ok"), "{wal}");

    // A real copy clears it once the next segment reaches the archive.
    pg.set_archive_command(&pg.copy_archive_command())?;
    let next = switch_segments(&pg, 1).await?;
    let c = collector
        .wait_summary("db1", "archive.main", "ok", "archive ok", WAIT)
        .await;
    assert!(
        summary(&c).contains(&format!("last archived {} is present", next[0])),
        "{c}"
    );
    Ok(())
}

#[tokio::test]
async fn segment_deleted_from_the_middle_of_the_archive_is_found_by_name() -> Result<()> {
    let pg = cluster(None)?;
    // A base backup: its backup history file in the archive is where continuity starts.
    pg.psql("SELECT pg_backup_start('backwatch', true); SELECT pg_backup_stop();")?;
    let segments = switch_segments(&pg, 10).await?;
    let scene = scene("db1", |a| {
        archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")])
    })
    .await?;
    let collector = &scene.collector;
    let c = collector
        .wait_summary("db1", "archive.main", "ok", "archive ok", WAIT)
        .await;
    assert!(
        summary(&c).contains("continuous from the newest base backup"),
        "{c}"
    );
    assert_eq!(c["details"]["wal_segment_size_bytes"], 1 << 20, "{c}");
    // The backup history file was read: its label, times and duration.
    let backup = &c["details"]["newest_backup"];
    assert_eq!(backup["label"], "backwatch", "{c}");
    assert!(backup["duration_secs"].as_i64().is_some(), "{c}");
    assert!(summary(&c).contains("newest base backup took"), "{c}");

    // The third segment after the backup disappears: seven newer ones are there.
    let lost = &segments[2];
    fs::remove_file(pg.archive_dir().join(lost))?;
    let c = wait_lost(collector, lost, &segments[9], 7).await;
    let backup = c["details"]["continuity"]["newest_backup"]
        .as_str()
        .unwrap_or_default();
    assert!(backup.ends_with(".backup"), "{c}");
    Ok(())
}

/// The backup history files in the archive, oldest first.
fn history_files(pg: &PgCluster) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(pg.archive_dir())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".backup"))
        .collect();
    names.sort();
    Ok(names)
}

/// The recoverable window (docs/checks.md R32): from the consistency point of the oldest backup
/// whose WAL is unbroken to the newest segment; a gap between backups moves its start to the
/// backup after the gap, a gap after the newest backup cuts its end.
#[tokio::test]
async fn the_recoverable_window_starts_at_the_oldest_restorable_backup_and_a_gap_cuts_it()
-> Result<()> {
    let began = chrono::Utc::now() - chrono::Duration::seconds(1);
    let pg = cluster(None)?;
    switch_segments(&pg, 1).await?;
    pg.psql("SELECT pg_backup_start('first', true); SELECT pg_backup_stop();")?;
    let between = switch_segments(&pg, 3).await?;
    pg.psql("SELECT pg_backup_start('second', true); SELECT pg_backup_stop();")?;
    let after = switch_segments(&pg, 8).await?;
    let backups = history_files(&pg)?;
    assert_eq!(backups.len(), 2, "{backups:?}");
    let scene = scene("db1", |a| {
        archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")])
    })
    .await?;
    let collector = &scene.collector;
    let c = collector
        .wait_summary("db1", "archive.main", "ok", "archive ok", WAIT)
        .await;
    let w = &c["details"]["window"];
    assert_eq!(w["earliest_backup"], backups[0].as_str(), "{c}");
    assert_eq!(w["latest_backup"], backups[1].as_str(), "{c}");
    assert_eq!(w["end_segment"], after[7].as_str(), "{c}");
    assert_eq!(w["cut_at"], Value::Null, "{c}");
    assert_eq!(w["start_exact"], true, "{c}");
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let (start, end) = (
        time(&w["start"]).context("start")?,
        time(&w["end"]).context("end")?,
    );
    assert!(began <= start && start <= end, "{began} {start} {end}");
    assert!(end <= chrono::Utc::now(), "{end}");
    assert!(summary(&c).contains("; restorable from "), "{c}");

    // Prometheus shows the same window.
    let series = |name: &str| format!("{name}{{host=\"db1\",check=\"archive.main\"}}");
    assert_eq!(
        collector
            .metric(&series("backwatch_recovery_window_start_timestamp_seconds"))
            .await?,
        Some(start.timestamp() as f64)
    );
    assert_eq!(
        collector
            .metric(&series("backwatch_recovery_window_end_timestamp_seconds"))
            .await?,
        Some(end.timestamp() as f64)
    );

    // A segment between the two backups is lost: only the second one reaches the end.
    fs::remove_file(pg.archive_dir().join(&between[1]))?;
    collector
        .wait_check(
            "db1",
            "archive.main",
            "to start at the second backup",
            WAIT,
            |c| c["details"]["window"]["earliest_backup"] == backups[1].as_str(),
        )
        .await;

    // A segment after the newest backup is lost: the window ends before it, and says so.
    fs::remove_file(pg.archive_dir().join(&after[3]))?;
    let c = collector
        .wait_check("db1", "archive.main", "to be cut", WAIT, |c| {
            c["status"] == "critical" && c["details"]["window"]["cut_at"] == after[3].as_str()
        })
        .await;
    assert_eq!(
        c["details"]["window"]["end_segment"],
        after[2].as_str(),
        "{c}"
    );
    assert!(
        summary(&c).contains(&format!(
            "the recoverable window ends at {} ({})",
            time(&c["details"]["window"]["end"])
                .context("end")?
                .format("%Y-%m-%d %H:%M:%S UTC"),
            after[2]
        )),
        "{c}"
    );
    Ok(())
}

/// PostgreSQL's archiver copies one segment at a time, in order: a segment missing at or before
/// the `last_archived_wal` it reported was lost, even next to the newest file. Without the
/// server's word, or for an archive declared asynchronous, such a gap may still be in flight.
#[tokio::test]
async fn gap_before_the_last_archived_segment_is_lost_even_next_to_the_newest() -> Result<()> {
    let pg = cluster(None)?;
    pg.psql("SELECT pg_backup_start('backwatch', true); SELECT pg_backup_stop();")?;
    let segments = switch_segments(&pg, 6).await?;
    // The one before the newest disappears: within the in-flight distance (4) of the newest.
    let lost = &segments[4];
    fs::remove_file(pg.archive_dir().join(lost))?;
    let scene = scene("db1", |a| {
        let a = archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")]);
        let a = a.archive_dir("unlinked", pg.archive_dir(), &[("interval", "1s")]);
        a.archive_dir(
            "async",
            pg.archive_dir(),
            &[
                ("interval", "1s"),
                ("wal", "main"),
                ("asynchronous", "true"),
            ],
        )
    })
    .await?;
    let collector = &scene.collector;
    wait_lost(collector, lost, &segments[5], 1).await;
    for probe in ["archive.unlinked", "archive.async"] {
        collector
            .wait_summary(
                "db1",
                probe,
                "warning",
                &format!("{lost} is not in the archive yet, 1 segments before the newest: probably in flight"),
                WAIT,
            )
            .await;
    }
    Ok(())
}

/// An archive command that compresses and encrypts (`gzip | openssl enc … -out …/%f.gz.enc`,
/// as `%f.gpg` or `%f.age` would be) writes segments Backwatch cannot open but does see: the
/// archive is judged by their names, and declared encrypted none of them counts as readable.
#[tokio::test]
async fn segments_an_archive_command_encrypted_are_judged_by_name() -> Result<()> {
    let pg = cluster(None)?;
    pg.set_archive_command(&format!(
        "gzip -c %p | openssl enc -aes-256-cbc -pbkdf2 -pass pass:backwatch -out '{}/%f.gz.enc'",
        pg.archive_dir().display()
    ))?;
    let segments = switch_segments(&pg, 3).await?;
    let last = &segments[2];
    ensure!(pg.archive_dir().join(format!("{last}.gz.enc")).is_file());
    let scene = scene("db1", |a| {
        archive_probe(
            a.wal("main", &pg.dsn(), "1s"),
            &pg,
            &[("wal", "main"), ("encrypted", "true")],
        )
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "archive.main", "ok", "archive ok", WAIT)
        .await;
    assert!(
        summary(&c).contains(&format!("last archived {last} is present")),
        "{c}"
    );
    assert!(c["details"]["segments"].as_u64() >= Some(3), "{c}");
    let e = &c["details"]["encryption"];
    assert!(
        e["sampled"].as_u64() >= Some(3) && e["readable"] == 0,
        "{c}"
    );
    Ok(())
}

#[tokio::test]
async fn mode_0755_on_the_archive_directory_is_reported() -> Result<()> {
    let pg = cluster(None)?;
    switch_segments(&pg, 1).await?;
    chmod(pg.archive_dir(), 0o755)?;
    // Linked to the server, which dates the cluster: a new one is not short of retention.
    let scene = scene("db1", |a| {
        archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")])
    })
    .await?;
    let collector = &scene.collector;
    let c = collector
        .wait_status("db1", "archive.main", "warning", WAIT)
        .await;
    assert_eq!(
        summary(&c),
        "archive directory mode 0755, expected 0700: others can list it",
        "{c}"
    );
    assert_eq!(c["details"]["mode"], "0755", "{c}");

    chmod(pg.archive_dir(), 0o700)?;
    collector
        .wait_status("db1", "archive.main", "ok", WAIT)
        .await;
    Ok(())
}

#[tokio::test]
async fn retention_below_the_minimum_alerts() -> Result<()> {
    let pg = cluster(None)?;
    let segments = switch_segments(&pg, 4).await?;
    // Cleanup removed the first segments, and what is left is two days old.
    for old in &segments[..2] {
        fs::remove_file(pg.archive_dir().join(old))?;
    }
    for entry in fs::read_dir(pg.archive_dir())? {
        let touched = Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(entry?.path())
            .status()?;
        ensure!(touched.success(), "touch failed");
    }
    // No [[wal]] link: the cluster's age is unknown, and the archive does not hold the
    // cluster's first segment, so nothing says the cluster is young.
    let scene = scene("db1", |a| archive_probe(a, &pg, &[])).await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "archive.main",
            "warning",
            &format!(
                "WAL retention 48 h is below the minimum 7.0 d: the oldest segment kept is {}",
                segments[2]
            ),
            WAIT,
        )
        .await;
    assert_eq!(c["details"]["min_retention_secs"], 7 * 86_400, "{c}");
    let kept = c["details"]["retention_secs"].as_i64().unwrap_or_default();
    assert!((2 * 86_400..2 * 86_400 + 600).contains(&kept), "{c}");
    Ok(())
}

/// WAL kept far longer than intended (`[thresholds.archive] max_retention`, off by default):
/// archive cleanup is not running, a warning naming the oldest segment.
#[tokio::test]
async fn wal_kept_beyond_the_maximum_retention_means_cleanup_is_not_running() -> Result<()> {
    use backwatch_tests::harness::{Agent, Certs, Collector};
    let pg = cluster(None)?;
    let segments = switch_segments(&pg, 2).await?;
    for entry in fs::read_dir(pg.archive_dir())? {
        let touched = Command::new("touch")
            .args(["-d", "10 days ago"])
            .arg(entry?.path())
            .status()?;
        ensure!(touched.success(), "touch failed");
    }
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml("[thresholds.archive]\nmax_retention = \"8d\"\n")
        .start()
        .await?;
    let _agent = archive_probe(Agent::for_host("db1", &certs, &collector), &pg, &[]).start()?;
    let c = collector
        .wait_summary(
            "db1",
            "archive.main",
            "warning",
            "WAL retention 10.0 d is above the maximum 8.0 d: archive cleanup is not removing old segments",
            WAIT,
        )
        .await;
    assert!(
        summary(&c).contains(&format!("the oldest kept is {}", segments[0])),
        "{c}"
    );
    assert_eq!(c["details"]["max_retention_secs"], 8 * 86_400, "{c}");
    Ok(())
}

#[tokio::test]
async fn new_cluster_is_not_short_of_retention() -> Result<()> {
    let pg = cluster(None)?;
    let segments = switch_segments(&pg, 3).await?;
    // Without its first segment the archive looks cleaned up; the server's system identifier
    // still dates the cluster.
    fs::remove_file(pg.archive_dir().join(&segments[0]))?;
    let scene = scene("db1", |a| {
        archive_probe(a.wal("main", &pg.dsn(), "1s"), &pg, &[("wal", "main")])
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "archive.main", "ok", "archive ok", WAIT)
        .await;
    assert!(summary(&c).contains("less than the 7.0 d minimum"), "{c}");
    let age = c["details"]["cluster_age_secs"]
        .as_i64()
        .unwrap_or(i64::MAX);
    assert!((0..3600).contains(&age), "{c}");
    Ok(())
}
