//! `./scripts/demo`, README's first command, run as a newcomer would (without its build step:
//! the test binaries are already built): a fleet with history in the API, the monthly review
//! not empty, the reports written as HTML, and a clean exit at the end.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::{eventually, free_port};
use chrono::Datelike as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_demo_shows_a_fleet_with_history_and_writes_its_reports() -> Result<()> {
    let state = tempfile::tempdir()?;
    let (grpc, http) = (free_port(), free_port());
    let started = chrono::Utc::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo");
    let demo = Command::new("bash")
        .arg(&script)
        .env("BUILD", "0")
        .env("BACKWATCH_DEMO_STATE", state.path())
        .env("BACKWATCH_GRPC_PORT", grpc.to_string())
        .env("BACKWATCH_HTTP_PORT", http.to_string())
        .env("BACKWATCH_DEMO_SECONDS", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting scripts/demo")?;
    // On a failed assertion the demo (and its collector and agent) is stopped, as Ctrl-C would.
    struct Running(Option<std::process::Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(c) = &self.0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
    let mut demo = Running(Some(demo));
    let client = backwatch_tests::harness::fleet::http_client();
    let get = async |path: &str| -> Result<serde_json::Value> {
        Ok(client
            .get(format!("http://127.0.0.1:{http}{path}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    };
    let hosts = eventually(
        Duration::from_secs(90),
        "the demo fleet in the API",
        async || {
            let hosts = get("/api/v1/hosts").await?;
            let n = hosts.as_array().map_or(0, Vec::len);
            ensure!(n >= 20, "{n} hosts so far");
            Ok(hosts)
        },
    )
    .await;
    // Not all well: a newcomer sees what problems look like.
    let statuses: Vec<&str> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["status"].as_str())
        .collect();
    ensure!(
        statuses.contains(&"critical") && statuses.contains(&"ok"),
        "{statuses:?}"
    );
    let series = get("/api/v1/hosts/db-04/series?since=7d").await?;
    ensure!(
        series["series"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["points"].as_array().is_some_and(|p| p.len() > 100))),
        "a week of history to chart: {series}"
    );
    // The demo hosts go on reporting live, over their own mutual-TLS streams, with their
    // labels; the silent one stays silent. A live result is stored (its id says "live": the
    // seeded history ends about when the demo starts, so a time alone would not tell them
    // apart).
    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    eventually(
        Duration::from_secs(60),
        "db-01 reporting live",
        async || {
            let h = get("/api/v1/hosts/db-01").await?;
            ensure!(h["labels"]["env"] == "prod" && h["silent"] == false, "{h}");
            let history = get(&format!(
                "/api/v1/hosts/db-01/history?check=disk.backup&since={since}"
            ))
            .await?;
            let live = history["results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["result_id"]
                        .as_str()
                        .is_some_and(|id| id.contains("-live-"))
                })
                .count();
            ensure!(live > 0, "no live result stored yet: {history}");
            Ok(())
        },
    )
    .await;
    let silent = get("/api/v1/hosts/db-08").await?;
    ensure!(silent["silent"] == true, "{silent}");
    let month = (chrono::Utc::now()
        .date_naive()
        .with_day(1)
        .context("day 1")?
        - chrono::Duration::days(1))
    .format("%Y-%m")
    .to_string();
    let review = get(&format!("/api/v1/reports/monthly?month={month}")).await?;
    for table in ["storage", "backups", "archive_lag"] {
        ensure!(
            review[table].as_array().is_some_and(|t| t.len() >= 20),
            "monthly {table}: {review}"
        );
    }
    let out = demo.0.take().context("the demo")?.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("24 demo hosts with 35 days of history"),
        "{stdout}"
    );
    for report in ["daily-report.html", "monthly-review.html"] {
        let html = std::fs::read_to_string(state.path().join(report))?;
        ensure!(html.contains("db-01"), "{report} names the demo hosts");
    }
    Ok(())
}
