//! The store contract suite (`store/src/suite.rs`) against a private PostgreSQL; the
//! same suite runs against SQLite in the store crate's unit tests.

use anyhow::Context;
use backwatch_store::{SqlStore, suite};
use backwatch_tests::harness::PgCluster;

#[tokio::test]
async fn postgres_store_passes_the_store_suite() -> anyhow::Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database("backwatch")?;
    let store = SqlStore::open(&pg.url_for("backwatch")).await?;
    suite::run_all(&store).await?;
    // Opening again finds the schema migrated and the data in place.
    drop(store);
    let again = SqlStore::open(&pg.url_for("backwatch")).await?;
    suite::run_all(&again).await?;
    Ok(())
}

/// Many installations create their databases in the system's locale, where text does not
/// sort byte by byte: under glibc's `en_US.UTF-8`, `'wal.main' < 'wal/'` is false
/// (punctuation counts last). Every query must mean the same there.
#[tokio::test]
async fn postgres_store_passes_the_store_suite_in_a_glibc_locale() -> anyhow::Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database_with_locale("backwatch", "en_US.UTF-8")
        .context("the locale en_US.UTF-8 must exist (`scripts/test` generates it)")?;
    // The point of this database: text there does not sort byte by byte.
    let sorts = pg.psql_in("backwatch", "SELECT 'wal.main' < 'wal/'")?;
    assert_eq!(sorts.trim(), "f", "en_US.UTF-8 sorts byte by byte here");
    let store = SqlStore::open(&pg.url_for("backwatch")).await?;
    suite::run_all(&store).await?;
    Ok(())
}
