//! pgBackRest and Barman as backup sources end to end: the real tools (Debian packages) back up
//! a private PostgreSQL cluster, the real agent asks them (`pgbackrest info`, `barman
//! list-backups` / `show-backup` / `check`), the collector judges, the API shows it.
//! The tools are set up by `harness::backup_tools`.

use anyhow::{Context, Result};
use backwatch_tests::harness::backup_tools::{Barman, PgBackRest};
use backwatch_tests::harness::{PgCluster, Scene, eventually, scene};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Host `db1` whose agent reads pgBackRest stanza `main` through `conf` every second; `extra`
/// adds lines to the section (limits).
async fn pgbackrest_scene(conf: &Path, extra: &str) -> Result<Scene> {
    let section = format!(
        "[[pgbackrest]]\nname = \"main\"\nconfig = \"{}\"\ninterval = \"1s\"\n{extra}",
        conf.display()
    );
    scene("db1", |a| a.toml(&section)).await
}

/// Host `db1` whose agent reads Barman server `pg` through `conf` every second; `extra` adds
/// lines to the section.
async fn barman_scene(conf: &Path, extra: &str) -> Result<Scene> {
    let section = format!(
        "[[barman]]\nname = \"pg\"\nserver = \"pg\"\nconfig = \"{}\"\ninterval = \"1s\"\n{extra}",
        conf.display()
    );
    scene("db1", |a| a.toml(&section)).await
}

#[tokio::test]
async fn pgbackrest_backups_appear_with_their_durations_and_a_bad_stanza_is_critical() -> Result<()>
{
    let tool = PgBackRest::start("repo1-retention-full=2")?;
    tool.backup("full")?;
    tool.backup("incr")?;
    let conf = &tool.conf;

    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[pgbackrest]]\nname = \"main\"\nconfig = \"{0}\"\ninterval = \"1s\"\n\
             [[pgbackrest]]\nname = \"typo\"\nconfig = \"{0}\"\nstanza = \"mian\"\ninterval = \"1s\"\n",
            conf.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "pgbackrest.main", "ok", "main: newest incr ", WAIT)
        .await;
    let set = &c["details"]["sets"][0];
    let (incr, full) = (&set["newest"], &set["newest_full"]);
    assert_eq!(incr["type"], "incr", "{c}");
    assert_eq!(full["type"], "full", "{c}");
    assert!(
        full["label"].as_str().is_some_and(|l| l.ends_with('F')),
        "{c}"
    );
    for b in [incr, full] {
        assert!(b["duration_secs"].as_i64().is_some_and(|d| d >= 0), "{c}");
        assert!(
            b["start_time"].is_string() && b["stop_time"].is_string(),
            "{c}"
        );
        assert!(
            b["wal_start"].is_string() && b["wal_stop"].is_string(),
            "{c}"
        );
    }
    assert!(
        full["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20),
        "{c}"
    );
    assert_eq!(set["backup_count"], 2, "{c}");
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("; newest full "),
        "{c}"
    );
    // The recoverable window (docs/checks.md R32): from the oldest backup's end to when the
    // newest archived segment was stored (repo-ls), in the recovery API too.
    let w = &c["details"]["window"];
    assert_eq!(w["earliest_backup"], full["label"], "{c}");
    assert_eq!(w["start"], full["stop_time"], "{c}");
    assert_eq!(w["end_segment"], set["archive_max"], "{c}");
    let time = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let (start, end) = (time(&w["start"]), time(&w["end"]));
    assert!(start.is_some() && end >= start, "{c}");
    let clusters = scene.collector.api("/api/v1/recovery?host=db1").await?;
    let tool = clusters
        .as_array()
        .and_then(|a| a.iter().find(|c| c["cluster"] == "pgbackrest.main"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tool["window"]["end"], w["end"], "{clusters}");
    // And for Prometheus, as Unix times.
    for (series, at) in [("start", start), ("end", end)] {
        let got = scene
            .collector
            .metric(&format!(
                "backwatch_recovery_window_{series}_timestamp_seconds{{host=\"db1\",check=\"pgbackrest.main\"}}"
            ))
            .await?;
        assert_eq!(
            got.map(|v| v as i64),
            at.map(|t| t.timestamp()),
            "{series} in /metrics"
        );
    }

    // Per stanza too, for fleets with several stanzas per check.
    let labels = "host=\"db1\",check=\"pgbackrest.main\",set=\"main\"";
    for (series, at) in [("start", start), ("end", end)] {
        let family =
            format!("backwatch_backup_set_recovery_window_{series}_timestamp_seconds{{{labels}}}");
        let got = scene.collector.metric(&family).await?;
        assert_eq!(got.map(|v| v as i64), at.map(|t| t.timestamp()), "{family}");
    }
    for (family, want) in [
        (
            format!("backwatch_backup_set_duration_seconds{{{labels}}}"),
            full["duration_secs"].as_f64(),
        ),
        (
            format!("backwatch_backup_set_size_bytes{{{labels}}}"),
            incr["size_bytes"].as_f64(),
        ),
    ] {
        assert_eq!(scene.collector.metric(&family).await?, want, "{family}");
    }
    let full_age = scene
        .collector
        .metric(&format!(
            "backwatch_backup_set_newest_age_seconds{{{labels},type=\"full\"}}"
        ))
        .await?;
    assert!(full_age.is_some_and(|a| a >= 0.0), "{full_age:?}");

    // The host page's 7-day chart: the newest backup's age, against the verdict's limit.
    let series = scene
        .collector
        .api("/api/v1/hosts/db1/series?since=1h")
        .await?;
    let chart = series["series"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["check"] == "pgbackrest.main"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(chart["measure"], "newest_backup_age_secs", "{series}");
    assert_eq!(chart["critical"], 86400.0, "{series}");
    assert!(
        chart["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|pt| pt[1].as_f64().is_some_and(|v| v >= 0.0))),
        "{series}"
    );

    // And the backups' durations and sizes, each its own series and chart.
    let extra = |measure: &str| {
        series["series"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["check"] == "pgbackrest.main" && s["measure"] == measure)
            })
            .cloned()
            .unwrap_or_default()
    };
    let durations = extra("full_backup_duration_secs");
    assert_eq!(durations["warning"], 14400.0, "{series}");
    assert!(
        durations["points"].as_array().is_some_and(|p| p
            .iter()
            .any(|pt| pt[1].as_f64() == full["duration_secs"].as_f64())),
        "{series}"
    );
    let sizes = extra("backup_size_bytes");
    assert!(
        sizes["points"].as_array().is_some_and(|p| p
            .iter()
            .any(|pt| pt[1].as_f64() == incr["size_bytes"].as_f64())),
        "{series}"
    );
    let browser = backwatch_tests::harness::Browser::start().await?;
    browser.goto(&scene.collector.url("/hosts/db1")).await?;
    let drawn = browser
        .wait_js(
            WAIT,
            "the stanza's three charts",
            "const c = (m) => document.querySelector(`svg.chart[data-check=\"pgbackrest.main\"][data-measure=\"${m}\"]`);\
             const all = ['newest_backup_age_secs', 'full_backup_duration_secs', 'backup_size_bytes'].map(c);\
             return all.every((x) => x && Number(x.dataset.count) > 0) ? all.length : null;",
        )
        .await;
    assert_eq!(drawn, 3);
    let errors = browser.script_errors().await?;
    anyhow::ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // History as for a backup directory: the daily report's backup table and the monthly
    // review's backup trends, from the rollups (the stanza's newest backup, its full's time).
    let daily = scene.collector.api("/api/v1/reports/daily").await?;
    let line = daily["backups"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["check"] == "pgbackrest.main"))
        .cloned()
        .unwrap_or_default();
    assert!(
        line["backups_24h"].as_i64().is_some_and(|n| n >= 1),
        "{daily}"
    );
    assert_eq!(line["newest_at"], incr["stop_time"], "{daily}");
    assert_eq!(line["newest_size_bytes"], incr["size_bytes"], "{daily}");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let review = scene
        .collector
        .api(&format!("/api/v1/reports/monthly?month={month}"))
        .await?;
    let trend = review["backups"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["check"] == "pgbackrest.main"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        trend["duration_max_secs"], full["duration_secs"],
        "{review}"
    );
    assert_eq!(trend["newest_size_bytes"], incr["size_bytes"], "{review}");
    assert!(trend["typical_time"].is_string(), "{review}");

    // The tool's own status: a stanza that does not exist.
    let c = scene
        .collector
        .wait_summary("db1", "pgbackrest.typo", "critical", "mian: status ", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("missing stanza path"),
        "{c}"
    );
    Ok(())
}

/// Runtime, size drop and redundancy, judged from real pgBackRest backups: a full backup of a
/// cluster with a table, then the table dropped and a second full that waits for its WAL
/// behind a slow archive_command.
#[tokio::test]
async fn a_slow_shrunken_full_and_too_few_fulls_are_warnings_naming_each() -> Result<()> {
    let tool = PgBackRest::start("repo1-retention-full=5")?;
    tool.pg.psql(
        "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g",
    )?;
    tool.backup("full")?;
    tool.pg.psql("DROP TABLE big; CHECKPOINT")?;
    // The backup waits until its last segment is archived: at least 3 s with this command.
    tool.pg.set_archive_command(&format!(
        "sleep 3 && pgbackrest --config={} --stanza=main archive-push %p",
        tool.conf.display()
    ))?;
    tool.backup("full")?;

    let scene = pgbackrest_scene(
        &tool.conf,
        "max_duration = \"2s\"\nmin_size_ratio = 0.8\nmin_full_backups = 3\n",
    )
    .await?;
    let c = scene
        .collector
        .wait_status("db1", "pgbackrest.main", "warning", WAIT)
        .await;
    let set = &c["details"]["sets"][0];
    let (newest, previous) = (&set["newest_full"], &set["previous_full"]);
    let label = |b: &serde_json::Value| b["label"].as_str().unwrap_or_default().to_string();
    assert_eq!(set["full_count"], 2, "{c}");
    assert!(
        newest["size_bytes"].as_u64() < previous["size_bytes"].as_u64().map(|p| p * 8 / 10),
        "{c}"
    );
    let summary = c["summary"].as_str().unwrap_or_default();
    for want in [
        format!("main: newest full backup {} took ", label(newest)),
        "(limit 2 s)".to_string(),
        format!("% of the previous full {} (", label(previous)),
        "limit 80 %)".to_string(),
        "2 full backups kept, fewer than 3".to_string(),
    ] {
        assert!(summary.contains(&want), "{want:?} not in {summary}");
    }
    assert_eq!(c["details"]["min_full_backups"], 3, "{c}");
    Ok(())
}

#[tokio::test]
async fn barman_backup_appears_with_its_duration_and_failing_checks_are_critical() -> Result<()> {
    let tool = Barman::start().await?;
    let (pg, conf) = (&tool.pg, &tool.conf);
    // Two backups: the newest is compared with the full before it (Barman's are all full).
    tool.run(&["backup", "pg"])?;
    tool.run(&["backup", "pg"])?;
    pg.switch_wal()?;
    let system_id = pg.psql("SELECT system_identifier FROM pg_control_system()")?;

    let scene = barman_scene(conf, "").await?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "ok", "pg: newest full ", WAIT)
        .await;
    let newest = &c["details"]["sets"][0]["newest"];
    assert!(
        newest["duration_secs"].as_i64().is_some_and(|d| d >= 0),
        "{c}"
    );
    assert!(
        newest["size_bytes"].as_u64().is_some_and(|s| s > 1 << 20),
        "{c}"
    );
    assert!(newest["wal_start"].is_string(), "{c}");
    assert!(
        c["summary"].as_str().unwrap_or_default().contains("took"),
        "{c}"
    );
    let set = &c["details"]["sets"][0];
    assert_eq!(set["full_count"], 2, "{c}");
    assert!(
        set["previous_full"]["label"].as_str() < newest["label"].as_str(),
        "{c}"
    );
    // The cluster, as Barman recorded it (identity.json): one set across hosts.
    assert_eq!(set["system_identifier"], system_id.as_str(), "{c}");
    // The recoverable window: the oldest backup's end to the newest WAL in xlog.db.
    let w = &c["details"]["window"];
    assert_eq!(w["start"], set["oldest"]["stop_time"], "{c}");
    assert!(w["end"].is_string() && w["end_segment"].is_string(), "{c}");

    // The server goes away: Barman's own check fails, and says which checks.
    pg.stop()?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "critical", "pg: failing checks: ", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("postgresql"),
        "{c}"
    );
    Ok(())
}

/// A backup running for longer than `max_duration` is a warning: pgBackRest holds its backup
/// lock while a full waits for its last segment behind a slow archive_command, and the agent
/// times the lock from when it first saw it held.
#[tokio::test]
async fn a_backup_running_longer_than_max_duration_is_a_warning() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let tool = PgBackRest::start("")?;
    tool.backup("full")?;
    tool.pg.set_archive_command(&format!(
        "sleep 30 && pgbackrest --config={} --stanza=main archive-push %p",
        tool.conf.display()
    ))?;
    // In a process group of its own, so that the whole backup goes at the end of the test.
    let conf = format!("--config={}", tool.conf.display());
    let running = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "pgbackrest", &conf])
        .args(["--stanza=main", "--type=full", "backup"])
        .current_dir("/tmp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _group = Group(i32::try_from(running.id())?);
    let scene = pgbackrest_scene(&tool.conf, "max_duration = \"5s\"\n").await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.main",
            "warning",
            "main: a backup has been running for ",
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("(limit 5 s): is it stuck?"), "{summary}");
    assert!(
        c["details"]["sets"][0]["backup_running_secs"]
            .as_i64()
            .is_some_and(|s| s > 5),
        "{c}"
    );
    Ok(())
}

/// A tool that hangs with a child of its own, and one that never stops printing: the probe's
/// timeout takes the whole process group with it, and endless output is an error at 4 MiB
/// instead of agent memory without bound.
#[tokio::test]
async fn a_hung_tool_leaves_no_process_behind_and_endless_output_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pids = dir.path().join("pids");
    let hung = dir.path().join("hung-tool.sh");
    // The grandchild keeps nothing of ours open, as `ssh` in the background of a wrapper would.
    fs::write(
        &hung,
        format!(
            "#!/bin/sh\nsleep 600 </dev/null >/dev/null 2>&1 &\necho $! >> {}\nwait\n",
            pids.display()
        ),
    )?;
    let chatty = dir.path().join("chatty-tool.sh");
    fs::write(&chatty, "#!/bin/sh\nexec yes '{\"backwatch\": 1}'\n")?;
    for f in [&hung, &chatty] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o755))?;
    }
    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[pgbackrest]]\nname = \"hung\"\ncommand = [\"{}\"]\ninterval = \"1h\"\ntimeout = \"2s\"\n\
             [[pgbackrest]]\nname = \"chatty\"\ncommand = [\"{}\"]\ninterval = \"1s\"\ntimeout = \"1m\"\n",
            hung.display(),
            chatty.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.hung",
            "unknown",
            "probe could not observe: probe timed out after 2s",
            WAIT,
        )
        .await;
    let pid: i32 = fs::read_to_string(&pids)?
        .lines()
        .next()
        .with_context(|| format!("the tool never started its child: {c}"))?
        .trim()
        .parse()?;
    eventually(
        Duration::from_secs(10),
        "the tool's child is killed",
        async || {
            // Gone, or a zombie waiting for init: either way it no longer runs.
            match fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat)
                    if !stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    anyhow::bail!("process {pid} still runs: {stat}")
                }
                _ => Ok(()),
            }
        },
    )
    .await;

    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.chatty",
            "unknown",
            "pgBackRest could not be asked: output larger than 4 MiB on stdout from \
             chatty-tool.sh; stopped it",
            WAIT,
        )
        .await;
    // Several runs of it have been refused by now; the agent's peak memory stays small.
    let agent = scene.agent.pid().context("agent running")?;
    let status = fs::read_to_string(format!("/proc/{agent}/status"))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM in {status}"))?;
    assert!(
        peak_kib < 100 * 1024,
        "agent peak memory {peak_kib} KiB after refusing endless output: {c}"
    );
    Ok(())
}

/// An HA pair configured alike (`wal` links each host's `[[pgbackrest]]` to its own server):
/// a stale stanza is one alert, the primary's; the standby says the primary judges. Promoted,
/// the standby takes over the verdict.
#[tokio::test]
async fn in_an_ha_pair_the_primary_judges_the_stanza_and_a_promoted_standby_takes_over()
-> Result<()> {
    use backwatch_tests::harness::alerting::{DBA, alerting_toml};
    use backwatch_tests::harness::{Smtp, consistently, count};
    let tool = PgBackRest::start("repo1-retention-full=2")?;
    tool.backup("full")?;
    let standby = tool.pg.standby().start()?;
    let smtp = Smtp::capture()?;
    let certs = backwatch_tests::harness::Certs::fleet(&["db1", "db2"])?;
    let collector = backwatch_tests::harness::Collector::sqlite(&certs)
        .toml(&alerting_toml(&smtp))
        .start()
        .await?;
    // The full backup is seconds old; a 1 s limit makes it stale at once.
    let section = |dsn: &str| {
        format!(
            "[[wal]]\nname = \"main\"\ndsn = \"{dsn}\"\ninterval = \"1s\"\n\
             [[pgbackrest]]\nname = \"main\"\nconfig = \"{}\"\ninterval = \"1s\"\nmax_age = \"1s\"\nwal = \"main\"\n",
            tool.conf.display()
        )
    };
    let _db1 = backwatch_tests::harness::Agent::for_host("db1", &certs, &collector)
        .toml(&section(&tool.pg.dsn()))
        .start()?;
    let _db2 = backwatch_tests::harness::Agent::for_host("db2", &certs, &collector)
        .toml(&section(&standby.dsn()))
        .start()?;
    let c = collector
        .wait_status("db1", "pgbackrest.main", "critical", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("older than"),
        "{c}"
    );
    let c = collector
        .wait_status("db2", "pgbackrest.main", "ok", WAIT)
        .await;
    assert_eq!(
        c["summary"], "on a standby: the primary's probe judges these pgBackRest backups (main)",
        "{c}"
    );
    // One open alert for the stanza, the primary's, and one mail about it.
    let alert_hosts = async || -> Result<Vec<String>> {
        let alerts = collector.api("/api/v1/alerts?state=all").await?;
        Ok(alerts
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["check"] == "pgbackrest.main")
            .filter_map(|a| Some(format!("{} {}", a["host"].as_str()?, a["state"].as_str()?)))
            .collect())
    };
    eventually(WAIT, "one alert, db1's", async || {
        let hosts = alert_hosts().await?;
        anyhow::ensure!(hosts == ["db1 open"], "{hosts:?}");
        Ok(())
    })
    .await;
    smtp.wait_for(WAIT, "the critical mail", |m| {
        count(m, DBA, "[CRITICAL] db1 pgbackrest.main") == 1
    })
    .await;

    // Failover: the standby is promoted and the old primary stops. The promoted node judges
    // the stanza now, and it is the same backup set (the repository's system-id and the
    // stanza): the open alert carries it, no second alert opens and nobody is mailed again.
    standby.psql("SELECT pg_promote()")?;
    tool.pg.stop()?;
    let c = collector
        .wait_status("db2", "pgbackrest.main", "critical", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("older than"),
        "{c}"
    );
    consistently(
        Duration::from_secs(5),
        "still one alert, one mail",
        async || {
            let hosts = alert_hosts().await?;
            anyhow::ensure!(hosts == ["db1 open"], "{hosts:?}");
            let mails = smtp.messages()?;
            let about: Vec<&str> = mails
                .iter()
                .filter(|m| m.subject.contains("pgbackrest.main"))
                .map(|m| m.subject.as_str())
                .collect();
            anyhow::ensure!(
                count(&mails, DBA, "[CRITICAL] db1 pgbackrest.main") == 1
                    && about.iter().all(|s| !s.contains("db2")),
                "{about:?}"
            );
            Ok(())
        },
    )
    .await;
    Ok(())
}

/// A pgBackRest release too old for the server's major is named, not left as "no stanza":
/// Debian 12's 2.45 stops at PostgreSQL 15 and refuses 16 at `stanza-create`. The test takes
/// the first major after the installed pgBackRest's newest (from `target/pg`).
#[tokio::test]
async fn a_pgbackrest_too_old_for_the_servers_major_is_named() -> Result<()> {
    let version = PgBackRest::version()?;
    let Some(max) = backwatch_rules::backup_tool::pgbackrest_max_major(&version) else {
        eprintln!("pgBackRest {version}: no known limit; nothing to test");
        return Ok(());
    };
    let major = max + 1;
    if backwatch_tests::harness::pg::major_bindir(major).is_err() {
        eprintln!("pgBackRest {version} supports up to {max}: no PostgreSQL {major} to test with");
        return Ok(());
    }
    let tool = PgBackRest::configure(PgCluster::init().major(major), "")?;
    let refused = tool.run(&["--stanza=main", "stanza-create"]);
    anyhow::ensure!(refused.is_err(), "stanza-create on {major}: {refused:?}");
    let scene = scene("db1", |a| {
        a.toml(&format!(
            "[[wal]]\nname = \"main\"\ndsn = \"{}\"\ninterval = \"1s\"\n\
             [[pgbackrest]]\nname = \"main\"\nconfig = \"{}\"\ninterval = \"1s\"\nwal = \"main\"\n",
            tool.pg.dsn(),
            tool.conf.display()
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.main",
            "critical",
            &format!(
                "pgBackRest {version} does not support PostgreSQL {major} (it supports up to \
                 {max}): no backup of this server can be taken; install pgBackRest "
            ),
            WAIT,
        )
        .await;
    assert_eq!(c["details"]["server_major"], major, "{c}");
    assert_eq!(c["details"]["tool_version"], version.as_str(), "{c}");
    Ok(())
}

/// Barman has no version table of its own to consult: its `check` compares the server with the
/// `pg_basebackup` it would run, and the probe names that failing check. A PostgreSQL 16
/// server with Debian 12's `pg_basebackup` 15 is refused in those words.
#[tokio::test]
async fn barman_names_a_pg_basebackup_too_old_for_the_server() -> Result<()> {
    let major = 16;
    if backwatch_tests::harness::pg::major_bindir(major).is_err() {
        eprintln!("no PostgreSQL {major} to test with");
        return Ok(());
    }
    let tool = Barman::on(PgCluster::init().major(major)).await?;
    let scene = barman_scene(&tool.conf, "").await?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "critical", "pg: failing checks: ", WAIT)
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("pg_basebackup_compatible: PostgreSQL version: 16."),
        "{c}"
    );
    Ok(())
}

/// Barman 3.11 and later take block-level incremental backups of PostgreSQL 17 and later
/// (`backup --incremental`), which restore only with their chain back to a full one. With a
/// full and two incrementals: the newest backup is the second incremental, the newest full is
/// the full, one full is kept, and the full's size is compared with no incremental. Also the
/// WAL catalogue of a current Barman, under its newer name.
#[tokio::test]
async fn barman_incremental_backups_are_newest_but_never_full() -> Result<()> {
    let major = 18;
    let bin = backwatch_tests::harness::pg::major_bindir(major)?;
    let exe = Barman::newer()?;
    let pg = PgCluster::init()
        .major(major)
        .setting("summarize_wal", "on");
    let tool = Barman::using(pg, &exe, bin).await?;
    tool.run(&["backup", "pg"])?;
    tool.run(&["backup", "--incremental", "latest", "pg"])?;
    tool.run(&["backup", "--incremental", "latest", "pg"])?;
    let listed: serde_json::Value =
        serde_json::from_str(&tool.run(&["-f", "json", "list-backups", "pg"])?)?;
    let mut backups: Vec<(String, String)> = listed["pg"]
        .as_array()
        .context("list-backups")?
        .iter()
        .map(|b| {
            (
                b["backup_id"].as_str().unwrap_or_default().to_string(),
                b["backup_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    backups.sort();
    let types: Vec<&str> = backups.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, ["full", "incremental", "incremental"], "{listed}");

    let scene = barman_scene(&tool.conf, &format!("command = [\"{}\"]\n", exe.display())).await?;
    let c = scene
        .collector
        .wait_summary("db1", "barman.pg", "ok", "pg: newest incr ", WAIT)
        .await;
    let set = &c["details"]["sets"][0];
    assert_eq!(set["newest"]["type"], "incr", "{c}");
    assert_eq!(set["newest"]["label"], backups[2].0.as_str(), "{c}");
    assert_eq!(set["newest_full"]["type"], "full", "{c}");
    assert_eq!(set["newest_full"]["label"], backups[0].0.as_str(), "{c}");
    assert_eq!(set["full_count"], 1, "{c}");
    assert!(set["previous_full"].is_null(), "{c}");
    // Barman 3.13 and later name the WAL catalogue `<server>-xlog.db`: the window's end is
    // read from it.
    assert!(set["archive_max"].is_string(), "{c}");
    assert!(c["details"]["window"]["end"].is_string(), "{c}");
    Ok(())
}

/// pgBackRest verifies page checksums as it copies and marks a backup that met a bad one
/// (`error: true` in `info`). That backup is whole, restorable and the newest: the check is
/// critical for the corrupted cluster, and says so, not that the backup failed or is missing.
#[tokio::test]
async fn pgbackrest_names_a_backup_that_found_corrupted_pages() -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let tool = PgBackRest::configure(PgCluster::init().data_checksums(), "")?;
    tool.run(&["--stanza=main", "stanza-create"])?;
    let pg = &tool.pg;
    pg.psql("CREATE TABLE orders AS SELECT generate_series(1, 1000) AS id; CHECKPOINT")?;
    let file = pg
        .data_dir()
        .join(pg.psql("SELECT pg_relation_filepath('orders')")?.trim());
    pg.stop()?;
    // Bytes in the middle of the table's first page: its checksum no longer matches.
    let mut f = fs::OpenOptions::new().write(true).open(&file)?;
    f.seek(SeekFrom::Start(4000))?;
    f.write_all(&[0xff; 16])?;
    drop(f);
    pg.start()?;
    tool.backup("full")?;
    let info = tool.run(&["--stanza=main", "--output=json", "info"])?;
    assert!(info.contains("\"error\":true"), "{info}");

    let scene = pgbackrest_scene(&tool.conf, "").await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.main",
            "critical",
            "main: the newest backup ",
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary
            .contains("found pages whose checksum does not match: the cluster has corrupted pages"),
        "{c}"
    );
    assert!(
        !summary.contains("failed") && !summary.contains("no backup"),
        "{c}"
    );
    let set = &c["details"]["sets"][0];
    assert_eq!(set["newest"]["page_checksum_errors"], true, "{c}");
    assert_eq!(set["newest_full"]["label"], set["newest"]["label"], "{c}");
    assert!(set["newest_failed"].is_null(), "{c}");
    Ok(())
}

/// A stanza kept in two repositories (a local one and, say, an object store): each is its own
/// set, with its own backups, fulls and archive. Merged, repository 2 holding a single full
/// backup hid behind repository 1's two ("3 fulls kept"), and a repository that cannot be read
/// was only pgBackRest's "different across repos".
#[tokio::test]
async fn pgbackrest_judges_each_repository_of_a_stanza() -> Result<()> {
    let repo2 = tempfile::tempdir()?;
    backwatch_tests::harness::backup_tools::give_to_server_user(repo2.path())?;
    let tool = PgBackRest::start(&format!(
        "repo2-path={}\nrepo1-retention-full=2\nrepo2-retention-full=2",
        repo2.path().display()
    ))?;
    tool.backup("full")?;
    tool.backup("full")?;
    tool.run(&["--stanza=main", "--repo=2", "--type=full", "backup"])?;

    let scene = pgbackrest_scene(
        &tool.conf,
        &format!(
            "min_full_backups = 2\n[[pgbackrest]]\nname = \"first\"\nconfig = \"{}\"\n\
             repo = 1\nmin_full_backups = 2\ninterval = \"1s\"\n",
            tool.conf.display()
        ),
    )
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.main",
            "warning",
            "main/repo2: 1 full backup kept, fewer than 2",
            WAIT,
        )
        .await;
    let sets = c["details"]["sets"].as_array().cloned().unwrap_or_default();
    let set = |name: &str| {
        sets.iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let (one, two) = (set("main/repo1"), set("main/repo2"));
    assert_eq!(
        (one["full_count"].as_u64(), two["full_count"].as_u64()),
        (Some(2), Some(1)),
        "{c}"
    );
    assert_ne!(one["newest"]["label"], two["newest"]["label"], "{c}");
    // Each repository's archive, its end dated from its own listing (`repo-ls --repo=2`).
    for s in [&one, &two] {
        assert!(s["archive_max"].is_string(), "{c}");
        assert!(s["archive_max_time"].is_string(), "{c}");
        assert!(s["system_identifier"].is_string(), "{c}");
    }
    // One recoverable window for the stanza: a restore takes its backup from either
    // repository and its WAL from each in turn.
    let windows = c["details"]["windows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(windows.len(), 1, "{c}");
    assert_eq!(windows[0]["set"], "main", "{c}");
    assert_eq!(windows[0]["backups"], 3, "{c}");
    assert_eq!(windows[0]["earliest_backup"], one["oldest"]["label"], "{c}");
    assert_eq!(two["repository"], 2, "{c}");
    // A section of its own for repository 1, with its own limits: ok.
    scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.first",
            "ok",
            "main/repo1: newest full ",
            WAIT,
        )
        .await;

    // Repository 2's catalogue lost: that repository is critical in its own words, the first
    // one still judged on its own backups.
    let info = repo2.path().join("backup/main");
    for f in ["backup.info", "backup.info.copy"] {
        backwatch_tests::harness::backup_tools::as_server_user(&[
            "rm",
            "-f",
            info.join(f).to_str().context("path")?,
        ])?;
    }
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "pgbackrest.main",
            "critical",
            "main/repo2: status ",
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(!summary.contains("different across repos"), "{c}");
    assert!(summary.contains("; main/repo1: newest full "), "{c}");
    Ok(())
}
