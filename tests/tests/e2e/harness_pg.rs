//! The PostgreSQL harness and `eventually` against real servers: archiving that fails and
//! recovers, statistics that survive a clean restart, a standby, teardown on drop, and proof
//! that a wrong expectation fails loudly with what was awaited and what was seen.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use backwatch_tests::harness::{PgCluster, eventually, eventually_sync, pg};

/// Archiving reacts within a second or two; the margin is for two cores running several clusters.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn failing_archive_command_is_counted_until_a_working_one_archives_the_segment()
-> anyhow::Result<()> {
    let pg = PgCluster::init().archive_command("false").start()?;
    let segment = pg.switch_wal()?;
    let ready = pg.ready_dir().join(format!("{segment}.ready"));

    let failed = eventually(
        WAIT,
        "pg_stat_archiver to count a failed archive",
        async || {
            let stats = pg.archiver_stats_async().await?;
            ensure!(stats.failed_count > 0, "no failure counted: {stats:?}");
            Ok(stats)
        },
    )
    .await;
    assert_eq!(failed.archived_count, 0, "{failed:?}");
    assert_eq!(
        failed.last_failed_wal.as_deref(),
        Some(segment.as_str()),
        "{failed:?}"
    );
    assert!(
        ready.is_file(),
        "{} missing after failed archiving; log:\n{}",
        ready.display(),
        pg.log()
    );

    pg.set_archive_command(&pg.copy_archive_command())?;
    let archived = eventually(
        WAIT,
        "the segment archived once archive_command works",
        async || {
            let stats = pg.archiver_stats_async().await?;
            ensure!(
                stats.last_archived_wal.as_deref() == Some(segment.as_str()),
                "not archived: {stats:?}"
            );
            ensure!(!ready.exists(), "{} still present", ready.display());
            Ok(stats)
        },
    )
    .await;
    assert!(archived.archived_count >= 1, "{archived:?}");
    assert!(archived.failed_count >= failed.failed_count, "{archived:?}");
    assert!(
        pg.archive_dir().join(&segment).is_file(),
        "{segment} not in {}",
        pg.archive_dir().display()
    );
    Ok(())
}

#[test]
fn waiting_for_archiving_that_cannot_happen_fails_with_what_was_seen() -> anyhow::Result<()> {
    let pg = PgCluster::init().archive_command("false").start()?;
    pg.switch_wal()?;
    let payload = catch_unwind(AssertUnwindSafe(|| {
        eventually_sync(Duration::from_secs(2), "archived_count > 0", || {
            let stats = pg.archiver_stats()?;
            ensure!(stats.archived_count > 0, "saw {stats:?}");
            Ok(())
        });
    }))
    .expect_err("eventually_sync returned although archive_command is `false`");
    let message = panic_message(payload.as_ref());
    assert!(
        message.contains("waiting for archived_count > 0"),
        "{message}"
    );
    assert!(
        message.contains("saw ArchiverStats { archived_count: 0"),
        "{message}"
    );
    Ok(())
}

#[test]
fn clean_restart_keeps_archiver_stats_and_port() -> anyhow::Result<()> {
    let pg = PgCluster::init().start()?;
    let segment = pg.switch_wal()?;
    let before = eventually_sync(WAIT, "the segment archived before the restart", || {
        let stats = pg.archiver_stats()?;
        ensure!(
            stats.last_archived_wal.as_deref() == Some(segment.as_str()),
            "not archived: {stats:?}"
        );
        Ok(stats)
    });
    let port = pg.port();

    pg.stop()?;
    assert!(
        pg.psql("SELECT 1").is_err(),
        "server still answers after stop()"
    );
    pg.start()?;
    assert_eq!(pg.port(), port);
    // Later clock-shift scenarios rely on this: a clean restart is not a stats reset. (A
    // shutdown may archive one more segment, so counters may grow, never restart.)
    let kept = |after: &backwatch_tests::harness::ArchiverStats| {
        after.stats_reset == before.stats_reset
            && after.archived_count >= before.archived_count
            && after.last_archived_time >= before.last_archived_time
    };
    let after = pg.archiver_stats()?;
    assert!(
        kept(&after),
        "stats reset across stop/start: {before:?} -> {after:?}; log:\n{}",
        pg.log()
    );

    pg.restart()?;
    let after = pg.archiver_stats()?;
    assert!(
        kept(&after),
        "stats reset across restart(): {before:?} -> {after:?}; log:\n{}",
        pg.log()
    );
    Ok(())
}

#[test]
fn dropping_a_cluster_stops_its_server_and_removes_its_files() -> anyhow::Result<()> {
    let pg = PgCluster::init().start()?;
    let pid = pg
        .postmaster_pid()
        .context("no postmaster.pid while running")?;
    let data = pg.data_dir().to_owned();
    assert!(process_running(pid), "postmaster {pid} not running");

    drop(pg);
    eventually_sync(
        Duration::from_secs(5),
        "the postmaster to exit after drop",
        || {
            ensure!(!process_running(pid), "postmaster {pid} still running");
            Ok(())
        },
    );
    assert!(!data.exists(), "{} left behind", data.display());
    Ok(())
}

#[tokio::test]
async fn standby_replays_what_the_primary_writes() -> anyhow::Result<()> {
    let primary = PgCluster::init().start()?;
    primary.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1);")?;
    let standby = primary.standby().start()?;
    assert_ne!(standby.port(), primary.port());
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()")?, "t");
    assert_eq!(primary.psql("SELECT pg_is_in_recovery()")?, "f");

    primary.psql("INSERT INTO t VALUES (2);")?;
    eventually(WAIT, "the second row replayed on the standby", async || {
        let rows = standby.psql_async("SELECT count(*) FROM t").await?;
        ensure!(rows == "2", "standby has {rows} rows");
        Ok(())
    })
    .await;
    Ok(())
}

#[test]
fn created_database_is_reachable_by_dsn_and_by_url() -> anyhow::Result<()> {
    let pg = PgCluster::init().start()?;
    // A space exercises the identifier quoting, the DSN quoting and the URL encoding.
    pg.create_database("store test")?;
    assert_eq!(
        pg.psql_in("store test", "SELECT current_database()")?,
        "store test"
    );

    let url = pg.url_for("store test");
    let out = Command::new(pg::bindir()?.join("psql"))
        .args([
            "-XAtq",
            "-d",
            &url,
            "-c",
            "SELECT current_database(), inet_server_port()",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("store test|{}", pg.port()));
    Ok(())
}

// === eventually itself ===

#[tokio::test]
async fn eventually_returns_the_first_ok_value() {
    let mut calls = 0;
    let got = eventually(WAIT, "the third call", async || {
        calls += 1;
        ensure!(calls >= 3, "only {calls} calls");
        Ok(calls)
    })
    .await;
    assert_eq!(got, 3);
}

#[test]
fn eventually_never_met_panics_with_what_and_the_last_error() {
    let attempts = Cell::new(0_u32);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        runtime().block_on(eventually(
            Duration::from_millis(700),
            "the moon to turn green",
            async || {
                attempts.set(attempts.get() + 1);
                Err::<(), _>(anyhow!("moon is grey (attempt {})", attempts.get()))
            },
        ));
    }))
    .expect_err("eventually returned although the condition never held");
    let message = panic_message(payload.as_ref());
    let last = attempts.get();
    assert!(last >= 3, "only {last} attempts in 700 ms: {message}");
    assert!(
        message.contains("waiting for the moon to turn green"),
        "{message}"
    );
    assert!(
        message.contains(&format!("moon is grey (attempt {last})")),
        "not the last error: {message}"
    );
    assert!(
        !message.contains(&format!("(attempt {})", last - 1)),
        "an earlier error: {message}"
    );
}

#[test]
fn eventually_abandons_an_attempt_that_hangs_past_the_deadline() {
    let started = Instant::now();
    let payload = catch_unwind(|| {
        runtime().block_on(eventually(
            Duration::from_millis(500),
            "a reply that never comes",
            async || std::future::pending::<anyhow::Result<()>>().await,
        ));
    })
    .expect_err("eventually returned from a future that never completes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let message = panic_message(payload.as_ref());
    assert!(message.contains("a reply that never comes"), "{message}");
    assert!(
        message.contains("still running at the deadline"),
        "{message}"
    );
}

#[test]
#[should_panic(
    expected = "waiting for a file that never appears; last error: no /nonexistent/backwatch"
)]
fn eventually_sync_never_met_panics_with_what_and_the_last_error() {
    eventually_sync(
        Duration::from_millis(500),
        "a file that never appears",
        || {
            let path = std::path::Path::new("/nonexistent/backwatch");
            ensure!(path.exists(), "no {}", path.display());
            Ok(())
        },
    );
}

// === helpers ===

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Alive and not a zombie: orphaned postmasters may never be reaped in a container.
fn process_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3, after the parenthesised command name (which may itself contain spaces).
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
}
