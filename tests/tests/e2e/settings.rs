//! WAL configuration compliance (`settings.<name>`) end to end: a private PostgreSQL cluster
//! set up against the procedure, the real agent reading its settings over a `[[wal]]`
//! connection, the real collector judging with its `[thresholds.settings]` and per-host
//! overrides, and the API showing what an operator sees.

use anyhow::Result;
use backwatch_tests::harness::{Agent, Certs, Collector, PgCluster, scene};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn settings_section(interval: &str) -> String {
    format!("[[settings]]\nname = \"main\"\nwal = \"main\"\ninterval = \"{interval}\"\n")
}

#[tokio::test]
async fn every_setting_against_the_procedure_is_named_and_fixing_them_clears() -> Result<()> {
    // wal_level = minimal needs max_wal_senders = 0.
    let pg = PgCluster::init()
        .archive_mode("off")
        .setting("wal_level", "minimal")
        .setting("max_wal_senders", "0")
        .start()?;
    let scene = scene("db1", |a| {
        a.wal("main", &pg.dsn(), "1s").toml(&settings_section("1s"))
    })
    .await?;
    let c = scene
        .collector
        .wait_status("db1", "settings.main", "warning", WAIT)
        .await;
    assert_eq!(
        c["summary"],
        "3 settings differ from the procedure: wal_level = minimal (expected replica or logical); \
         archive_mode = off (expected on); archive_timeout = 0 (off) (expected set, at most 5 min)",
        "{c}"
    );
    let named: Vec<&str> = c["details"]["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["setting"].as_str())
        .collect();
    assert_eq!(
        named,
        ["wal_level", "archive_mode", "archive_timeout"],
        "{c}"
    );

    // The operator follows the procedure: wal_level and archive_mode need a restart.
    pg.alter_system("wal_level", "replica")?;
    pg.alter_system("max_wal_senders", "10")?;
    pg.alter_system("archive_mode", "on")?;
    pg.alter_system("archive_command", &pg.copy_archive_command())?;
    pg.alter_system("archive_timeout", "300")?;
    pg.restart()?;
    let c = scene
        .collector
        .wait_status("db1", "settings.main", "ok", WAIT)
        .await;
    assert_eq!(
        c["summary"],
        "wal_level replica, archive_mode on, archive_timeout 5 min: as the procedure asks",
        "{c}"
    );
    Ok(())
}

#[tokio::test]
async fn the_archive_timeout_limit_comes_from_the_collector_per_host() -> Result<()> {
    let pg = PgCluster::init().archive_timeout_secs(300).start()?;
    let certs = Certs::fleet(&["db1", "db2"])?;
    // db2's group keeps quiet servers' writes out of the archive for at most a minute.
    let collector = Collector::sqlite(&certs)
        .toml(
            "[groups]\nstrict = [\"db2\"]\n\
             [[overrides]]\ngroups = [\"strict\"]\n[overrides.thresholds.settings]\nmax_archive_timeout = \"1m\"\n",
        )
        .start()
        .await?;
    let _db1 = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .toml(&settings_section("1s"))
        .start()?;
    let _db2 = Agent::for_host("db2", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .toml(&settings_section("1s"))
        .start()?;
    collector
        .wait_status("db1", "settings.main", "ok", WAIT)
        .await;
    let c = collector
        .wait_status("db2", "settings.main", "warning", WAIT)
        .await;
    assert_eq!(
        c["summary"],
        "1 setting differs from the procedure: archive_timeout = 5 min (expected at most 60 s)",
        "{c}"
    );
    assert_eq!(c["details"]["max_archive_timeout_secs"], 60, "{c}");

    // A server that does not answer is unknown, saying why, never ok.
    pg.stop()?;
    let c = collector
        .wait_status("db1", "settings.main", "unknown", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("cannot connect"), "{summary}");
    Ok(())
}
