//! Alerting end to end, as the people on the routes see it: a real agent, the real collector,
//! a real SMTP server (aiosmtpd) receiving what the procedure's audiences would get.

use anyhow::Result;
use backwatch_tests::harness::alerting::{
    DB1_DISK_WARNS, DBA, MANAGEMENT, SYSADMIN, alerting_toml, notifications, send,
};
use backwatch_tests::harness::{Agent, Certs, Collector, PgCluster, Smtp, count, eventually};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn failing_wal_archive_mails_dba_and_sysadmin_once_and_then_the_resolution() -> Result<()> {
    let pg = PgCluster::init().archive_command("false").start()?;
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&alerting_toml(&smtp))
        .start()
        .await?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .start()?;
    collector.wait_status("db1", "wal.main", "ok", WAIT).await;

    let segment = pg.switch_wal()?;
    collector
        .wait_status("db1", "wal.main", "critical", WAIT)
        .await;
    let critical = "[CRITICAL] db1 wal.main: archiving is failing";
    let mails = smtp
        .wait_for(WAIT, "the critical mail to DBA and sysadmin", |m| {
            count(m, DBA, critical) == 1 && count(m, SYSADMIN, critical) == 1
        })
        .await;

    let m = mails
        .iter()
        .find(|m| m.is_for(DBA))
        .expect("mail to the DBA team");
    assert!(m.subject.contains(&segment), "{}", m.subject);
    assert_eq!(m.from, "Backwatch <backwatch@collector.test>");
    assert_eq!(m.to, "DBA team <dba@example.com>");
    assert_eq!(m.auto_submitted.as_deref(), Some("auto-generated"));
    assert!(
        m.references
            .as_deref()
            .is_some_and(|r| r.starts_with("<alert-")),
        "{m:?}"
    );
    let text = m.text();
    for want in [
        "CRITICAL: wal.main on db1",
        "Open since ",
        "Measured:",
        &format!("last failed wal: {segment}"),
        "Threshold:\n  max data at risk: 15 min\n  max delay: 15 min",
        &format!(
            "Host on the dashboard: http://127.0.0.1:{}/hosts/db1",
            collector.http_port
        ),
        "What to do:\n  - Check the archive directory's permissions\n  - verify that the archive command works\n  - make sure the archive storage has space",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(m.html().contains("<h3>What to do</h3>"), "{}", m.html());

    pg.set_archive_command(&pg.copy_archive_command())?;
    collector.wait_status("db1", "wal.main", "ok", WAIT).await;
    let resolved = "[RESOLVED] db1 wal.main: archiving ok";
    let mails = smtp
        .wait_for(WAIT, "the resolution to DBA and sysadmin", |m| {
            count(m, DBA, resolved) == 1 && count(m, SYSADMIN, resolved) == 1
        })
        .await;
    // Every result while failing was critical again: still exactly one alert mail each.
    assert_eq!(count(&mails, DBA, critical), 1);
    assert_eq!(count(&mails, SYSADMIN, critical), 1);
    assert!(
        mails.iter().all(|m| !m.is_for(MANAGEMENT)),
        "management gets the summary only"
    );
    let r = mails
        .iter()
        .find(|m| m.subject.starts_with(resolved))
        .expect("resolution");
    assert!(r.subject.contains("(after "), "{}", r.subject);
    assert!(
        r.text().starts_with("RESOLVED: wal.main on db1 after "),
        "{}",
        r.text()
    );

    let alerts = collector.api("/api/v1/alerts?state=resolved").await?;
    let alert = &alerts[0];
    assert_eq!(
        (alert["host"].as_str(), alert["check"].as_str()),
        (Some("db1"), Some("wal.main"))
    );
    assert_eq!(alert["peak_severity"], "critical", "{alert}");
    let id = alert["id"].as_i64().unwrap_or_default();
    let fp = json!({"by": "alice", "comment": "archive host was rebooted on purpose"});
    let (code, marked) = send(
        &collector,
        "POST",
        &format!("/api/v1/alerts/{id}/false-positive"),
        Some(fp),
    )
    .await?;
    assert_eq!(code, 200, "{marked}");
    assert_eq!(marked["false_positive"]["by"], "alice", "{marked}");
    let detail = collector.api(&format!("/api/v1/alerts/{id}")).await?;
    let kinds: Vec<_> = detail["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("opened"), json!("resolved"), json!("false_positive")],
        "{detail}"
    );
    assert_eq!(notifications(&collector, "state=sent").await?.len(), 4);
    Ok(())
}

#[tokio::test]
async fn disk_warning_reaches_only_the_dba_team_and_is_acknowledged() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!("{}{DB1_DISK_WARNS}", alerting_toml(&smtp));
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let warning = "[WARNING] db1 disk.backup: ";
    smtp.wait_for(WAIT, "the warning to the DBA team", |m| {
        count(m, DBA, warning) == 1
    })
    .await;
    // The outbox row of every recipient is written with the alert: one row, the DBA's.
    let rows = eventually(WAIT, "the warning marked sent", async || {
        let rows = notifications(&collector, "").await?;
        anyhow::ensure!(rows.iter().all(|r| r["state"] == "sent"), "{rows:?}");
        Ok(rows)
    })
    .await;
    let routes: Vec<_> = rows
        .iter()
        .map(|r| r["route"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(routes, ["dba"]);
    assert!(smtp.to(SYSADMIN)?.is_empty() && smtp.to(MANAGEMENT)?.is_empty());
    let text = smtp.to(DBA)?[0].text().to_string();
    assert!(text.contains("Review backup retention"), "{text}");
    assert!(
        text.contains("Threshold:\n  critical: 100 %\n  warning: 0 %"),
        "{text}"
    );

    let open = collector.api("/api/v1/alerts?state=open").await?;
    let id = open[0]["id"].as_i64().unwrap_or_default();
    let path = format!("/api/v1/alerts/{id}/ack");
    let (code, acked) = send(
        &collector,
        "POST",
        &path,
        Some(json!({"by": "bob", "comment": "cleaning up"})),
    )
    .await?;
    assert_eq!(code, 200, "{acked}");
    assert_eq!(acked["acknowledged"]["by"], "bob");
    assert!(acked["time_to_ack_secs"].as_i64().is_some(), "{acked}");
    let (code, again) = send(&collector, "POST", &path, Some(json!({"by": "carol"}))).await?;
    assert_eq!(code, 409, "{again}");
    assert!(
        again["error"]
            .as_str()
            .is_some_and(|e| e.contains("already acknowledged by bob")),
        "{again}"
    );
    let (code, _) = send(&collector, "POST", &path, Some(json!({"comment": "who?"}))).await?;
    assert_eq!(code, 400, "`by` is required");
    let fp = format!("/api/v1/alerts/{id}/false-positive");
    let (code, open_fp) = send(&collector, "POST", &fp, Some(json!({"by": "bob"}))).await?;
    assert_eq!(code, 409, "{open_fp}");
    Ok(())
}

#[tokio::test]
async fn html_part_shows_markup_from_a_backup_path_as_text() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&alerting_toml(&smtp))
        .start()
        .await?;
    let root = tempfile::tempdir()?;
    // Missing on purpose: "backup directory … is missing" carries the path into the mail.
    let evil = root.path().join("<script>alert(1)</script>");
    let _agent = Agent::for_host("db1", &certs, &collector)
        .backup_dir("daily", &evil, "24h", "1s")
        .start()?;
    let mails = smtp
        .wait_for(WAIT, "the missing-backup mail", |m| {
            count(m, DBA, "[CRITICAL] db1 backup.daily") == 1
        })
        .await;
    let m = mails.iter().find(|m| m.is_for(DBA)).expect("mail");
    assert!(
        m.subject.contains("<script>alert(1)</script>"),
        "the subject is text: {}",
        m.subject
    );
    assert!(
        m.text().contains(&evil.display().to_string()),
        "{}",
        m.text()
    );
    let html = m.html();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    Ok(())
}

#[tokio::test]
async fn maintenance_silence_holds_notices_until_it_is_ended() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!("{}{DB1_DISK_WARNS}", alerting_toml(&smtp));
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let silence =
        json!({"host": "db1", "by": "alice", "reason": "disk replacement", "until": "1h"});
    let (code, created) = send(&collector, "POST", "/api/v1/silences", Some(silence)).await?;
    assert_eq!(code, 201, "{created}");
    let (code, bad) = send(
        &collector,
        "POST",
        "/api/v1/silences",
        Some(json!({"by": "x", "reason": "y", "until": "1h"})),
    )
    .await?;
    assert_eq!(code, 400, "a silence needs a matcher: {bad}");
    // Capped in scope and duration: the whole fleet, or a silence nobody would remember to
    // end, is refused with the reason.
    for (body, why) in [
        (
            json!({"host": "*", "check": "**", "by": "x", "reason": "y", "until": "1h"}),
            "may not cover every check of every host",
        ),
        (
            json!({"check": "*.*", "by": "x", "reason": "y", "until": "1h"}),
            "may not cover every check of every host",
        ),
        (
            json!({"host": "db1", "by": "x", "reason": "y", "until": "15d"}),
            "a silence lasts at most 14d",
        ),
        (
            json!({"host": "db1", "by": "x", "reason": "y", "starts": "2099-01-01T00:00:00Z", "until": "1h"}),
            "a silence starts at most 14days ahead",
        ),
    ] {
        let (code, refused) = send(&collector, "POST", "/api/v1/silences", Some(body)).await?;
        assert_eq!(code, 400, "{refused}");
        assert!(
            refused["error"].as_str().is_some_and(|e| e.contains(why)),
            "{refused}"
        );
    }

    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let alert = eventually(WAIT, "the silenced alert recorded", async || {
        let open = collector.api("/api/v1/alerts?state=open").await?;
        anyhow::ensure!(open[0]["silenced"] == true, "{open}");
        Ok(open[0].clone())
    })
    .await;
    assert_eq!(alert["check"], "disk.backup");
    assert!(
        notifications(&collector, "").await?.is_empty(),
        "nothing queued while silenced"
    );

    let id = created["id"].as_i64().unwrap_or_default();
    let (code, ended) = send(
        &collector,
        "DELETE",
        &format!("/api/v1/silences/{id}?by=alice"),
        None,
    )
    .await?;
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["ended_by"], "alice");
    smtp.wait_for(WAIT, "the held-back warning", |m| {
        count(m, DBA, "[WARNING] db1 disk.backup") == 1
    })
    .await;
    assert_eq!(collector.api("/api/v1/silences").await?, json!([]));
    let all = collector.api("/api/v1/silences?all=true").await?;
    assert_eq!(all[0]["reason"], "disk replacement", "{all}");
    Ok(())
}

/// A recurring `[[maintenance]]` window open now holds the notices of what it covers, as a
/// silence does; the API and the alerts page (in Chromium) show it open and the other window's
/// next opening.
#[tokio::test]
async fn a_recurring_maintenance_window_holds_notices_and_shows_on_the_alerts_page() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let now = chrono::Utc::now();
    let hhmm = |h: i64| {
        (now + chrono::Duration::hours(h))
            .format("%H:%M")
            .to_string()
    };
    let toml = format!(
        "{}{DB1_DISK_WARNS}\
         [[maintenance]]\nname = \"disks\"\nevery = [\"day\"]\nfrom = \"{}\"\nto = \"{}\"\n\
         timezone = \"UTC\"\nhosts = [\"db*\"]\nchecks = [\"disk.*\"]\nreason = \"disk replacement\"\n\
         [[maintenance]]\nname = \"later\"\nevery = [\"day\"]\nfrom = \"{}\"\nto = \"{}\"\n\
         timezone = \"Europe/Berlin\"\nchecks = [\"wal.*\"]\n",
        alerting_toml(&smtp),
        hhmm(-1),
        hhmm(1),
        hhmm(2),
        hhmm(3),
    );
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let alert = eventually(WAIT, "the alert recorded, silenced", async || {
        let open = collector.api("/api/v1/alerts?state=open").await?;
        anyhow::ensure!(open[0]["silenced"] == true, "{open}");
        Ok(open[0].clone())
    })
    .await;
    assert_eq!(alert["check"], "disk.backup");
    backwatch_tests::harness::consistently(
        Duration::from_secs(3),
        "nothing queued inside the window",
        async || {
            anyhow::ensure!(notifications(&collector, "").await?.is_empty());
            Ok(())
        },
    )
    .await;

    let windows = collector.api("/api/v1/maintenance").await?;
    assert_eq!(windows[0]["name"], "disks", "{windows}");
    assert_eq!(windows[0]["open"], true, "{windows}");
    assert!(windows[0]["current"]["ends_at"].is_string(), "{windows}");
    assert_eq!(windows[1]["open"], false, "{windows}");
    assert!(windows[1]["next"]["starts_at"].is_string(), "{windows}");
    assert_eq!(windows[1]["timezone"], "Europe/Berlin", "{windows}");

    let browser = backwatch_tests::harness::Browser::start().await?;
    browser.goto(&collector.url("/alerts")).await?;
    let got = browser
        .wait_js(
            WAIT,
            "the maintenance windows on the alerts page",
            "const o = document.querySelector('table.maintenance tr[data-window=\"disks\"] td.window-state');\
             const n = document.querySelector('table.maintenance tr[data-window=\"later\"] td.window-state');\
             return o && n ? [o.textContent, n.textContent] : null;",
        )
        .await;
    assert!(
        got[0]
            .as_str()
            .is_some_and(|t| t.starts_with("open until ")),
        "{got}"
    );
    assert!(
        got[1].as_str().is_some_and(|t| t.starts_with("next ")),
        "{got}"
    );
    let errors = browser.script_errors().await?;
    anyhow::ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");
    Ok(())
}

/// A mail server, host `db1`'s certificates, and a collector whose hosts turn silent after
/// 3 s without contact.
async fn quickly_silent() -> Result<(Smtp, Certs, Collector)> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!(
        "{}[silence]\nhost_after = \"3s\"\ncheck_grace = \"1s\"\nsweep_every = \"500ms\"\n",
        alerting_toml(&smtp)
    );
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    Ok((smtp, certs, collector))
}

#[tokio::test]
async fn silent_agent_is_one_alert_and_its_return_resolves_it() -> Result<()> {
    let (smtp, certs, collector) = quickly_silent().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("base.tar"), b"a fresh backup")?;
    let mut agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .backup_dir("daily", dir.path(), "24h", "1s")
        .start()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;

    agent.kill();
    let silent = "[CRITICAL] db1 agent.contact: agent silent since";
    smtp.wait_for(WAIT, "one agent-silent mail each", |m| {
        count(m, DBA, silent) == 1 && count(m, SYSADMIN, silent) == 1
    })
    .await;
    agent.launch()?;
    let back = "[RESOLVED] db1 agent.contact: agent reporting again";
    let mails = smtp
        .wait_for(WAIT, "the agent back", |m| {
            count(m, DBA, back) == 1 && count(m, SYSADMIN, back) == 1
        })
        .await;
    // Its checks went unknown with it: covered by the one alert, not one mail per check.
    assert_eq!(
        mails.iter().filter(|m| m.is_for(DBA)).count(),
        2,
        "{mails:#?}"
    );
    Ok(())
}

/// A check the silence turned unknown, whose agent comes back with an unknown of its own (its
/// path gone after a reboot, PostgreSQL not started): the silence's unknown was covered by the
/// agent-silent alert, the agent's own is news and is alerted.
#[tokio::test]
async fn an_unknown_check_of_an_agent_back_from_silence_is_alerted() -> Result<()> {
    let (smtp, certs, collector) = quickly_silent().await?;
    let dir = tempfile::tempdir()?;
    let mount = dir.path().join("backup");
    std::fs::create_dir(&mount)?;
    let mut agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", &mount, "1s")
        .start()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    agent.kill();
    collector
        .wait_summary("db1", "disk.backup", "unknown", "agent silent since", WAIT)
        .await;
    std::fs::remove_dir(&mount)?;
    agent.launch()?;
    collector
        .wait_summary("db1", "disk.backup", "unknown", "cannot measure ", WAIT)
        .await;
    let news = "[UNKNOWN] db1 disk.backup: cannot measure ";
    smtp.wait_for(WAIT, "the agent's own unknown alerted", |m| {
        count(m, DBA, news) == 1
    })
    .await;
    Ok(())
}

/// With authentication, a silence, an acknowledgement and the end of a silence are recorded
/// as the caller the token names, whatever `by` the body claims.
#[tokio::test]
async fn silences_and_marks_are_recorded_as_the_authenticated_caller() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let (token_file, token) = backwatch_tests::harness::fleet::token_file(keys.path(), "oncall")?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!(
            "[[http.tokens]]\nname = \"oncall\"\ntoken_file = \"{token_file}\"\nrole = \"ack\"\n"
        ))
        .start()
        .await?;
    let http = backwatch_tests::harness::fleet::http_client();
    let silence: serde_json::Value = http
        .post(collector.url("/api/v1/silences"))
        .bearer_auth(&token)
        .json(&json!({"host": "db1", "by": "mallory", "reason": "r", "until": "1h"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(silence["created_by"], "oncall", "{silence}");
    let id = silence["id"].as_i64().unwrap_or_default();
    let ended: serde_json::Value = http
        .delete(collector.url(&format!("/api/v1/silences/{id}?by=mallory")))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ended["ended_by"], "oncall", "{ended}");
    Ok(())
}
