//! `SqlStore` on SQLite (always) and PostgreSQL (on request): the shared suite plus what only
//! a real file or server shows: reopening, WAL, concurrent writers, migrations, URLs.

use super::{Backend, SqlStore, redact_url, sqlite_url};
use crate::suite::{self, at, evaluated, probe_result, unique_host};
use crate::{Inserted, Store, StoreError};
use backwatch_proto::model::ProbeKind;
use backwatch_rules::status::Status;
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

/// A store written before migration 0012 named kinds `wal_archive`, `backup_dir`, ...: its
/// rollups are renamed (reports select by kind), its stored observations still decode and are
/// shown under the one name.
#[tokio::test]
async fn kinds_stored_under_their_old_names_are_renamed_or_still_read() {
    use crate::reports::{Period, ReportStore};
    use backwatch_proto::model::Observation;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = sqlite_file_url(dir.path());
    super::INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
    let pool = super::open_sqlite(&url).await.expect("open");
    Backend::Sqlite
        .migrator()
        .run_to(11, &pool)
        .await
        .expect("migrations up to 0011");
    sqlx::query(
        "INSERT INTO rollups (host, check_id, period, bucket_start, kind, samples, status_last, \
         first_at, last_at, interval_secs) \
         VALUES ('db1', 'wal.main', 'hour', 0, 'wal_archive', 1, 'ok', 0, 0, 60), \
                ('db1', 'backup.base', 'hour', 0, 'backup_dir', 1, 'ok', 0, 0, 60)",
    )
    .execute(&pool)
    .await
    .expect("old rollups");
    sqlx::query(
        "INSERT INTO results (result_id, host, check_id, kind, measured_at, received_at, status, \
         summary, error, observation, duration_ms, interval_secs) \
         VALUES ('r1', 'db1', 'disk.backup', 'disk', 1000, 1000, 'ok', 's', NULL, $1, 1, 60), \
                ('r2', 'db1', 'wal.main', 'wal_archive', 2000, 2000, 'ok', 's', NULL, $2, 1, 60)",
    )
    .bind(
        r#"{"disk": {"path": "/backup", "error": null, "total_bytes": 100, "free_bytes": 40,
            "avail_bytes": 40, "inodes_total": 0, "inodes_free": 0, "inodes_avail": 0,
            "device_id": 7, "mount_point": null, "fs_type": null}}"#,
    )
    .bind(
        r#"{"wal_archive": {"server_version_num": 170000, "in_recovery": false,
            "archive_mode": "on", "archive_command": "", "archive_library": "",
            "archive_timeout_secs": 0, "wal_segment_size_bytes": 16777216,
            "archived_count": 42, "last_archived_wal": null, "last_archived_time": null,
            "failed_count": 3, "last_failed_wal": null, "last_failed_time": null,
            "stats_reset": null, "db_now": null, "current_lsn": null, "current_wal_file": null,
            "pending_source": "archive_statusdir", "ready_segments": 0, "ready_history": 0,
            "ready_other": 0, "oldest_ready_name": null, "oldest_ready_age_secs": null,
            "pending_note": null}}"#,
    )
    .execute(&pool)
    .await
    .expect("old results");
    pool.close().await;

    let store = SqlStore::open(&url).await.expect("open applies 0012");
    let rollups = store.rollups(Period::Hour, 0, 1).await.expect("rollups");
    let kinds: Vec<(&str, Option<ProbeKind>)> = rollups
        .iter()
        .map(|r| (r.kind.as_str(), r.probe_kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("backup", Some(ProbeKind::Backup)),
            ("wal", Some(ProbeKind::Wal))
        ]
    );
    let history = store
        .history("db1", None, chrono::DateTime::UNIX_EPOCH, 10)
        .await
        .expect("history");
    let wal = match &history[1].observation {
        Some(Observation::Wal(w)) => w,
        other => panic!("not a WAL observation: {other:?}"),
    };
    assert_eq!((wal.archived_count, wal.failed_count), (42, 3));
    let shown = serde_json::to_value(&history[1]).expect("json");
    assert_eq!(shown["observation"]["wal"]["archived_count"], 42);
    assert!(shown["observation"].get("wal_archive").is_none());
    assert!(matches!(history[0].observation, Some(Observation::Disk(_))));
}

#[test]
fn kind_patterns_hold_no_like_wildcard() {
    for kind in ProbeKind::ALL {
        let pattern = super::kind_checks(kind);
        let name = pattern.strip_suffix(".%").expect("name, dot, wildcard");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase()), "{pattern}");
    }
}
