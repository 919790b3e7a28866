//! `GET /metrics` as Prometheus scrapes it: per-check status and measured values from a real
//! agent, the collector's own health, access by bearer token, and `promtool check metrics`.

use anyhow::{Context, Result, bail};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Agent, Certs, Collector, eventually, scene};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The value of the sample whose name and labels are exactly `series` (`name{a="b",...}`).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn value(page: &str, series: &str) -> f64 {
    sample(page, series).unwrap_or_else(|| panic!("no sample {series} in:\n{page}"))
}

/// `promtool check metrics` on the page: Prometheus's own parser and linter. In CI a missing
/// promtool fails the test (scripts/test installs it); locally it is skipped with a message.
fn promtool(page: &str) -> Result<()> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED promtool check: promtool is not installed (apt-get install prometheus; \
                 ./scripts/test installs it, and CI fails without it)"
            );
            return Ok(());
        }
        Err(e) => return Err(e).context("running promtool (Debian package prometheus)"),
    };
    std::io::Write::write_all(
        child.stdin.as_mut().context("promtool stdin")?,
        page.as_bytes(),
    )?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.trim().is_empty() {
        bail!(
            "promtool check metrics complained ({}):\n{text}\npage:\n{page}",
            out.status
        );
    }
    Ok(())
}

#[tokio::test]
async fn metrics_show_each_check_and_the_collector_and_pass_promtool() -> Result<()> {
    let data = tempfile::tempdir()?;
    let daily = data.path().join("daily");
    std::fs::create_dir(&daily)?;
    std::fs::write(daily.join("base.tar"), vec![7u8; 4096])?;
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(daily.join("base.tar"))
        .status()?;
    assert!(touched.success());
    let s = scene("db1", |a| {
        a.backup_dir("daily", &daily, "24h", "1h")
            .disk("backup", data.path(), "1h")
    })
    .await?;
    s.collector
        .wait_status("db1", "backup.daily", "ok", Duration::from_secs(30))
        .await;
    s.collector
        .wait_status("db1", "disk.backup", "ok", Duration::from_secs(30))
        .await;

    let http = http_client();
    let resp = http.get(s.collector.url("/metrics")).send().await?;
    assert_eq!(resp.status(), 200);
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let page = resp.text().await?;

    let status = |check: &str, st: &str| {
        value(
            &page,
            &format!("backwatch_check_status{{host=\"db1\",check=\"{check}\",status=\"{st}\"}}"),
        )
    };
    assert_eq!(status("backup.daily", "ok"), 1.0);
    assert_eq!(status("backup.daily", "critical"), 0.0);
    assert_eq!(status("backup.daily", "unknown"), 0.0);
    assert_eq!(status("disk.backup", "ok"), 1.0);

    let age = value(
        &page,
        "backwatch_backup_newest_age_seconds{host=\"db1\",check=\"backup.daily\"}",
    );
    assert!((7200.0..7320.0).contains(&age), "age {age}");
    assert_eq!(
        value(
            &page,
            "backwatch_backup_newest_size_bytes{host=\"db1\",check=\"backup.daily\"}"
        ),
        4096.0
    );

    // The ratio df would print for the same filesystem (within what a busy /tmp moves).
    let st = nix::sys::statvfs::statvfs(data.path())?;
    let frsize = st.fragment_size() as f64;
    let used = (st.blocks() - st.blocks_free()) as f64 * frsize;
    let expected = used / (used + st.blocks_available() as f64 * frsize);
    let ratio = value(
        &page,
        "backwatch_disk_used_ratio{host=\"db1\",check=\"disk.backup\"}",
    );
    assert!(
        (0.0..=1.0).contains(&ratio) && (ratio - expected).abs() < 0.02,
        "ratio {ratio}, statvfs says {expected}"
    );
    // No WAL probe: no WAL series at all rather than a made-up 0.
    assert!(
        !page.contains("backwatch_wal_archive_delay_seconds{"),
        "{page}"
    );

    let contact = value(
        &page,
        "backwatch_agent_last_contact_timestamp_seconds{host=\"db1\"}",
    );
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - contact).abs() < 120.0,
        "contact {contact}, now {now}"
    );
    assert_eq!(value(&page, "backwatch_host_silent{host=\"db1\"}"), 0.0);
    assert!(value(&page, "backwatch_results_ingested_total") >= 2.0);
    assert_eq!(
        value(
            &page,
            "backwatch_store_query_duration_seconds_count{query=\"metrics\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &page,
            "backwatch_store_query_duration_seconds_bucket{query=\"metrics\",le=\"+Inf\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&page, "backwatch_outbox_notifications{state=\"pending\"}"),
        0.0
    );
    assert_eq!(
        value(&page, "backwatch_outbox_notifications{state=\"failed\"}"),
        0.0
    );
    for family in [
        "backwatch_check_status gauge",
        "backwatch_results_ingested_total counter",
        "backwatch_store_query_duration_seconds histogram",
    ] {
        assert!(page.contains(&format!("# TYPE {family}\n")), "{family}");
    }
    promtool(&page)?;

    // A second scrape is timed too.
    let page = http
        .get(s.collector.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(
        value(
            &page,
            "backwatch_store_query_duration_seconds_count{query=\"metrics\"}"
        ),
        2.0
    );

    // A stale backup turns critical, and the state set follows.
    let touched = Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(daily.join("base.tar"))
        .status()?;
    assert!(touched.success());
    drop(s.agent);
    let _agent = Agent::for_host("db1", &s.certs, &s.collector)
        .backup_dir("daily", &daily, "24h", "1h")
        .start()?;
    s.collector
        .wait_status("db1", "backup.daily", "critical", Duration::from_secs(30))
        .await;
    let page = http
        .get(s.collector.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let series = |st: &str| {
        format!("backwatch_check_status{{host=\"db1\",check=\"backup.daily\",status=\"{st}\"}}")
    };
    assert_eq!(value(&page, &series("critical")), 1.0);
    assert_eq!(value(&page, &series("ok")), 0.0);
    Ok(())
}

#[tokio::test]
async fn metrics_need_a_read_token_when_authentication_is_configured() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let dir = tempfile::tempdir()?;
    let token = "prometheus-scrape-token-0123456789abcdef";
    let file = dir.path().join("prom");
    std::fs::write(&file, token)?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!(
            "[[http.tokens]]\nname = \"prometheus\"\ntoken_file = \"{}\"\nrole = \"read\"\n",
            file.display()
        ))
        .start()
        .await?;
    let http = http_client();
    let url = collector.url("/metrics");

    let anon = http.get(&url).send().await?;
    assert_eq!(anon.status(), 401);
    assert!(!anon.text().await?.contains("backwatch_"));
    let wrong = http.get(&url).bearer_auth("not-the-token").send().await?;
    assert_eq!(wrong.status(), 401);

    let data = tempfile::tempdir()?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .disk("backup", data.path(), "1h")
        .start()?;
    let page = eventually(
        Duration::from_secs(30),
        "disk.backup in /metrics",
        async || {
            let r = http.get(&url).bearer_auth(token).send().await?;
            if r.status() != 200 {
                bail!("status {}", r.status());
            }
            let page = r.text().await?;
            if !page.contains("backwatch_disk_used_ratio{host=\"db1\",check=\"disk.backup\"}") {
                bail!("no disk sample yet");
            }
            Ok(page)
        },
    )
    .await;
    assert_eq!(
        value(
            &page,
            "backwatch_check_status{host=\"db1\",check=\"disk.backup\",status=\"ok\"}"
        ),
        1.0
    );
    promtool(&page)?;
    Ok(())
}

/// A real cluster whose archive_command fails: the WAL series carry what pg_stat_archiver
/// and pg_wal/archive_status say.
#[tokio::test]
async fn wal_archiving_failures_show_as_counters_and_delay() -> Result<()> {
    let pg = backwatch_tests::harness::PgCluster::init()
        .archive_command("false")
        .start()?;
    let s = scene("db1", |a| a.wal("main", &pg.dsn(), "1s")).await?;
    let segment = pg.switch_wal()?;
    s.collector
        .wait_status("db1", "wal.main", "critical", Duration::from_secs(60))
        .await;
    let http = http_client();
    let page = eventually(
        Duration::from_secs(30),
        "failed archives in /metrics",
        async || {
            let page = http
                .get(s.collector.url("/metrics"))
                .send()
                .await?
                .text()
                .await?;
            let failed = sample(
                &page,
                "backwatch_wal_failed_archives_total{host=\"db1\",check=\"wal.main\"}",
            );
            match failed {
                Some(n) if n >= 1.0 => Ok(page),
                other => bail!("failed archives {other:?}"),
            }
        },
    )
    .await;
    let stats = pg.archiver_stats()?;
    let series = |name: &str| format!("{name}{{host=\"db1\",check=\"wal.main\"}}");
    assert!(
        value(&page, &series("backwatch_wal_failed_archives_total")) <= stats.failed_count as f64
    );
    assert_eq!(value(&page, &series("backwatch_wal_archived_total")), 0.0);
    assert!(
        value(&page, &series("backwatch_wal_pending_segments")) >= 1.0,
        "{segment}"
    );
    let delay = value(&page, &series("backwatch_wal_archive_delay_seconds"));
    assert!((0.0..600.0).contains(&delay), "delay {delay}");
    assert_eq!(
        value(
            &page,
            "backwatch_check_status{host=\"db1\",check=\"wal.main\",status=\"critical\"}"
        ),
        1.0
    );
    promtool(&page)?;
    Ok(())
}

fn deploy(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// `promtool` with `args`, its output; a missing promtool fails in CI, is skipped locally.
fn promtool_run(args: &[&str]) -> Result<Option<String>> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.status.success() {
                bail!("promtool {args:?} failed ({}):\n{text}", out.status);
            }
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: promtool is not installed (./scripts/test installs it)");
            Ok(None)
        }
        Err(e) => Err(e).context("running promtool (Debian package prometheus)"),
    }
}

/// The shipped alerting rules load, and fire (or not) as their unit tests say.
#[test]
fn shipped_prometheus_rules_pass_promtool() -> Result<()> {
    let rules = deploy("prometheus/backwatch.rules.yml");
    let tests = deploy("prometheus/backwatch.rules.test.yml");
    if let Some(out) = promtool_run(&["check", "rules", &rules.display().to_string()])? {
        assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    }
    if let Some(out) = promtool_run(&["test", "rules", &tests.display().to_string()])? {
        assert!(out.contains("SUCCESS"), "{out}");
    }
    Ok(())
}

/// Every metric the Grafana dashboard and the alerting rules query is one a live collector
/// exports (its `# TYPE` lines are there even before the first sample).
#[tokio::test]
async fn the_dashboard_and_rules_name_only_metrics_the_collector_exports() -> Result<()> {
    let data = tempfile::tempdir()?;
    let s = scene("db1", |a| a.disk("backup", data.path(), "1h")).await?;
    s.collector
        .wait_status("db1", "disk.backup", "ok", Duration::from_secs(30))
        .await;
    let page = http_client()
        .get(s.collector.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let exported: std::collections::BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/backwatch.json"))?)?;
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .context("panels")?
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect();
    if let Some(q) = dashboard["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "host"))
        .and_then(|v| v["definition"].as_str())
    {
        queries.push(q.to_string());
    }
    let rules = std::fs::read_to_string(deploy("prometheus/backwatch.rules.yml"))?;
    queries.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: ").map(String::from)),
    );
    assert!(queries.len() > 20, "{queries:#?}");
    let mut named = 0;
    for q in &queries {
        for name in q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("backwatch_"))
        {
            named += 1;
            assert!(
                exported.contains(name),
                "{name} (in {q:?}) is not exported; /metrics has {exported:?}"
            );
        }
    }
    assert!(named > 20, "{named} metric names checked");
    Ok(())
}
