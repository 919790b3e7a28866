//! Data at risk end to end (docs/checks.md R31): what a crash of the primary would lose now,
//! on a private cluster with real archiving, the real agent and collector.
//!
//! - an idle primary whose last archive is hours old has nothing at risk (its clock ran four
//!   hours behind while it archived, through the harness's clock shim, then it restarted on
//!   the true clock: `last_archived_time` is really four hours old);
//! - a write transaction in a segment that `archive_timeout = 0` does not switch is at risk
//!   from the sample before it, critical past the limit, and cleared by the switch;
//! - a hanging `archive_command` leaves `.ready` segments whose age is the data at risk.
//! - a long transaction committing after a newer one finished (the next transaction id does
//!   not move) is still work at risk.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{Agent, Certs, Collector, PgCluster, consistently, eventually};
use chrono::Utc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);
const FOUR_HOURS: i64 = 4 * 3600;

/// A collector whose data-at-risk limit is `limit`, and an agent probing `pg` every second.
async fn watch(pg: &PgCluster, limit: Option<&str>) -> Result<(Collector, Agent, Certs)> {
    let certs = Certs::fleet(&["db1"])?;
    let mut collector = Collector::sqlite(&certs);
    if let Some(limit) = limit {
        collector = collector.toml(&format!(
            "[thresholds.wal]\nmax_data_at_risk = \"{limit}\"\n"
        ));
    }
    let collector = collector.start().await?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .start()?;
    Ok((collector, agent, certs))
}

/// [`watch`] with an 8 s limit, once the check is ok with nothing at risk.
async fn watch_at_rest(pg: &PgCluster) -> Result<(Collector, Agent, Certs)> {
    let watched = watch(pg, Some("8s")).await?;
    watched
        .0
        .wait_check("db1", "wal.main", "to have nothing at risk", WAIT, |c| {
            c["status"] == "ok" && c["details"]["data_at_risk_secs"] == 0
        })
        .await;
    Ok(watched)
}

#[tokio::test]
async fn an_idle_primary_with_an_hours_old_last_archive_has_nothing_at_risk() -> Result<()> {
    let pg = PgCluster::init().start()?;
    // Archive on a clock four hours behind, then come back to the true one: the statistics
    // survive the clean restart, so the last archive is four hours old by the server's clock.
    pg.stop()?;
    pg.start_with_clock_offset(-FOUR_HOURS)?;
    let segment = pg.switch_wal_archived(WAIT).await?;
    pg.stop()?;
    pg.start()?;
    let stats = pg.archiver_stats()?;
    let age = Utc::now() - stats.last_archived_time.expect("archived");
    assert!(
        age.num_seconds() > FOUR_HOURS - 600,
        "last archive {age} ago"
    );
    assert_eq!(stats.last_archived_wal.as_deref(), Some(segment.as_str()));
    // The restart's shutdown checkpoint moved the position past the segment start: WAL was
    // written, committed work was not.
    let written =
        pg.psql("SELECT (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset > 40")?;
    assert_eq!(written.trim(), "t");

    let (collector, _agent, _certs) = watch(&pg, None).await?;
    let c = collector
        .wait_check("db1", "wal.main", "to report data at risk", WAIT, |c| {
            c["details"]["data_at_risk_secs"].is_number()
        })
        .await;
    assert_eq!(c["status"], "ok", "{c}");
    consistently(Duration::from_secs(5), "nothing at risk", async || {
        let c = collector.check("db1", "wal.main").await?;
        ensure!(c["status"] == "ok", "{c}");
        ensure!(c["details"]["data_at_risk_secs"] == 0, "{c}");
        Ok(())
    })
    .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("; last archived {segment} at ")),
        "{summary}"
    );
    assert!(!summary.contains("data at risk"), "{summary}");
    Ok(())
}

#[tokio::test]
async fn a_write_in_an_unswitched_segment_is_at_risk_until_the_switch_archives_it() -> Result<()> {
    let pg = PgCluster::init().start()?;
    pg.switch_wal_archived(WAIT).await?;
    let (collector, _agent, _certs) = watch_at_rest(&pg).await?;

    pg.psql("CREATE TABLE orders AS SELECT g FROM generate_series(1, 100) g")?;
    let segment = pg
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")?
        .trim()
        .to_string();
    let c = collector
        .wait_summary("db1", "wal.main", "critical", "data at risk ", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("(limit 8 s): write transactions since ")
            && summary.contains(&format!("in the current segment {segment}, which no archive holds yet (archive_timeout = 0: no switch hands it to the archiver before it fills)")),
        "{summary}"
    );
    assert_eq!(
        c["details"]["data_at_risk_segment"],
        segment.as_str(),
        "{c}"
    );
    assert_eq!(c["details"]["data_at_risk_unswitched"], true, "{c}");

    pg.switch_wal_archived(WAIT).await?;
    collector
        .wait_check(
            "db1",
            "wal.main",
            "to have nothing at risk again",
            WAIT,
            |c| c["status"] == "ok" && c["details"]["data_at_risk_secs"] == 0,
        )
        .await;
    Ok(())
}

/// A long transaction that commits after a newer one finished moves no "next transaction id"
/// (the highest finished plus one): its commit is still work at risk in the current segment.
#[tokio::test]
async fn a_long_transaction_committing_last_is_at_risk() -> Result<()> {
    let pg = PgCluster::init().start()?;
    pg.psql("CREATE TABLE orders (id int)")?;
    let mut long = pg.session()?;
    long.send("BEGIN; INSERT INTO orders VALUES (1);")?;
    eventually(WAIT, "the long transaction open with its id", async || {
        let open = pg
            .psql_async(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'idle in transaction' AND backend_xid IS NOT NULL",
            )
            .await?;
        ensure!(open.trim() == "1", "{open}");
        Ok(())
    })
    .await;
    // A newer transaction commits: next id moves past the long one's.
    pg.psql("INSERT INTO orders VALUES (2)")?;
    pg.switch_wal_archived(WAIT).await?;
    let (collector, _agent, _certs) = watch_at_rest(&pg).await?;
    long.send("COMMIT;")?;
    long.finish()?;
    collector
        .wait_summary("db1", "wal.main", "critical", "data at risk ", WAIT)
        .await;
    Ok(())
}

#[tokio::test]
async fn a_hanging_archive_command_puts_the_waiting_wal_at_risk() -> Result<()> {
    let pg = PgCluster::init().start()?;
    let (collector, _agent, _certs) = watch(&pg, Some("8s")).await?;
    collector.wait_status("db1", "wal.main", "ok", WAIT).await;

    // The archiver hangs on the next segment: no failure is ever recorded.
    pg.set_archive_command("sleep 600")?;
    let segment = pg.switch_wal()?;
    let c = collector
        .wait_summary("db1", "wal.main", "critical", "data at risk ", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "(limit 8 s): the oldest WAL not archived is {segment}, waiting to be archived"
        )),
        "{summary}"
    );
    assert_eq!(c["details"]["data_at_risk_unswitched"], false, "{c}");
    assert_eq!(c["details"]["failed_count"], 0, "{c}");
    let secs = c["details"]["data_at_risk_secs"].as_i64().unwrap_or(0);
    assert!(secs > 8, "{c}");

    // Prometheus gets the same figure.
    let value = collector
        .metric("backwatch_wal_data_at_risk_seconds{host=\"db1\",check=\"wal.main\"}")
        .await?;
    assert!(value > Some(8.0), "{value:?}");
    Ok(())
}
