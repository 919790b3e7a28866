//! The dashboard in a real headless Chromium, against the real collector and agents: live
//! updates without a reload, seven days of history drawn, an acknowledgement made on the page
//! and stored, untrusted text shown as text, a thousand hosts from one request, and access
//! by token. Each page leaves a screenshot under `target/test-output/screenshots/`.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Agent, Browser, Certs, Collector, eventually, scene, seed};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(40);

fn backup_file(path: &Path, age: &str) -> Result<()> {
    std::fs::write(path, b"pg_basebackup output")?;
    let ok = Command::new("touch").args(["-d", age]).arg(path).status()?;
    ensure!(ok.success(), "touch -d {age:?} {}", path.display());
    Ok(())
}

/// JS: the status a fleet cell shows (`data-status` of its badge), or null.
fn cell(host: &str, check: &str) -> String {
    format!(
        "const b = document.querySelector('tr[data-host=\"{host}\"] td[data-check=\"{check}\"] .badge');\
         return b ? b.dataset.status + ' ' + b.textContent : null;"
    )
}

async fn no_script_errors(browser: &Browser) -> Result<()> {
    let errors = browser.script_errors().await?;
    ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");
    Ok(())
}

#[tokio::test]
async fn fleet_page_shows_a_host_turning_critical_without_a_reload() -> Result<()> {
    let root = tempfile::tempdir()?;
    let daily = root.path().join("daily");
    std::fs::create_dir_all(&daily)?;
    let file = daily.join("base-1.tar.gz");
    backup_file(&file, "1 hour ago")?;
    let scene = scene("db1", |a| a.backup_dir("daily", &daily, "24h", "1s")).await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "backup.daily", "ok", WAIT)
        .await;

    let browser = Browser::start().await?;
    browser.goto(&collector.url("/")).await?;
    let first = browser
        .wait_js(
            WAIT,
            "db1 backup.daily ok on the page",
            &format!(
                "if (document.getElementById('live').dataset.state !== 'live') return null; {}",
                cell("db1", "backup.daily")
            ),
        )
        .await;
    assert_eq!(first, "ok ✓ ok");
    browser
        .js("window.sameDocument = 'yes'; return true;", json!([]))
        .await?;
    browser.screenshot("fleet-before").await?;

    backup_file(&file, "25 hours ago")?;
    let js = format!(
        "const c = (() => {{ {} }})(); return c && c.startsWith('critical') ? c : null;",
        cell("db1", "backup.daily")
    );
    let seen = browser
        .wait_js(WAIT, "db1 backup.daily critical on the page", &js)
        .await;
    assert_eq!(seen, "critical ✖ critical");
    let same = browser
        .js("return window.sameDocument || 'reloaded';", json!([]))
        .await?;
    assert_eq!(same, "yes", "the page was reloaded instead of updated");
    let host_status = browser
        .js(
            "return document.querySelector('tr[data-host=\"db1\"] td .badge').textContent;",
            json!([]),
        )
        .await?;
    assert_eq!(
        host_status, "✖ critical",
        "the host row shows the word, not only a colour"
    );
    browser.screenshot("fleet").await?;
    no_script_errors(&browser).await
}

#[tokio::test]
async fn host_page_draws_seven_days_of_history_and_trends_project_the_full_date() -> Result<()> {
    let certs = Certs::fleet(&[])?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("week.db").display());
    seed::week_of_history(&url, "db7").await?;
    let collector = Collector::store(&certs, &url).start().await?;

    let browser = Browser::start().await?;
    browser.goto(&collector.url("/hosts/db7")).await?;
    let chart = "svg.chart[data-check=\"disk.backup\"]";
    let got = browser
        .wait_js(WAIT, "the disk chart", &format!(
            "const c = document.querySelector('{chart}');\
             return c && Number(c.dataset.count) > 0 ? {{count: Number(c.dataset.count),\
               first: Number(c.dataset.first), last: Number(c.dataset.last),\
               segments: c.querySelector('path.series').getAttribute('d').split('L').length,\
               lines: [...c.querySelectorAll('text.tick.s-warning, text.tick.s-critical')].map(t => t.textContent)}} : null;"
        ))
        .await;
    let days =
        (got["last"].as_f64().unwrap_or(0.0) - got["first"].as_f64().unwrap_or(0.0)) / 86_400_000.0;
    assert!(days > 6.9, "the chart spans {days:.2} days: {got}");
    assert!(
        got["count"].as_u64().unwrap_or(0) > 150,
        "hourly points expected: {got}"
    );
    assert!(
        got["segments"].as_u64().unwrap_or(0) > 150,
        "the line joins the points: {got}"
    );
    assert_eq!(got["lines"], json!(["warning 75 %", "critical 85 %"]));
    for check in ["backup.daily", "wal.main"] {
        let js = format!(
            "const c = document.querySelector('svg.chart[data-check=\"{check}\"]');\
             return c ? (Number(c.dataset.last) - Number(c.dataset.first)) / 86400000 : null;"
        );
        let span = browser.js(&js, json!([])).await?;
        assert!(
            span.as_f64().unwrap_or(0.0) > 6.5,
            "{check} spans {span} days"
        );
    }
    let failures = browser
        .js("return document.querySelectorAll('svg.chart[data-check=\"wal.main\"] rect.failure').length;", json!([]))
        .await?;
    assert!(
        failures.as_u64().unwrap_or(0) >= 3,
        "failed archive attempts drawn: {failures}"
    );
    // Measurement and threshold from the check's details.
    let row = browser
        .js(
            "return document.querySelector('tr[data-check=\"disk.backup\"]').textContent;",
            json!([]),
        )
        .await?;
    let row = row.as_str().unwrap_or_default();
    assert!(
        row.contains("80 % used") && row.contains("warning > 75 %, critical > 85 %"),
        "{row}"
    );
    // What to do, under every check that is not ok (the alert's response procedure).
    assert!(
        row.contains("What to do: Review backup retention; clean old backups if that is safe"),
        "{row}"
    );
    let rows = browser
        .js(
            "return [...document.querySelectorAll('table.checks tbody tr')].map(r =>\
               [r.dataset.check, r.querySelector('.badge').className, !!r.querySelector('.procedure')]);",
            json!([]),
        )
        .await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert!(rows.len() >= 3, "{rows:?}");
    for r in &rows {
        let ok = r[1].as_str().is_some_and(|c| c.contains("s-ok"));
        assert_eq!(
            r[2].as_bool(),
            Some(!ok),
            "a procedure only where not ok: {r}"
        );
    }
    browser.screenshot("host").await?;
    no_script_errors(&browser).await?;

    browser.goto(&collector.url("/trends")).await?;
    let projection = browser
        .wait_js(
            WAIT,
            "the projected full date of db7",
            "const r = document.querySelector('table.trends tr[data-host=\"db7\"]');\
             return r ? r.children[4].textContent : null;",
        )
        .await;
    let text = projection.as_str().unwrap_or_default();
    // 600 -> 800 GiB in a week of 1000: about 28.6 GiB a day, 200 GiB left: about 7 days.
    assert!(text.contains("(full in 7 days)"), "{text}");
    browser.screenshot("trends").await?;
    no_script_errors(&browser).await
}

#[tokio::test]
async fn markup_in_a_backup_path_is_shown_as_text() -> Result<()> {
    const MARKUP: &str = "<img src=x onerror=alert(1)>";
    let root = tempfile::tempdir()?;
    let dir = root.path().join(MARKUP);
    let scene = scene("db1", |a| a.backup_dir("daily", &dir, "24h", "1s")).await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "backup.daily", "critical", WAIT)
        .await;

    let browser = Browser::start().await?;
    // Counts every dialog the page tries to open, before any of its scripts run.
    browser
        .cdp("Page.addScriptToEvaluateOnNewDocument", json!({"source":
            "window.dialogs = 0; for (const k of ['alert', 'confirm', 'prompt']) { \
               const real = window[k]; window[k] = function (...a) { window.dialogs++; return real.apply(this, a); }; }"}))
        .await?;
    for (page, name, probe) in [
        ("/", "fleet-markup", "td[data-check=\"backup.daily\"]"),
        (
            "/hosts/db1",
            "host-markup",
            "tr[data-check=\"backup.daily\"] .summary-cell",
        ),
        ("/alerts", "alerts-markup", "table.alerts.open"),
    ] {
        browser.goto(&collector.url(page)).await?;
        let js = format!(
            "const e = document.querySelector('{probe}'); if (!e) return null;\
             return {{text: e.textContent, title: e.getAttribute('title') || '',\
                     images: document.images.length, dialogs: window.dialogs}};"
        );
        let got = browser
            .wait_js(WAIT, &format!("{page} with the path"), &js)
            .await;
        let shown = format!("{}{}", got["text"], got["title"]);
        assert!(
            shown.contains(MARKUP),
            "{page} does not show the path as text: {got}"
        );
        assert_eq!(got["images"], 0, "{page} created an <img>: {got}");
        assert_eq!(got["dialogs"], 0, "{page} opened a dialog: {got}");
        assert_eq!(
            browser.dialog_text().await?,
            None,
            "{page} has a dialog open"
        );
        browser.screenshot(name).await?;
        no_script_errors(&browser).await?;
    }
    Ok(())
}

#[tokio::test]
async fn fleet_page_lists_a_thousand_hosts_from_one_request() -> Result<()> {
    let certs = Certs::fleet(&[])?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("fleet.db").display());
    seed::fleet(&url, 1000, 3).await?;
    let collector = Collector::store(&certs, &url).start().await?;

    let browser = Browser::start().await?;
    let started = Instant::now();
    browser.goto(&collector.url("/")).await?;
    let rows = browser
        .wait_js(
            WAIT,
            "1000 rows",
            "const t = document.querySelector('table.fleet');\
             return t && t.dataset.rows === '1000' ? performance.now() : null;",
        )
        .await;
    let took = started.elapsed();
    println!(
        "1000 hosts rendered {:.0} ms after navigation started (wall {took:?})",
        rows.as_f64().unwrap_or(0.0)
    );
    assert!(
        took < Duration::from_secs(10),
        "rendering 1000 hosts took {took:?}"
    );
    // The whole fleet in one request (more follow as the alert engine works through the
    // seeded changes: live updates), never one per host.
    let requests = browser
        .js(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)\
               .filter(p => p.startsWith('/api/v1/hosts'));",
            json!([]),
        )
        .await?;
    let requests = requests.as_array().cloned().unwrap_or_default();
    assert!(
        !requests.is_empty() && requests.iter().all(|p| p == "/api/v1/hosts"),
        "the fleet page asked for {requests:?}"
    );

    // Worst first: a critical host leads, silent agents are marked as such.
    let top = browser
        .js("const r = document.querySelector('table.fleet tbody tr'); return r.querySelector('td .badge').dataset.status;", json!([]))
        .await?;
    assert_eq!(top, "critical");
    let silent = browser
        .js("return [...document.querySelectorAll('tr.silent td.contact')].map(td => td.textContent.split(' ')[0]);", json!([]))
        .await?;
    assert_eq!(silent, json!(["SILENT", "SILENT", "SILENT"]));
    browser.screenshot("fleet-1000").await?;

    browser.type_into("input[type=search]", "node-004").await?;
    let shown = browser
        .wait_js(WAIT, "name filter applied", "const t = document.querySelector('table.fleet');\
             return t && t.dataset.rows === '10' ? [...t.querySelectorAll('tbody tr')].map(r => r.dataset.host) : null;")
        .await;
    assert_eq!(
        shown[0], "node-0040",
        "node-0040 has a critical disk and sorts first: {shown}"
    );
    browser
        .js(
            "const s = document.querySelector('select[aria-label=\"Filter by status\"]'); s.value = 'critical';\
             s.dispatchEvent(new Event('change')); return true;",
            json!([]),
        )
        .await?;
    let critical = browser
        .wait_js(
            WAIT,
            "status filter applied",
            "const t = document.querySelector('table.fleet');\
             return t && t.dataset.rows !== '10' ? Number(t.dataset.rows) : null;",
        )
        .await;
    assert_eq!(
        critical, 1,
        "node-0040 is the only critical host among node-004x"
    );
    let url_now = browser.js("return location.search;", json!([])).await?;
    assert_eq!(
        url_now, "?name=node-004&status=critical",
        "filters are kept in the URL"
    );
    no_script_errors(&browser).await
}

/// A token file the collector accepts (mode 600, 64 hex characters).
async fn status_of(req: reqwest::RequestBuilder) -> Result<u16> {
    Ok(req.send().await?.status().as_u16())
}

#[tokio::test]
async fn acknowledging_an_alert_on_the_page_is_stored_and_needs_an_ack_token() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let (screen_file, screen) = backwatch_tests::harness::fleet::token_file(keys.path(), "screen")?;
    let (oncall_file, oncall) = backwatch_tests::harness::fleet::token_file(keys.path(), "oncall")?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(&format!(
            "[[http.tokens]]\nname = \"screen\"\ntoken_file = \"{screen_file}\"\nrole = \"read\"\n\
             [[http.tokens]]\nname = \"oncall\"\ntoken_file = \"{oncall_file}\"\nrole = \"ack\"\n"
        ))
        .start()
        .await?;
    let root = tempfile::tempdir()?;
    let daily = root.path().join("daily");
    std::fs::create_dir_all(&daily)?;
    backup_file(&daily.join("base.tar.gz"), "30 hours ago")?;
    let _agent = Agent::for_host("db1", &certs, &collector)
        .backup_dir("daily", &daily, "24h", "1s")
        .start()?;

    let http = http_client();
    let get = |token: &str| http.get(collector.url("/api/v1/alerts")).bearer_auth(token);
    let alert: Value = eventually(WAIT, "an open alert for db1", async || {
        let alerts: Value = get(&oncall).send().await?.json().await?;
        alerts
            .as_array()
            .and_then(|a| a.iter().find(|a| a["host"] == "db1").cloned())
            .with_context(|| format!("no alert yet: {alerts}"))
    })
    .await;
    let id = alert["id"].as_i64().context("alert id")?;
    let ack_url = collector.url(&format!("/api/v1/alerts/{id}/ack"));
    let body = json!({"by": "mallory", "comment": "x"});
    assert_eq!(
        status_of(http.get(collector.url("/api/v1/hosts"))).await?,
        401
    );
    assert_eq!(status_of(get("not-a-token")).await?, 401);
    assert_eq!(status_of(get(&screen)).await?, 200);
    assert_eq!(
        status_of(http.post(&ack_url).bearer_auth(&screen).json(&body)).await?,
        403
    );
    assert_eq!(status_of(http.get(collector.url("/healthz"))).await?, 200);
    assert_eq!(status_of(http.get(collector.url("/"))).await?, 200);

    let browser = Browser::start().await?;
    // The read-only token: the page shows the alert but offers no button.
    browser.goto(&collector.url("/alerts")).await?;
    browser
        .wait_js(
            WAIT,
            "the login form",
            "return document.getElementById('token') ? true : null;",
        )
        .await;
    browser.screenshot("login").await?;
    browser.type_into("#token", &screen).await?;
    browser.click("form.login button").await?;
    let row = format!("tr[data-alert=\"{id}\"]");
    let buttons = browser
        .wait_js(
            WAIT,
            "the alert listed",
            &format!(
                "const r = document.querySelector('table.alerts.open {row}');\
             return r ? r.querySelectorAll('form.mark-form').length : null;"
            ),
        )
        .await;
    assert_eq!(buttons, 0, "a read-only token gets no acknowledge button");

    // Sign out, sign in as on-call, acknowledge with a comment.
    browser.click("#logout").await?;
    browser
        .wait_js(
            WAIT,
            "the login form again",
            "return document.getElementById('token') ? true : null;",
        )
        .await;
    browser.type_into("#token", &oncall).await?;
    browser.click("form.login button").await?;
    browser
        .wait_js(
            WAIT,
            "the acknowledge form",
            &format!(
                "return document.querySelector('{row} form[data-action=\"ack\"]') ? true : null;"
            ),
        )
        .await;
    let live = browser
        .wait_js(
            WAIT,
            "live updates with the token",
            "const s = document.getElementById('live').dataset.state; return s === 'live' ? s : null;",
        )
        .await;
    assert_eq!(live, "live", "the event stream accepts the token");
    browser.type_into("#by", "alice").await?;
    browser
        .type_into(
            &format!("{row} form[data-action=\"ack\"] input"),
            "restarting the backup job",
        )
        .await?;
    browser.screenshot("alerts-before-ack").await?;
    browser
        .click(&format!("{row} form[data-action=\"ack\"] button"))
        .await?;

    let stored = eventually(WAIT, "the acknowledgement stored", async || {
        let a: Value = http
            .get(collector.url(&format!("/api/v1/alerts/{id}")))
            .bearer_auth(&screen)
            .send()
            .await?
            .json()
            .await?;
        a["acknowledged"]
            .is_object()
            .then_some(a)
            .with_context(|| "not acknowledged yet")
    })
    .await;
    // Recorded as the token's holder, whatever name the page was given.
    assert_eq!(stored["acknowledged"]["by"], "oncall");
    assert_eq!(
        stored["acknowledged"]["comment"],
        "restarting the backup job"
    );
    let shown = browser
        .wait_js(
            WAIT,
            "the page showing the acknowledgement",
            &format!(
                "const m = document.querySelector('{row} .mark'); return m ? m.textContent : null;"
            ),
        )
        .await;
    assert_eq!(shown, "acknowledged by oncall: restarting the backup job");
    browser.screenshot("alerts").await?;
    no_script_errors(&browser).await?;
    assert!(
        !collector.log().contains(&oncall) && !collector.log().contains(&screen),
        "a token reached the log"
    );
    Ok(())
}

/// The harness's own check: a page that never satisfies a wait fails the test, naming what
/// it waited for and what the page answered last.
#[test]
fn a_wait_the_page_never_satisfies_fails_with_the_last_answer() {
    // A thread of its own: the panic is the result under test.
    let waiting = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let browser = Browser::start().await.expect("browser");
            browser.goto("about:blank").await.expect("blank page");
            browser
                .wait_js(
                    Duration::from_secs(2),
                    "a condition never met",
                    "return false;",
                )
                .await;
        });
    });
    let panic = waiting.join().expect_err("the wait must fail");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("waiting for a condition never met") && msg.contains("page answered false"),
        "{msg}"
    );
}

/// The host page's Recovery section (docs/checks.md R31, R32): per cluster, the recoverable
/// window from `/api/v1/recovery` drawn on a time line, and the data at risk once the server
/// commits work no archive holds (a figure that grows without a status change: the page shows
/// it at its next refresh, here a reload).
#[tokio::test]
async fn host_page_shows_each_clusters_window_and_data_at_risk() -> Result<()> {
    use backwatch_tests::harness::PgCluster;
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    pg.switch_wal_archived(WAIT).await?;
    pg.psql("SELECT pg_backup_start('nightly', true); SELECT pg_backup_stop();")?;
    pg.switch_wal_archived(WAIT).await?;
    pg.switch_wal_archived(WAIT).await?;
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .toml(
            "[thresholds.wal]\nmax_data_at_risk = \"1h\"\n\
             [silence]\nhost_after = \"4s\"\nsweep_every = \"500ms\"\n",
        )
        .start()
        .await?;
    let mut agent = Agent::for_host("db1", &certs, &collector)
        .wal("main", &pg.dsn(), "1s")
        .archive_dir(
            "main",
            pg.archive_dir(),
            &[
                ("interval", "1s"),
                ("wal", "main"),
                ("expected_owner", ""),
                ("expected_group", ""),
                ("expected_mode", ""),
            ],
        )
        .start()?;
    collector
        .wait_check("db1", "archive.main", "to have a window", WAIT, |c| {
            c["details"]["window"].is_object()
        })
        .await;

    // The API: one cluster, the archive joined to its server.
    let clusters = collector.api("/api/v1/recovery?host=db1").await?;
    let main = &clusters[0];
    assert_eq!(clusters.as_array().map(Vec::len), Some(1), "{clusters}");
    assert_eq!(main["cluster"], "main", "{clusters}");
    assert_eq!(main["wal_check"], "wal.main", "{clusters}");
    assert_eq!(main["archive_check"], "archive.main", "{clusters}");
    assert_eq!(main["data_at_risk_secs"], 0, "{clusters}");
    let start = main["window"]["start"].as_str().context("window start")?;
    let start_ms = chrono::DateTime::parse_from_rfc3339(start)?.timestamp_millis();

    let browser = Browser::start().await?;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let figure = "figure.recovery[data-cluster=\"main\"]";
    let shown = browser
        .wait_js(
            WAIT,
            "the recovery time line",
            &format!(
                "const f = document.querySelector('{figure}'); if (!f) return null;\
             const svg = f.querySelector('svg.timeline');\
             return {{start: Number(svg.dataset.windowStart), cut: svg.dataset.cut,\
               window: f.querySelector('.window-text').textContent,\
               risk: f.querySelector('.risk-text').textContent,\
               bars: svg.querySelectorAll('rect.bar').length}};"
            ),
        )
        .await;
    assert_eq!(shown["start"], start_ms, "{shown}");
    assert_eq!(shown["cut"], "false", "{shown}");
    assert!(
        shown["window"]
            .as_str()
            .unwrap_or("")
            .starts_with("restorable from "),
        "{shown}"
    );
    assert_eq!(shown["risk"], "nothing at risk", "{shown}");
    assert_eq!(shown["bars"], 1, "{shown}");

    // Work committed into the unswitched segment is at risk.
    pg.psql("CREATE TABLE orders AS SELECT 1 AS id")?;
    collector
        .wait_check("db1", "wal.main", "to have data at risk", WAIT, |c| {
            c["details"]["data_at_risk_secs"].as_i64() > Some(0)
        })
        .await;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let risk = browser
        .wait_js(
            WAIT,
            "data at risk on the page",
            &format!(
                "const f = document.querySelector('{figure}');\
             const t = f && f.querySelector('.risk-text').textContent;\
             return t && t.startsWith('data at risk ') ? {{text: t,\
               bars: f.querySelectorAll('svg.timeline rect.bar.s-critical').length}} : null;"
            ),
        )
        .await;
    assert!(
        risk["text"]
            .as_str()
            .unwrap_or("")
            .ends_with("(limit 60 min)"),
        "{risk}"
    );
    assert_eq!(risk["bars"], 1, "{risk}");
    no_script_errors(&browser).await?;
    browser.screenshot("host-recovery").await?;

    // The agent goes silent: its last figure is not "now", and not drawn as if it were.
    agent.terminate(Duration::from_secs(5))?;
    eventually(WAIT, "the host to be silent", async || {
        let host = collector.api("/api/v1/hosts/db1").await?;
        ensure!(host["silent"] == true, "{host}");
        Ok(())
    })
    .await;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let stale = browser
        .wait_js(
            WAIT,
            "the silent host's data at risk",
            &format!(
                "const f = document.querySelector('{figure}');\
             const t = f && f.querySelector('.risk-text').textContent;\
             return t && t.startsWith('data at risk: not known now') ? {{text: t,\
               bars: f.querySelectorAll('svg.timeline rect.bar.s-critical').length}} : null;"
            ),
        )
        .await;
    assert!(
        stale["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("data at risk: not known now, the agent is silent ("),
        "{stale}"
    );
    assert_eq!(stale["bars"], 0, "{stale}");
    Ok(())
}

/// Clicks "Run now" in the host page's `row` and waits until `script` returns a value.
async fn run_now_until(
    browser: &Browser,
    row: &str,
    what: &str,
    script: &str,
) -> Result<serde_json::Value> {
    browser.click(&format!("{row} button[data-run]")).await?;
    Ok(browser.wait_js(WAIT, what, script).await)
}

/// Re-check after a fix: the host page's "Run now" makes the agent run an hourly check at
/// once, and the page shows the new result (here a new status) without a reload.
#[tokio::test]
async fn run_now_on_the_host_page_shows_the_new_result_without_a_reload() -> Result<()> {
    let root = tempfile::tempdir()?;
    let file = root.path().join("base-1.tar.gz");
    backup_file(&file, "1 hour ago")?;
    let scene = scene("db1", |a| a.backup_dir("daily", root.path(), "24h", "1h")).await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "backup.daily", "ok", WAIT)
        .await;

    let browser = Browser::start().await?;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let row = "tr[data-check=\"backup.daily\"]";
    let ok = browser
        .wait_js(
            WAIT,
            "backup.daily ok on the host page",
            &format!("const b = document.querySelector('{row} .badge'); return b ? b.dataset.status : null;"),
        )
        .await;
    assert_eq!(ok, "ok");
    browser
        .js("window.sameDocument = 'yes'; return true;", json!([]))
        .await?;

    // A re-check that changes no status (so no live event redraws the page): the new
    // measurement shows all the same.
    backup_file(&file, "5 hours ago")?;
    run_now_until(
        &browser,
        row,
        "the 5 h old backup on the host page",
        &format!(
            "const r = document.querySelector('{row}');\
             return r && r.textContent.includes('5 h') ? r.textContent : null;"
        ),
    )
    .await?;

    // The backup turns out to be stale; the next scheduled run is an hour away. The agent
    // takes one forced run of a probe per 10 s (`schedule::MIN_FORCED_GAP`).
    backup_file(&file, "3 days ago")?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let seen = run_now_until(
        &browser,
        row,
        "backup.daily critical on the host page",
        &format!(
            "const b = document.querySelector('{row} .badge');\
             return b && b.dataset.status === 'critical' ? document.querySelector('{row}').textContent : null;"
        ),
    )
    .await?;
    assert!(
        seen.as_str().is_some_and(|t| t.contains("3 d")),
        "the row shows the new measurement: {seen}"
    );
    let same = browser
        .js("return window.sameDocument || 'reloaded';", json!([]))
        .await?;
    assert_eq!(same, "yes", "the page was reloaded instead of updated");

    // Asked again at once: the agent refuses, and the page says why.
    let refused = run_now_until(
        &browser,
        row,
        "the agent's refusal beside the button",
        &format!(
            "const s = document.querySelector('{row} .run-now-cell .form-status');\
             return s && s.textContent.includes('did not run') ? s.textContent : null;"
        ),
    )
    .await?;
    assert!(
        refused.as_str().is_some_and(|t| t.contains("rate limited")),
        "{refused}"
    );
    browser.screenshot("host-run-now").await?;
    no_script_errors(&browser).await
}
