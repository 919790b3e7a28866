//! Nothing measured is lost through outages, crashes and a full disk, a replay is stored once,
//! one hung probe never delays the others nor holds up the agent, and agents are back within
//! seconds of their collector.

use anyhow::{Result, ensure};
use backwatch_tests::harness::{Agent, Certs, Collector, HungMount, Tmpfs, eventually, scene};
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

#[tokio::test]
async fn agents_are_back_within_seconds_after_a_long_outage() -> Result<()> {
    let hosts = ["db1", "db2", "db3"];
    let certs = Certs::fleet(&hosts)?;
    let mut collector = Collector::sqlite(&certs).start().await?;
    let dir = tempfile::tempdir()?;
    let agents: Vec<Agent> = hosts
        .iter()
        .map(|h| {
            Agent::for_host(h, &certs, &collector)
                .disk("backup", dir.path(), "1s")
                .start()
        })
        .collect::<Result<_>>()?;
    for a in &agents {
        collector
            .wait_status(&a.host, "disk.backup", "ok", WAIT)
            .await;
    }

    // A real outage: long enough for seven failed attempts each, which with the old 60 s cap
    // left every agent in a wait of up to a minute when the collector came back.
    collector.stop()?;
    let failures = |a: &Agent| {
        a.log()
            .matches("collector unreachable; results stay in the spool")
            .count()
    };
    eventually(
        Duration::from_secs(120),
        "seven failed reconnects per agent",
        async || {
            for a in &agents {
                let n = failures(a);
                ensure!(n >= 7, "{} failed {n} times", a.host);
            }
            Ok(())
        },
    )
    .await;
    let waiting: Vec<Vec<String>> = agents
        .iter()
        .map(Agent::spooled_ids)
        .collect::<Result<_>>()?;
    collector.restart().await?;
    let back = std::time::Instant::now();
    for (a, ids) in agents.iter().zip(&waiting) {
        ensure!(
            !ids.is_empty(),
            "{} spooled nothing during the outage",
            a.host
        );
        eventually(
            Duration::from_secs(15).saturating_sub(back.elapsed()),
            "what was spooled during the outage stored soon after the collector returned",
            async || {
                let stored: BTreeSet<String> = collector
                    .stored_ids(&a.host, "disk.backup")
                    .await?
                    .into_iter()
                    .collect();
                let missing = ids.iter().filter(|i| !stored.contains(*i)).count();
                ensure!(
                    missing == 0,
                    "{missing} results of {} not stored yet",
                    a.host
                );
                Ok(())
            },
        )
        .await;
    }
    eprintln!("all agents back {:?} after the collector", back.elapsed());
    Ok(())
}

/// Lines of the agent's log that report a probe turn skipped because its run is still blocked.
fn still_blocked_turns(agent: &Agent) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains("disk.hung") && l.contains("still blocked since"))
        .count()
}

#[tokio::test]
async fn a_hung_mount_blocks_one_probe_not_the_agent() -> Result<()> {
    let mount = HungMount::start()?;
    let dir = tempfile::tempdir()?;
    let mut s = scene("db1", |a| {
        a.disk("local", dir.path(), "1s").toml(&format!(
            "[[disk]]\nname = \"hung\"\npath = \"{}\"\ninterval = \"1s\"\ntimeout = \"2s\"\n",
            mount.path().display()
        ))
    })
    .await?;
    // The configured 2 s timeout, then one "still blocked" result per turn, not a new call.
    let c = s
        .collector
        .wait_summary(
            "db1",
            "disk.hung",
            "unknown",
            "probe could not observe: timed out: still blocked since",
            WAIT,
        )
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("not started again"),
        "{c}"
    );
    let threads = s.agent.threads()?;
    let turns = still_blocked_turns(&s.agent);
    let local_before = s.collector.stored_ids("db1", "disk.local").await?.len();
    eventually(WAIT, "five more blocked turns", async || {
        let n = still_blocked_turns(&s.agent) - turns;
        ensure!(n >= 5, "{n} more");
        Ok(())
    })
    .await;
    let now = s.agent.threads()?;
    assert!(
        now <= threads + 1,
        "threads grew from {threads} to {now} over five blocked turns"
    );
    // The other probe kept its one-second schedule, and the host never turned silent.
    let local_after = s.collector.stored_ids("db1", "disk.local").await?.len();
    assert!(
        local_after >= local_before + 4,
        "disk.local stored {local_before} then {local_after} results while disk.hung hung"
    );
    assert_eq!(
        s.collector.check("db1", "disk.local").await?["status"],
        "ok"
    );
    assert_eq!(s.collector.api("/api/v1/hosts/db1").await?["silent"], false);

    // And a SIGTERM still ends the agent at once, though a thread of it is stuck in the kernel.
    let status = s.agent.terminate(Duration::from_secs(5))?;
    assert!(status.success(), "{status}");
    assert!(s.agent.log().contains("terminating"));
    drop(mount);
    Ok(())
}

#[tokio::test]
async fn a_full_spool_disk_loses_nothing_reports_itself_and_recovers() -> Result<()> {
    let disk = Tmpfs::mount("256k")?;
    let spool = disk.path().join("spool");
    let dir = tempfile::tempdir()?;
    let s = scene("db1", |a| {
        a.disk("local", dir.path(), "1s").spool_dir(&spool)
    })
    .await?;
    s.collector
        .wait_status("db1", "disk.local", "ok", WAIT)
        .await;

    disk.fill()?;
    // The spool's own failure is a check, delivered although the spool cannot write it.
    let c = s
        .collector
        .wait_summary(
            "db1",
            "disk.agent-spool",
            "unknown",
            "probe could not observe: the agent cannot write its spool",
            WAIT,
        )
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("No space left on device"),
        "{c}"
    );
    // Results measured meanwhile are held in memory and stored all the same.
    let held = eventually(WAIT, "results held in memory", async || {
        let ids: Vec<String> = s
            .agent
            .log()
            .lines()
            .filter(|l| l.contains("result held in memory, not spooled"))
            .filter_map(|l| l.split("result_id=").nth(1))
            .filter_map(|r| r.split_whitespace().next().map(str::to_string))
            .collect();
        ensure!(ids.len() >= 4, "{} held", ids.len());
        Ok(ids)
    })
    .await;
    let local = held.len() - 1; // one of them is the spool's own report
    eventually(WAIT, "the held results stored", async || {
        let mut stored: BTreeSet<String> = s
            .collector
            .stored_ids("db1", "disk.local")
            .await?
            .into_iter()
            .collect();
        stored.extend(s.collector.stored_ids("db1", "disk.agent-spool").await?);
        let missing = held.iter().filter(|i| !stored.contains(*i)).count();
        ensure!(
            missing == 0,
            "{missing} of {} held results not stored",
            held.len()
        );
        Ok(())
    })
    .await;
    assert!(local >= 3);
    // A failed write leaves nothing behind to keep the disk full.
    let leftovers: Vec<String> = std::fs::read_dir(&spool)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left in the spool: {leftovers:?}");

    disk.free()?;
    s.collector
        .wait_summary("db1", "disk.agent-spool", "ok", "", WAIT)
        .await;
    assert!(s.agent.log().contains("the spool writes again"));
    Ok(())
}

/// The usual cure for a full spool disk is "free space, restart the agent". A restarted agent
/// remembers no failure to report as over, so it reports its spool's state at every start:
/// the failure when the disk is still full, the disk's measurement once it is not, and the
/// collector's unknown clears (it never goes overdue on its own: the check has no interval).
#[tokio::test]
async fn a_spool_disk_freed_while_the_agent_was_stopped_is_ok_after_the_restart() -> Result<()> {
    let disk = Tmpfs::mount("256k")?;
    let spool = disk.path().join("spool");
    let dir = tempfile::tempdir()?;
    let mut s = scene("db1", |a| {
        a.disk("local", dir.path(), "1s").spool_dir(&spool)
    })
    .await?;
    // Reported at start, before anything failed: the spool's file system.
    let c = s
        .collector
        .wait_status("db1", "disk.agent-spool", "ok", WAIT)
        .await;
    assert_eq!(c["interval_secs"], 0, "{c}");

    disk.fill()?;
    const FAILED: &str = "probe could not observe: the agent cannot write its spool";
    s.collector
        .wait_summary("db1", "disk.agent-spool", "unknown", FAILED, WAIT)
        .await;

    // Restarted on a disk still full: the new run reports the failure it finds at start.
    let status = s.agent.terminate(Duration::from_secs(5))?;
    assert!(status.success(), "{status}");
    s.agent.launch()?;
    // The log of this run alone (earlier runs' logs are set aside at launch).
    let id = eventually(WAIT, "the spool check of the new run", async || {
        let log = s.agent.log();
        let line = log
            .lines()
            .find(|l| l.contains("spool check held in memory"))
            .ok_or_else(|| anyhow::anyhow!("not logged yet"))?;
        line.split("result_id=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no result_id in {line}"))
    })
    .await;
    eventually(WAIT, "the new run's failure stored", async || {
        let stored = s.collector.stored_ids("db1", "disk.agent-spool").await?;
        ensure!(stored.contains(&id), "{id} not stored yet");
        Ok(())
    })
    .await;
    let c = s.collector.check("db1", "disk.agent-spool").await?;
    assert_eq!(c["status"], "unknown", "{c}");
    assert!(
        c["summary"].as_str().is_some_and(|t| t.starts_with(FAILED)),
        "{c}"
    );

    // Stopped, space freed, started: no failure to recover from in memory, and yet ok.
    let status = s.agent.terminate(Duration::from_secs(5))?;
    assert!(status.success(), "{status}");
    disk.free()?;
    s.agent.launch()?;
    let c = s
        .collector
        .wait_status("db1", "disk.agent-spool", "ok", WAIT)
        .await;
    assert!(
        !s.agent.log().contains("the spool writes again"),
        "the new run never failed, so it did not recover: the report at start cleared it"
    );
    assert!(
        c["summary"].as_str().is_some_and(|t| t.contains('%')),
        "a disk measurement: {c}"
    );
    Ok(())
}

/// A backup volume remounted read-only after I/O errors, then not mounted at all: both are
/// critical, named on the disk check, although the space figures alone look fine (an
/// unmounted volume leaves the path on the parent's filesystem, which backups would fill).
#[tokio::test]
async fn a_read_only_or_unmounted_backup_volume_is_critical() -> Result<()> {
    let disk = Tmpfs::mount("1m")?;
    let vol = disk.path().to_path_buf();
    let shown = vol.display().to_string();
    let pg = vol.join("pg");
    std::fs::create_dir(&pg)?;
    let quoted = format!("\"{shown}\"");
    let s = scene("db1", |a| {
        a.disk_with("backup", &vol, "1s", &[("mount_point", &quoted)])
            .disk_with("pg", &pg, "1s", &[("mount_point", &quoted)])
            .disk_with("share", &vol, "1s", &[("allow_read_only", "true")])
    })
    .await?;
    let c = s
        .collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("{shown} is "))),
        "{c}"
    );

    disk.read_only(true)?;
    s.collector
        .wait_summary(
            "db1",
            "disk.backup",
            "critical",
            &format!("{shown} is mounted read-only: nothing can be written there"),
            WAIT,
        )
        .await;
    // Mounted read-only on purpose: only its space is judged (once it measured read-only).
    let share = s
        .collector
        .wait_check("db1", "disk.share", "to measure read-only", WAIT, |c| {
            c["details"]["read_only"] == true
        })
        .await;
    assert_eq!(share["status"], "ok", "{share}");
    disk.read_only(false)?;
    s.collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    disk.unmount()?;
    let c = s
        .collector
        .wait_summary(
            "db1",
            "disk.backup",
            "critical",
            &format!("{shown} is not mounted: {shown} lies on "),
            WAIT,
        )
        .await;
    assert_eq!(c["details"]["expected_mount_point"], shown.as_str(), "{c}");
    // A path under the volume does not exist once it is not mounted: critical too, not
    // "cannot measure" (the backup tool would create it and fill the parent).
    s.collector
        .wait_summary(
            "db1",
            "disk.pg",
            "critical",
            &format!("{shown} is not mounted (its mount point lies on "),
            WAIT,
        )
        .await;
    Ok(())
}
