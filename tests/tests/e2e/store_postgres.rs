//! The store contract suite (`store/src/suite.rs`) against a private PostgreSQL; the
//! same suite runs against SQLite in the store crate's unit tests.

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
