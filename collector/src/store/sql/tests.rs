//! `SqlStore` on SQLite (always) and PostgreSQL (on request): the shared suite plus what only
//! a real file or server shows: reopening, WAL, concurrent writers, migrations, URLs.

use super::{Backend, SqlStore, redact_url, sqlite_url};
use crate::status::Status;
use crate::store::suite::{self, at, evaluated, probe_result, unique_host};
use crate::store::{Inserted, Store, StoreError};
use backwatch_proto::model::ProbeKind;
use sqlx::Row;
use std::path::Path;

fn sqlite_file_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("backwatch.db").display())
}

/// A store in a fresh SQLite file; the file goes with the returned directory.
async fn sqlite_file_store() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::open(&sqlite_file_url(dir.path()))
        .await
        .expect("open");
    (dir, store)
}

#[tokio::test]
async fn sqlite_file_passes_the_store_suite() {
    let (_dir, store) = sqlite_file_store().await;
    suite::run_all(&store).await.expect("suite");
}

#[tokio::test]
async fn sqlite_memory_passes_the_store_suite() {
    let store = SqlStore::open("sqlite::memory:").await.expect("open");
    suite::run_all(&store).await.expect("suite");
}

/// Run by hand against a scratch database, e.g.
/// `BACKWATCH_TEST_PG_URL=postgres://postgres@localhost:5432/bw_scratch \
///  cargo test -p backwatch-collector store -- --ignored`.
/// Ignored because it needs a server; the `tests` crate runs the same suite in CI.
#[tokio::test]
#[ignore = "needs PostgreSQL: set BACKWATCH_TEST_PG_URL"]
async fn postgres_passes_the_store_suite() {
    let Ok(url) = std::env::var("BACKWATCH_TEST_PG_URL") else {
        eprintln!("BACKWATCH_TEST_PG_URL is not set, skipping");
        return;
    };
    let store = SqlStore::open(&url).await.expect("open");
    suite::run_all(&store).await.expect("suite");
    store.close().await;
    // A second open finds every migration applied and unchanged, and the suite's unique
    // names let it run again on the same database.
    let again = SqlStore::open(&url).await.expect("reopen");
    suite::run_all(&again).await.expect("suite again");
}

#[tokio::test]
async fn sqlite_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = sqlite_file_url(dir.path());
    let host = unique_host("reopen");
    let item = evaluated(
        probe_result(&host, 1, ProbeKind::Disk, "root", 10),
        Status::Ok,
        "fine",
    );
    {
        let store = SqlStore::open(&url).await.expect("open");
        store.touch_host(&host, at(5), None).await.expect("touch");
        store
            .record_results(&host, std::slice::from_ref(&item))
            .await
            .expect("record");
        store.close().await;
    }
    let store = SqlStore::open(&url).await.expect("reopen");
    assert_eq!(
        store.host(&host).await.expect("host").map(|h| h.first_seen),
        Some(at(5))
    );
    let state = store.check_state(&host, "disk.root").await.expect("state");
    assert_eq!(state.and_then(|s| s.last_result), Some(item.result.clone()));
    let replay = store.record_results(&host, &[item]).await.expect("replay");
    assert_eq!(replay, [Inserted::Duplicate]);
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");
    // The `sqlite://` spelling, as in the example config.
    let store = SqlStore::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    assert!(path.exists());
    let row = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .expect("pragma");
    assert_eq!(row.try_get::<String, _>(0).expect("mode"), "wal");
    let row = sqlx::query("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await
        .expect("pragma");
    assert_eq!(
        row.try_get::<i64, _>(0).expect("synchronous"),
        2,
        "2 is FULL"
    );
}

/// Writers on several connections queue on the write lock instead of failing with
/// SQLITE_BUSY (what a deferred read-then-write transaction would do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_do_not_fail() {
    let (_dir, store) = sqlite_file_store().await;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            let host = unique_host(&format!("writer{writer}"));
            for n in 0..20u32 {
                let status = if n % 3 == 0 {
                    Status::Critical
                } else {
                    Status::Ok
                };
                let result = probe_result(&host, n, ProbeKind::Disk, "root", i64::from(n));
                store
                    .record_results(&host, &[evaluated(result, status, "x")])
                    .await?;
                store
                    .set_check_status(&host, "disk.root", Status::Unknown, "silent", at(99), None)
                    .await?;
            }
            Ok::<_, StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("writes succeed");
    }
}

#[tokio::test]
async fn unsupported_url_is_an_open_error_without_password() {
    let err = SqlStore::open("mysql://app:hunter2@db/backwatch")
        .await
        .err();
    assert!(matches!(&err, Some(StoreError::Open { url_redacted, .. })
        if url_redacted == "mysql://app:***@db/backwatch"));
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn embedded_migrations_match_the_migration_directories() {
    for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut on_disk: Vec<i64> = std::fs::read_dir(&path)
            .expect("migration dir")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".sql")?.split('_').next()?.parse().ok()
            })
            .collect();
        on_disk.sort_unstable();
        let embedded: Vec<i64> = backend.embedded().iter().map(|m| m.version).collect();
        assert_eq!(
            on_disk, embedded,
            "{dir}: every migration file is embedded in sql.rs"
        );
    }
}

#[test]
fn redact_url_hides_passwords_only() {
    let cases = [
        (
            "postgres://app:s3cret@db:5432/bw",
            "postgres://app:***@db:5432/bw",
        ),
        (
            "postgresql://app:p%40ss@db/bw?sslmode=require",
            "postgresql://app:***@db/bw?sslmode=require",
        ),
        (
            "postgres://app@db/bw?password=s3cret&sslmode=require",
            "postgres://app@db/bw?password=***&sslmode=require",
        ),
        ("postgres://db/bw", "postgres://db/bw"),
        (
            "sqlite:///var/lib/backwatch/a:b@c.db",
            "sqlite:///var/lib/backwatch/a:b@c.db",
        ),
        ("sqlite:data.db", "sqlite:data.db"),
    ];
    for (url, expected) in cases {
        assert_eq!(redact_url(url), expected);
    }
}

#[test]
fn sqlite_url_creates_unless_a_mode_is_given() {
    assert_eq!(
        sqlite_url("sqlite:a.db"),
        ("sqlite:a.db?mode=rwc".into(), false)
    );
    assert_eq!(
        sqlite_url("sqlite://a.db?vfs=unix"),
        ("sqlite://a.db?vfs=unix&mode=rwc".into(), false)
    );
    assert_eq!(
        sqlite_url("sqlite:a.db?mode=ro"),
        ("sqlite:a.db?mode=ro".into(), false)
    );
    assert_eq!(
        sqlite_url("sqlite::memory:"),
        ("sqlite::memory:".into(), true)
    );
    assert_eq!(
        sqlite_url("sqlite://?mode=memory"),
        ("sqlite://?mode=memory".into(), true)
    );
}

/// A write that arrives while another writer keeps SQLite's write lock busy (ingest's group
/// commits, back to back) waits for the writes ahead of it, not for a lucky moment: without
/// the write gate it slept in SQLite's busy handler while the busy writer went on.
#[tokio::test]
async fn a_sqlite_write_waits_its_turn_behind_a_busy_writer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (_dir, store) = sqlite_file_store().await;
    let (done, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let busy = {
        let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
        tokio::spawn(async move {
            let host = unique_host("busy");
            let mut secs = 0;
            while !stop.load(Ordering::Relaxed) {
                secs += 1;
                store
                    .touch_host(&host, at(secs), None)
                    .await
                    .expect("busy write");
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while done.load(Ordering::Relaxed) < 5 {
        tokio::task::yield_now().await;
    }
    let host = unique_host("turn");
    let mut overtaken = Vec::new();
    for round in 0..20 {
        let before = done.load(Ordering::Relaxed);
        store
            .touch_host(&host, at(round), None)
            .await
            .expect("write");
        overtaken.push(done.load(Ordering::Relaxed) - before);
    }
    stop.store(true, Ordering::Relaxed);
    busy.await.expect("busy writer");
    // The write in progress when it asked, and at most one more racing its arrival.
    assert!(
        overtaken.iter().all(|n| *n <= 3),
        "busy writes that went first, per write: {overtaken:?}"
    );
}
