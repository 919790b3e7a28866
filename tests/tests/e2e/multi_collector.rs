//! Several collectors on one PostgreSQL (the scale-out deployment in README): every collector
//! ingests and delivers, one at a time judges the fleet. Alerts happen once, and when the
//! leading collector is killed another one takes over the fleet-wide duties.

use anyhow::Result;
use backwatch_tests::harness::alerting::{DBA, alerting_toml};
use backwatch_tests::harness::{Agent, Certs, Collector, PgCluster, Smtp, count, eventually};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn two_collectors_alert_once_and_the_survivor_takes_over_when_the_leader_dies() -> Result<()>
{
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database("backwatch")?;
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1", "db2"])?;
    // Every disk of db1 and db2 warns; silence is quick so the take-over shows in seconds.
    let toml = format!(
        "{}[silence]\nhost_after = \"4s\"\ncheck_grace = \"2s\"\nsweep_every = \"500ms\"\n\
         [[overrides]]\nhosts = [\"db1\", \"db2\"]\n\
         [overrides.thresholds.disk]\nwarning_pct = 0\ncritical_pct = 100\n",
        alerting_toml(&smtp)
    );
    let url = pg.url_for("backwatch");
    let mut first = Collector::postgres(&certs, &url)
        .toml(&toml)
        .start()
        .await?;
    eventually(WAIT, "the first collector leads", async || {
        anyhow::ensure!(first.log().contains("leading:"), "{}", first.log());
        Ok(())
    })
    .await;
    let second = Collector::postgres(&certs, &url)
        .toml(&toml)
        .start()
        .await?;

    // One agent on each collector, as a TCP load balancer would spread them.
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let _db1 = Agent::for_host("db1", &certs, &first)
        .disk("data", a.path(), "1s")
        .start()?;
    let _db2 = Agent::for_host("db2", &certs, &second)
        .disk("data", b.path(), "1s")
        .start()?;

    let warn1 = "[WARNING] db1 disk.data";
    let warn2 = "[WARNING] db2 disk.data";
    smtp.wait_for(WAIT, "one warning per host", |m| {
        count(m, DBA, warn1) == 1 && count(m, DBA, warn2) == 1
    })
    .await;
    // Both collectors see both hosts: the store is shared.
    second
        .wait_status("db1", "disk.data", "warning", WAIT)
        .await;
    first.wait_status("db2", "disk.data", "warning", WAIT).await;
    assert!(
        !second.log().contains("leading:"),
        "only one collector leads:\n{}",
        second.log()
    );

    // The leader dies with db1's stream on it; db1's agent has nowhere to go (no balancer
    // here), so db1 falls silent, and only the second collector can notice.
    first.kill();
    let silent = "[CRITICAL] db1 agent.contact: agent silent since";
    smtp.wait_for(WAIT, "db1 silent, mailed by the survivor", |m| {
        count(m, DBA, silent) == 1
    })
    .await;
    assert!(second.log().contains("leading:"), "{}", second.log());

    // Settle, then count everything once more: nothing doubled, db2 never went silent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = smtp.messages()?;
    let to_dba: Vec<_> = mails
        .iter()
        .filter(|m| m.is_for(DBA))
        .map(|m| m.subject.as_str())
        .collect();
    assert_eq!(
        (count(&mails, DBA, warn1), count(&mails, DBA, warn2)),
        (1, 1),
        "{to_dba:#?}"
    );
    assert_eq!(count(&mails, DBA, silent), 1, "{to_dba:#?}");
    assert_eq!(to_dba.len(), 3, "{to_dba:#?}");
    second
        .wait_status("db2", "disk.data", "warning", WAIT)
        .await;
    Ok(())
}
