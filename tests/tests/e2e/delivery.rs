//! Delivery through the outbox when things go wrong: an SMTP server that refuses and then is
//! gone, a collector killed (SIGKILL) in the middle of a delivery, a webhook that answers 503.
//! Nothing is lost; nothing arrives twice, except in the one window README describes (server
//! accepted, collector killed before it recorded that), and then with the same Message-ID.

use anyhow::{Result, ensure};
use backwatch_tests::harness::alerting::{
    DB1_DISK_WARNS, DBA, FAST, PROCEDURE_ROUTES, alerting_toml, notifications,
};
use backwatch_tests::harness::{
    Agent, Certs, Collector, CollectorBuilder, PgCluster, Smtp, Webhook, consistently, eventually,
};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Rows of the outbox, once every one of them is sent.
async fn all_sent(collector: &Collector, expected: usize) -> Vec<serde_json::Value> {
    eventually(
        WAIT,
        &format!("{expected} notifications sent"),
        async || {
            let rows = notifications(collector, "").await?;
            ensure!(
                rows.len() == expected && rows.iter().all(|r| r["state"] == "sent"),
                "{rows:#?}"
            );
            Ok(rows)
        },
    )
    .await
}

#[tokio::test]
async fn smtp_refusing_then_down_then_back_delivers_each_notification_once() -> Result<()> {
    let mut smtp = Smtp::capture()?;
    smtp.reject_recipients(Some("451 4.3.2 mailbox busy, try later"))?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!("{}{DB1_DISK_WARNS}", alerting_toml(&smtp));
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("a", a.path(), "1s")
        .disk("b", b.path(), "1s")
        .start()?;

    // The server's answer is visible in the API while the notifications wait.
    eventually(WAIT, "both refused with the server's answer", async || {
        let rows = notifications(&collector, "state=pending").await?;
        let refused = rows
            .iter()
            .filter(|r| {
                r["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("4.3.2 mailbox busy, try later"))
            })
            .count();
        ensure!(refused == 2, "{rows:#?}");
        Ok(())
    })
    .await;

    smtp.stop();
    smtp.reject_recipients(None)?;
    eventually(WAIT, "attempts against a server that is gone", async || {
        let rows = notifications(&collector, "state=pending").await?;
        ensure!(
            rows.iter().any(|r| r["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("refused"))),
            "{rows:#?}"
        );
        Ok(())
    })
    .await;
    assert!(
        collector
            .log()
            .contains("notification not delivered; will retry")
    );

    smtp.start()?;
    let rows = all_sent(&collector, 2).await;
    assert!(
        rows.iter()
            .all(|r| r["attempts"].as_u64().unwrap_or(0) >= 3),
        "{rows:#?}"
    );
    let mails = smtp.to(DBA)?;
    let mut subjects: Vec<_> = mails
        .iter()
        .map(|m| m.subject.split(':').next().unwrap_or("").to_string())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["[WARNING] db1 disk.a", "[WARNING] db1 disk.b"],
        "each exactly once"
    );
    Ok(())
}

/// The collector dies inside RCPT, before the message was handed over; after a restart the
/// notification is sent exactly once.
async fn killed_mid_delivery_sends_once(
    builder: CollectorBuilder<'_>,
    certs: &Certs,
) -> Result<()> {
    let smtp = Smtp::capture()?;
    smtp.stall_recipients(Some(120.0))?;
    let toml = format!("{}{DB1_DISK_WARNS}", alerting_toml(&smtp));
    let mut collector = builder.toml(&toml).start().await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    eventually(WAIT, "the collector inside RCPT", async || {
        ensure!(smtp.stalled("rcpt_waiting"), "not yet");
        Ok(())
    })
    .await;

    collector.kill();
    smtp.stall_recipients(None)?;
    collector.restart().await?;

    let rows = all_sent(&collector, 1).await;
    assert!(rows[0]["attempts"].as_u64().unwrap_or(0) >= 2, "{rows:#?}");
    assert!(
        !collector
            .log()
            .contains("sending again with the same Message-ID"),
        "the interrupted attempt had not handed the message over: {}",
        collector.log()
    );
    let mails = smtp.to(DBA)?;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(
        mails[0].subject.starts_with("[WARNING] db1 disk.backup"),
        "{}",
        mails[0].subject
    );
    assert!(
        collector
            .log()
            .contains("released claims left by this worker's previous run"),
        "{}",
        collector.log()
    );
    Ok(())
}

#[tokio::test]
async fn collector_killed_mid_delivery_sends_once_after_restart() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    killed_mid_delivery_sends_once(Collector::sqlite(&certs), &certs).await
}

#[tokio::test]
async fn postgres_collector_killed_mid_delivery_sends_once_after_restart() -> Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database("backwatch")?;
    let certs = Certs::fleet(&["db1"])?;
    killed_mid_delivery_sends_once(
        Collector::postgres(&certs, &pg.url_for("backwatch")),
        &certs,
    )
    .await
}

#[tokio::test]
async fn collector_killed_after_the_server_accepted_resends_with_the_same_message_id() -> Result<()>
{
    let smtp = Smtp::capture()?;
    // The server stores the message, then holds back its "250": the collector cannot know.
    smtp.stall_after_data(Some(120.0))?;
    let certs = Certs::fleet(&["db1"])?;
    let toml = format!("{}{DB1_DISK_WARNS}", alerting_toml(&smtp));
    let mut collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    eventually(
        WAIT,
        "the message accepted, the answer held back",
        async || {
            ensure!(smtp.stalled("data_waiting"), "not yet");
            Ok(())
        },
    )
    .await;

    collector.kill();
    smtp.stall_after_data(None)?;
    collector.restart().await?;

    all_sent(&collector, 1).await;
    let mails = smtp.to(DBA)?;
    assert_eq!(mails.len(), 2, "the documented duplicate: {mails:#?}");
    assert_eq!(
        mails[0].message_id, mails[1].message_id,
        "a duplicate keeps its Message-ID"
    );
    assert!(
        collector
            .log()
            .contains("sending again with the same Message-ID"),
        "{}",
        collector.log()
    );
    Ok(())
}

#[tokio::test]
async fn webhook_gets_the_alert_as_json_after_refusing_for_a_while() -> Result<()> {
    let hook = Webhook::start().await?;
    hook.respond_with(503);
    let certs = Certs::fleet(&["db1"])?;
    let route = format!(
        "[[routes]]\nname = \"pager\"\nchannel = \"webhook\"\nurl = \"{}\"\nchecks = [\"disk.*\"]\n",
        hook.url()
    );
    let toml = format!("{FAST}{DB1_DISK_WARNS}{route}");
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    eventually(WAIT, "the 503 recorded", async || {
        let rows = notifications(&collector, "state=pending").await?;
        ensure!(
            rows.iter().any(|r| r["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("HTTP 503"))),
            "{rows:#?}"
        );
        Ok(())
    })
    .await;
    // A rotated key refuses every message alike: retried too, not given up on.
    hook.respond_with(401);
    eventually(WAIT, "the 401 recorded, still pending", async || {
        let rows = notifications(&collector, "state=pending").await?;
        ensure!(
            rows.iter().any(|r| r["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("HTTP 401"))),
            "{rows:#?}"
        );
        Ok(())
    })
    .await;
    assert!(notifications(&collector, "state=failed").await?.is_empty());
    hook.respond_with(200);
    let rows = all_sent(&collector, 1).await;

    let got = hook.received();
    assert!(
        got.len() >= 2,
        "refused at least once, then taken: {got:#?}"
    );
    let last = &got[got.len() - 1];
    let doc = &last.body;
    assert_eq!(doc["kind"], "opened", "{doc}");
    assert_eq!(
        (
            doc["alert"]["host"].as_str(),
            doc["alert"]["check"].as_str()
        ),
        (Some("db1"), Some("disk.backup"))
    );
    assert_eq!(doc["alert"]["severity"], "warning");
    assert!(
        doc["procedure"]
            .as_str()
            .is_some_and(|p| p.starts_with("Review backup retention")),
        "{doc}"
    );
    assert_eq!(last.header("idempotency-key"), doc["message_id"].as_str());
    assert_eq!(doc["message_id"], rows[0]["message_id"]);
    assert!(
        got.iter()
            .all(|r| r.body["message_id"] == doc["message_id"]),
        "retries keep their id"
    );
    Ok(())
}

/// A webhook that takes the request and never answers (an endpoint behind a stuck proxy)
/// holds back its own notifications only: the emails of the same alerts go out while its
/// first request waits for the timeout, it gets one request at a time, and after a timeout
/// the messages claimed with that one wait for their retry rather than hang in turn.
#[tokio::test]
async fn a_hanging_webhook_holds_back_no_email() -> Result<()> {
    let smtp = Smtp::capture()?;
    let hook = Webhook::start().await?;
    hook.hang(true);
    let certs = Certs::fleet(&["db1"])?;
    // FAST ends in [delivery]; the lease must outlast two attempts.
    let toml = format!(
        "{}{FAST}webhook_timeout = \"40s\"\n{PROCEDURE_ROUTES}{DB1_DISK_WARNS}\
         [[routes]]\nname = \"chat\"\nchannel = \"webhook\"\nurl = \"{}\"\nchecks = [\"disk.*\"]\n",
        smtp.collector_toml(),
        hook.url()
    );
    let collector = Collector::sqlite(&certs).toml(&toml).start().await?;
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("a", dirs[0].path(), "1s")
        .disk("b", dirs[1].path(), "1s")
        .disk("c", dirs[2].path(), "1s")
        .start()?;

    // Well within the webhook's 40 s: one email waiting behind its request would miss this.
    eventually(
        Duration::from_secs(30),
        "the three emails while the webhook hangs",
        async || {
            let mails = smtp.to(DBA)?;
            ensure!(mails.len() == 3, "{} emails", mails.len());
            Ok(())
        },
    )
    .await;
    assert_eq!(hook.received().len(), 1, "one request at a time");
    let hooks: Vec<_> = notifications(&collector, "")
        .await?
        .into_iter()
        .filter(|r| r["channel"] == "webhook")
        .collect();
    assert!(
        hooks.len() == 3 && hooks.iter().all(|r| r["state"] != "sent"),
        "{hooks:#?}"
    );
    // Once a request timed out, the messages claimed with it are not tried now (each would
    // hang as long): they wait for their retry instead of holding their claims.
    eventually(
        Duration::from_secs(100),
        "a message behind the timed-out one not tried",
        async || {
            let rows = notifications(&collector, "state=pending").await?;
            ensure!(
                rows.iter().any(|r| r["last_error"].as_str().is_some_and(
                    |e| e.starts_with("not tried: the destination failed the message before")
                )),
                "{rows:#?}"
            );
            Ok(())
        },
    )
    .await;
    ensure!(hook.received().len() <= 3, "{:#?}", hook.received());
    Ok(())
}

/// A webhook URL carries its credential in the path or query: read from `url_file`, it is
/// delivered to, but never shown whole by the API, the logs, stored error texts or
/// `config check`.
#[tokio::test]
async fn webhook_url_from_a_file_is_used_but_never_shown() -> Result<()> {
    let hook = Webhook::start().await?;
    hook.respond_with(503);
    let certs = Certs::fleet(&["db1"])?;
    let secrets = tempfile::tempdir()?;
    let good = secrets.path().join("pager-url");
    std::fs::write(
        &good,
        format!("{}/T0/B0/PATHSECRET?token=QUERYSECRET\n", hook.url()),
    )?;
    // Nothing listens there: a connection error, whose text names the URL unless removed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let bad = secrets.path().join("chat-url");
    std::fs::write(&bad, format!("http://127.0.0.1:{closed}/CLOSEDSECRET\n"))?;
    let routes = format!(
        "[[routes]]\nname = \"pager\"\nchannel = \"webhook\"\nurl_file = \"{}\"\nchecks = [\"disk.*\"]\n\
         [[routes]]\nname = \"chat\"\nchannel = \"webhook\"\nurl_file = \"{}\"\nchecks = [\"disk.*\"]\n",
        good.display(),
        bad.display()
    );
    let collector = Collector::sqlite(&certs)
        .toml(&format!("{FAST}{DB1_DISK_WARNS}{routes}"))
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let rows = eventually(WAIT, "both deliveries failed once", async || {
        let rows = notifications(&collector, "").await?;
        ensure!(
            rows.len() == 2 && rows.iter().all(|r| r["last_error"].is_string()),
            "{rows:#?}"
        );
        Ok(rows)
    })
    .await;
    hook.respond_with(200);
    eventually(WAIT, "the pager got the alert", async || {
        ensure!(!hook.received().is_empty(), "nothing received yet");
        Ok(())
    })
    .await;
    // It went to the whole URL from the file.
    let got = hook.received();
    assert!(
        got.iter()
            .all(|r| r.target.contains("/T0/B0/PATHSECRET?token=QUERYSECRET")),
        "{got:#?}"
    );

    let config_check =
        std::process::Command::new(backwatch_tests::harness::bin("backwatch-collector"))
            .args(["config", "check", "--config"])
            .arg(collector.config_path())
            .output()?;
    assert!(config_check.status.success(), "{config_check:?}");
    let shown = format!(
        "{rows:?}\n{}\n{}\n{}",
        serde_json::Value::Array(notifications(&collector, "").await?),
        String::from_utf8_lossy(&config_check.stdout),
        collector.log()
    );
    assert!(
        shown.contains(&format!("http://127.0.0.1:{closed}/…")),
        "{shown}"
    );
    for secret in ["PATHSECRET", "QUERYSECRET", "CLOSEDSECRET"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    Ok(())
}

fn stale_backup(dir: &std::path::Path, name: &str, when: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, vec![0u8; 4096])?;
    let ok = std::process::Command::new("touch")
        .args(["-d", when])
        .arg(&path)
        .status()?
        .success();
    ensure!(ok, "touch -d {when}");
    Ok(())
}

/// The first Events v2 document with `event_action` = `action` the receiver got.
async fn pagerduty_event(pagerduty: &Webhook, action: &str) -> serde_json::Value {
    eventually(WAIT, &format!("the {action} event"), async || {
        pagerduty
            .received()
            .into_iter()
            .map(|r| r.body)
            .find(|b| b["event_action"] == action)
            .ok_or_else(|| anyhow::anyhow!("{:?}", pagerduty.received()))
    })
    .await
}

/// A collector with `routes` (after the fast alerting settings) and agent db1, whose daily
/// backup is three days old: an alert opens at once. Hold the returned values for the test.
async fn stale_backup_alerting(
    routes: &str,
) -> Result<(Certs, Collector, tempfile::TempDir, Agent)> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!("{FAST}{routes}"))
        .start()
        .await?;
    let daily = tempfile::tempdir()?;
    stale_backup(daily.path(), "base.tar.gz", "3 days ago")?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .backup_dir("daily", daily.path(), "24h", "1s")
        .start()?;
    Ok((certs, collector, daily, agent))
}

/// Acknowledges the alert a PagerDuty `dedup_key` names, through the API.
async fn acknowledge(collector: &Collector, dedup: &str) -> Result<()> {
    let id = dedup.trim_start_matches("backwatch-alert-");
    let r = collector
        .http_client()
        .post(collector.url(&format!("/api/v1/alerts/{id}/ack")))
        .json(&serde_json::json!({"by": "oncall", "comment": "on it"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    Ok(())
}

/// Slack and PagerDuty routes: each receiver gets its service's documented format: Slack
/// blocks with the severity, host, check and a link; PagerDuty Events v2 `trigger`,
/// `acknowledge` (when acknowledged in Backwatch) and `resolve` under one dedup key.
#[tokio::test]
async fn slack_and_pagerduty_get_their_own_formats_from_trigger_to_resolve() -> Result<()> {
    let (slack, pagerduty) = (Webhook::start().await?, Webhook::start().await?);
    let key = "R0123456789ABCDEF0123456789ABCDE";
    let routes = format!(
        "[[routes]]\nname = \"chat\"\nchannel = \"slack\"\nurl = \"{}\"\n\
         [[routes]]\nname = \"pager\"\nchannel = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{key}\"\nmin_status = \"critical\"\n",
        slack.url(),
        pagerduty.url()
    );
    let (_certs, collector, daily, _agent) = stale_backup_alerting(&routes).await?;

    let first = |hook: &Webhook| hook.received().first().map(|r| r.body.clone());
    let (chat, page) = eventually(WAIT, "both notified", async || {
        Ok((
            first(&slack).ok_or_else(|| anyhow::anyhow!("slack: nothing yet"))?,
            first(&pagerduty).ok_or_else(|| anyhow::anyhow!("pagerduty: nothing yet"))?,
        ))
    })
    .await;

    // Slack: a fallback text and blocks (header ≤ 150 characters, fields, a link button).
    assert!(
        chat["text"]
            .as_str()
            .is_some_and(|t| t.contains("db1 backup.daily")),
        "{chat}"
    );
    let blocks = chat["blocks"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(types, ["header", "section", "section", "actions"], "{chat}");
    let header = blocks[0]["text"]["text"].as_str().unwrap_or_default();
    assert!(header.starts_with("[CRITICAL] db1 backup.daily"), "{chat}");
    assert!(header.chars().count() <= 150, "{chat}");
    assert_eq!(blocks[0]["text"]["type"], "plain_text", "{chat}");
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert!(fields.contains(&"*Severity*\ncritical"), "{chat}");
    assert!(fields.contains(&"*Host*\ndb1"), "{chat}");
    assert!(
        blocks[3]["elements"][0]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/hosts/db1")),
        "{chat}"
    );

    // PagerDuty Events v2: the documented required fields and values.
    assert_eq!(page["routing_key"], key, "{page}");
    assert_eq!(page["event_action"], "trigger", "{page}");
    let dedup = page["dedup_key"].as_str().unwrap_or_default().to_string();
    assert!(dedup.starts_with("backwatch-alert-"), "{page}");
    let p = &page["payload"];
    let summary = p["summary"].as_str().unwrap_or_default();
    assert!(
        !summary.is_empty() && summary.chars().count() <= 1024,
        "{page}"
    );
    assert_eq!(p["source"], "db1", "{page}");
    assert!(
        ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or("")),
        "{page}"
    );
    assert_eq!(p["severity"], "critical", "{page}");
    assert_eq!(p["component"], "backup.daily", "{page}");
    assert!(
        p["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some(),
        "{page}"
    );

    // Acknowledged in Backwatch: PagerDuty's incident is acknowledged under the same key;
    // Slack hears nothing of it (a mark, not a notice).
    let slack_before = slack.received().len();
    acknowledge(&collector, &dedup).await?;
    let ack = pagerduty_event(&pagerduty, "acknowledge").await;
    assert_eq!(ack["dedup_key"], dedup.as_str(), "{ack}");
    assert_eq!(ack["routing_key"], key, "{ack}");
    assert_eq!(
        slack.received().len(),
        slack_before,
        "Slack got the acknowledgement"
    );

    // A fresh backup: the alert resolves, PagerDuty's incident under the same key too.
    stale_backup(daily.path(), "base-2.tar.gz", "1 minute ago")?;
    let resolve = pagerduty_event(&pagerduty, "resolve").await;
    assert_eq!(resolve["dedup_key"], dedup.as_str(), "{resolve}");
    assert_eq!(resolve["routing_key"], key, "{resolve}");
    eventually(WAIT, "the resolution in Slack", async || {
        ensure!(
            slack
                .received()
                .iter()
                .any(|r| r.body["blocks"][0]["text"]["text"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("[RESOLVED] db1 backup.daily"))),
            "{:?}",
            slack.received()
        );
        Ok(())
    })
    .await;
    Ok(())
}

/// PagerDuty down when the alert opens, then acknowledged in Backwatch while its `trigger`
/// waits for a retry: the `acknowledge` is queued all the same and reaches PagerDuty after
/// the `trigger`, never before it (PagerDuty drops an `acknowledge` for an incident it does not
/// have, and the late trigger would then page with nobody acknowledging it).
#[tokio::test]
async fn an_acknowledgement_waits_for_a_trigger_that_is_being_retried() -> Result<()> {
    let pagerduty = Webhook::start().await?;
    pagerduty.respond_with(500);
    let key = "R0123456789ABCDEF0123456789ABCDE";
    let routes = format!(
        "[[routes]]\nname = \"pager\"\nchannel = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{key}\"\n",
        pagerduty.url()
    );
    let (_certs, collector, _daily, _agent) = stale_backup_alerting(&routes).await?;

    let trigger = pagerduty_event(&pagerduty, "trigger").await;
    let dedup = trigger["dedup_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    acknowledge(&collector, &dedup).await?;
    let actions = || -> Vec<String> {
        pagerduty
            .received()
            .into_iter()
            .map(|r| r.body["event_action"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    // While PagerDuty keeps failing, the trigger is retried and the acknowledgement waits.
    consistently(
        Duration::from_secs(3),
        "the acknowledgement waits",
        async || {
            let seen = actions();
            ensure!(!seen.iter().any(|a| a == "acknowledge"), "{seen:?}");
            Ok(())
        },
    )
    .await;
    ensure!(
        actions().iter().filter(|a| *a == "trigger").count() >= 2,
        "the trigger was retried: {:?}",
        actions()
    );
    pagerduty.respond_with(202);
    let ack = pagerduty_event(&pagerduty, "acknowledge").await;
    assert_eq!(ack["dedup_key"], dedup.as_str(), "{ack}");
    let seen = actions();
    let last_trigger = seen.iter().rposition(|a| a == "trigger");
    let first_ack = seen.iter().position(|a| a == "acknowledge");
    assert!(last_trigger < first_ack, "out of order: {seen:?}");
    Ok(())
}
