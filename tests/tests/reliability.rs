//! Nothing measured is lost through outages and crashes, a replay is stored once, and one hung
//! probe never delays the others.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{Agent, Certs, Collector, eventually, scene};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Wait until every id in `ids` is stored and the agent's spool is empty (all acknowledged).
async fn all_stored(
    collector: &Collector,
    agent: &Agent,
    check: &str,
    ids: &[String],
) -> Vec<String> {
    eventually(
        WAIT,
        "every measured result stored and the spool drained",
        async || {
            let stored = collector.stored_ids(&agent.host, check).await?;
            let set: BTreeSet<&String> = stored.iter().collect();
            let missing: Vec<&String> = ids.iter().filter(|i| !set.contains(i)).collect();
            ensure!(
                missing.is_empty(),
                "{} of {} not stored yet",
                missing.len(),
                ids.len()
            );
            let waiting = agent.spooled_ids()?;
            ensure!(
                waiting.is_empty(),
                "{} results still spooled",
                waiting.len()
            );
            Ok(stored)
        },
    )
    .await
}

#[tokio::test]
async fn agent_killed_while_the_collector_is_away_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s = scene("db1", |a| a.disk("backup", dir.path(), "1s")).await?;
    s.collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    s.collector.stop()?;
    let spooled = eventually(WAIT, "results piling up in the spool", async || {
        let ids = s.agent.spooled_ids()?;
        ensure!(ids.len() >= 3, "{} spooled", ids.len());
        Ok(ids)
    })
    .await;
    s.agent.kill(); // SIGKILL: no chance to flush anything

    s.collector.restart().await?;
    s.agent.launch()?;
    let stored = all_stored(&s.collector, &s.agent, "disk.backup", &spooled).await;
    // Each stored exactly once.
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "duplicates in history");
    Ok(())
}

#[tokio::test]
async fn replayed_results_are_stored_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s = scene("db1", |a| a.disk("backup", dir.path(), "1s")).await?;
    s.collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    // Let results spool while the collector is away, and keep a copy of the spool: replaying
    // the copy later is exactly what an agent does when an acknowledgement was lost.
    s.collector.stop()?;
    let spooled = eventually(WAIT, "results in the spool", async || {
        let ids = s.agent.spooled_ids()?;
        ensure!(ids.len() >= 2, "{} spooled", ids.len());
        Ok(ids)
    })
    .await;
    s.agent.kill();
    let copy = tempfile::tempdir()?;
    for e in std::fs::read_dir(s.agent.spool_dir())? {
        let e = e?;
        std::fs::copy(e.path(), copy.path().join(e.file_name()))?;
    }
    s.collector.restart().await?;
    s.agent.launch()?;
    let before = all_stored(&s.collector, &s.agent, "disk.backup", &spooled).await;
    let transitions_before = s
        .collector
        .api("/api/v1/hosts/db1/history?check=disk.backup&since=24h")
        .await?["transitions"]
        .clone();

    s.agent.kill();
    for e in std::fs::read_dir(copy.path())? {
        let e = e?;
        std::fs::copy(e.path(), s.agent.spool_dir().join(e.file_name()))?;
    }
    s.agent.launch()?;
    let after = all_stored(&s.collector, &s.agent, "disk.backup", &spooled).await;
    for id in &spooled {
        assert_eq!(
            after.iter().filter(|i| *i == id).count(),
            1,
            "{id} stored more than once"
        );
    }
    assert!(after.len() >= before.len());
    let h = s
        .collector
        .api("/api/v1/hosts/db1/history?check=disk.backup&since=24h")
        .await?;
    assert_eq!(
        h["transitions"], transitions_before,
        "a replay must not add transitions"
    );
    Ok(())
}

#[tokio::test]
async fn collector_killed_mid_stream_keeps_every_result_the_agents_measured() -> Result<()> {
    let certs = Certs::fleet(&["db1", "db2", "db3"])?;
    let mut collector = Collector::sqlite(&certs).start().await?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut agents = Vec::new();
    for (i, host) in ["db1", "db2", "db3"].into_iter().enumerate() {
        agents.push(
            Agent::for_host(host, &certs, &collector)
                .disk("a", dirs[i].path(), "1s")
                .disk("b", dirs[i].path(), "1s")
                .disk("c", dirs[i].path(), "1s")
                .start()?,
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    collector.kill(); // SIGKILL while results stream in
    tokio::time::sleep(Duration::from_secs(2)).await;
    collector.restart().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for a in &mut agents {
        a.kill();
    }
    for a in &mut agents {
        // Restart only to drain what the kill left in the spool; no new schedule needed.
        a.launch()?;
    }
    for a in &agents {
        let measured = a.measured_ids();
        assert!(
            measured.len() >= 9,
            "{} measured by {}",
            measured.len(),
            a.host
        );
        eventually(WAIT, "every measured result stored", async || {
            let mut stored = BTreeSet::new();
            for check in ["disk.a", "disk.b", "disk.c"] {
                stored.extend(collector.stored_ids(&a.host, check).await?);
            }
            let missing = a
                .measured_ids()
                .into_iter()
                .filter(|i| !stored.contains(i))
                .count();
            ensure!(missing == 0, "{missing} results of {} missing", a.host);
            Ok(())
        })
        .await;
    }
    Ok(())
}

#[tokio::test]
async fn a_hung_database_does_not_delay_the_other_probes() -> Result<()> {
    // A server that accepts connections and never says a word: the classic hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let _held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().flatten() {
            conns.push(c);
        }
    });
    let dir = tempfile::tempdir()?;
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let s = scene("db1", |a| {
        a.backup_dir("daily", dir.path(), "24h", "1s")
            .wal("main", &dsn, "1s")
            .toml("")
    })
    .await?;
    let c = s
        .collector
        .wait_summary(
            "db1",
            "wal.main",
            "unknown",
            "probe could not observe: timed out",
            WAIT,
        )
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("connecting"),
        "{c}"
    );
    // Meanwhile the backup probe kept its one-second schedule.
    let h = s
        .collector
        .api("/api/v1/hosts/db1/history?check=backup.daily&since=1h")
        .await?;
    let n = h["results"].as_array().map_or(0, Vec::len);
    assert!(n >= 4, "only {n} backup results while the database hung");
    Ok(())
}
