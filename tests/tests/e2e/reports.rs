//! Reports across real processes: a month of seeded history gives the growth and
//! full dates it was built with; the CLI's JSON, CSV and HTML carry the same numbers; the
//! daily report is mailed on schedule to the management route with its PNG charts, once
//! across a restart, and once by two collectors sharing one PostgreSQL.

use anyhow::{Context, Result, ensure};
use backwatch_collector::status::{Status, Verdict};
use backwatch_collector::store::{Evaluated, SqlStore, Store};
use backwatch_proto::model::{
    BackupDirObs, BaseBackup, DiskObs, NewestFile, Observation, PendingSource, ProbeKind,
    ProbeResult, WalObs,
};
use backwatch_tests::harness::alerting::{MANAGEMENT, alerting_toml};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Certs, Collector, Mail, PgCluster, Smtp, bin, consistently};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const WAIT: Duration = Duration::from_secs(60);

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn item(
    host: &str,
    n: &mut u32,
    kind: ProbeKind,
    name: &str,
    at: DateTime<Utc>,
    interval: u32,
    obs: Observation,
) -> Evaluated {
    *n += 1;
    Evaluated {
        result: ProbeResult {
            result_id: format!("{host}-r{n}"),
            kind,
            name: name.into(),
            measured_at: at,
            duration_ms: 3,
            interval_secs: interval,
            error: None,
            observation: Some(obs),
        },
        received_at: at + TimeDelta::seconds(1),
        verdict: Verdict::new(Status::Ok, "seeded"),
    }
}

fn disk(used: u64, total: u64) -> Observation {
    Observation::Disk(DiskObs {
        path: "/backup".into(),
        total_bytes: total,
        free_bytes: total - used,
        avail_bytes: total - used,
        ..DiskObs::default()
    })
}

/// February 2026 of host `db1`, written through the store (so ingest keeps the rollups):
/// - `disk.backup` every 6 h, 1000 GiB, used 400 GiB + exactly 10 GiB per day;
/// - `wal.main` hourly, 4 segments archived per hour, the oldest waiting segment
///   10 s × the hour of day old (hourly maxima 0, 10, …, 230 s, each 28 times);
/// - `backup.daily` one new backup every day at 01:00, 50 GiB + 1 GiB per day.
async fn seed_february(url: &str) -> Result<()> {
    let store = SqlStore::open(url).await?;
    let host = "db1";
    let start = utc("2026-02-01T00:00:00Z");
    let mut n = 0;
    let mut items = Vec::new();
    for k in 0..(28 * 4) {
        let at = start + TimeDelta::hours(6 * k);
        let used = 400 * GIB + (k as u64) * 10 * GIB / 4;
        items.push(item(
            host,
            &mut n,
            ProbeKind::Disk,
            "backup",
            at,
            3600,
            disk(used, 1000 * GIB),
        ));
    }
    for h in 0..(28 * 24) {
        let at = start + TimeDelta::hours(h);
        let obs = Observation::Wal(WalObs {
            archive_mode: "on".into(),
            wal_segment_size_bytes: 16 << 20,
            archived_count: 1000 + 4 * h,
            pending_source: PendingSource::ArchiveStatusdir,
            ready_segments: 1,
            oldest_ready_age_secs: Some(10 * (h % 24)),
            ..WalObs::default()
        });
        items.push(item(host, &mut n, ProbeKind::Wal, "main", at, 900, obs));
    }
    for d in 0..28 {
        let taken = start + TimeDelta::days(d) + TimeDelta::hours(1);
        let at = taken + TimeDelta::hours(1);
        let obs = Observation::Backup(BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            file_count: 7,
            total_bytes: 400 * GIB,
            newest: Some(NewestFile {
                path: format!("/backup/daily/base-{d}.tar"),
                mtime: taken,
                size_bytes: (50 + d as u64) * GIB,
                age_secs: 3600,
            }),
            // A plain base backup taking 10 s longer every day.
            newest_base_backup: Some(BaseBackup {
                duration_secs: Some(600 + 10 * d),
                ..BaseBackup::default()
            }),
            ..BackupDirObs::default()
        });
        items.push(item(
            host,
            &mut n,
            ProbeKind::Backup,
            "daily",
            at,
            21600,
            obs,
        ));
    }
    // In time order, as ingest sees them.
    items.sort_by_key(|e| e.result.measured_at);
    for chunk in items.chunks(64) {
        store.record_results(host, chunk).await?;
    }
    store
        .touch_host(host, utc("2026-02-28T23:00:00Z"), None)
        .await?;
    store.close().await;
    Ok(())
}

fn cli(config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("backwatch-collector"))
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()?;
    ensure!(
        out.status.success(),
        "report {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn seeded_collector(certs: &Certs) -> Result<(tempfile::TempDir, Collector)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("seeded.db").display());
    seed_february(&url).await?;
    let collector = Collector::store(certs, &url)
        .toml("[reports]\ntimezone = \"UTC\"\n")
        .start()
        .await?;
    Ok((dir, collector))
}

fn find<'a>(rows: &'a Value, key: &str, value: &str) -> Result<&'a Value> {
    rows.as_array()
        .and_then(|a| a.iter().find(|r| r[key] == value))
        .with_context(|| format!("no row with {key} = {value} in {rows:#}"))
}

#[tokio::test]
async fn monthly_review_finds_the_seeded_growth_and_full_dates() -> Result<()> {
    let certs = Certs::fleet(&[])?;
    let (_dir, collector) = seeded_collector(&certs).await?;
    let json: Value = serde_json::from_str(&cli(
        collector.config_path(),
        &["monthly", "--month", "2026-02", "--format", "json"],
    )?)?;
    assert_eq!(json["period"], "2026-02");
    let disk = find(&json["storage"], "check", "disk.backup")?;
    assert_eq!(
        disk["growth_bytes_per_day"].as_f64(),
        Some((10 * GIB) as f64),
        "{disk:#}"
    );
    // Last sample 2026-02-28 18:00 at 677.5 GiB of 1000: 750 GiB in 7.25 days, 850 in 17.25.
    assert_eq!(disk["used_bytes_last"].as_u64(), Some(677 * GIB + GIB / 2));
    assert_eq!(disk["projected_75_at"], "2026-03-08T00:00:00Z");
    assert_eq!(disk["projected_85_at"], "2026-03-18T00:00:00Z");
    let in_3m = 677.5 * GIB as f64 + 10.0 * GIB as f64 * 3.0 * 30.436_875;
    assert_eq!(disk["needed_3m_bytes"].as_f64(), Some(in_3m.round()));

    let lag = find(&json["archive_lag"], "check", "wal.main")?;
    assert_eq!(lag["hours"], 28 * 24);
    assert_eq!(lag["median_secs"].as_f64(), Some(115.0));
    assert_eq!(lag["p95_secs"].as_f64(), Some(220.0));
    assert_eq!(lag["max_secs"], 230);
    // 4 segments archived an hour, none failed (the month's first sample has no delta).
    assert_eq!(lag["archived"], 4 * (28 * 24 - 1), "{lag}");
    assert_eq!(lag["failed"], 0, "{lag}");
    assert_eq!(lag["success_pct"].as_f64(), Some(100.0), "{lag}");
    let backups = find(&json["backups"], "check", "backup.daily")?;
    assert_eq!(backups["backups"], 28);
    assert_eq!(backups["typical_time"], "01:00");
    assert_eq!(
        backups["size_trend_bytes_per_day"].as_f64(),
        Some(GIB as f64)
    );
    assert_eq!(backups["duration_median_secs"].as_f64(), Some(735.0));
    assert_eq!(backups["duration_max_secs"], 870);
    assert_eq!(backups["duration_trend_secs_per_day"].as_f64(), Some(10.0));
    let wal = find(&json["wal_volume"], "check", "wal.main")?;
    // 96 segments of 16 MiB a day (the first day counts from its first sample: 92).
    assert_eq!(
        wal["total_bytes"].as_u64(),
        Some((92 + 27 * 96) * (16 << 20))
    );

    // The API answers the same review.
    let api = collector
        .api("/api/v1/reports/monthly?month=2026-02")
        .await?;
    assert_eq!(api["storage"], json["storage"]);
    Ok(())
}

/// The exact value of `key` in row `row` of `table`, as the HTML carries it.
fn html_value(html: &str, table: &str, row: usize, key: &str) -> Result<String> {
    let start = html
        .find(&format!("<table id=\"{table}\""))
        .with_context(|| format!("no table {table}"))?;
    let body = &html[start..];
    let body = &body[..body.find("</table>").unwrap_or(body.len())];
    if table == "summary" {
        // One row per figure: look through the whole table.
        let marker = format!("data-key=\"{key}\" data-value=\"");
        let at = body.find(&marker).with_context(|| format!("no {key}"))? + marker.len();
        return Ok(body[at..at + body[at..].find('"').unwrap_or(0)].to_string());
    }
    let tr = body
        .match_indices("<tr>")
        .skip(1)
        .nth(row)
        .map(|(i, _)| &body[i..])
        .with_context(|| format!("no row {row} in {table}"))?;
    let tr = &tr[..tr.find("</tr>").unwrap_or(tr.len())];
    let marker = format!("data-key=\"{key}\" data-value=\"");
    let at = tr
        .find(&marker)
        .with_context(|| format!("no {key} in {tr}"))?
        + marker.len();
    Ok(tr[at..at + tr[at..].find('"').unwrap_or(0)].to_string())
}

fn csv_value(csv: &str, table: &str, row: usize, key: &str) -> Result<String> {
    let prefix = format!("{table},{row},{key},");
    csv.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .with_context(|| format!("no {prefix} in the CSV"))
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn html_csv_and_json_carry_the_same_numbers() -> Result<()> {
    let certs = Certs::fleet(&[])?;
    let (dir, collector) = seeded_collector(&certs).await?;
    let config = collector.config_path();
    for (args, cells) in [
        (
            vec!["monthly", "--month", "2026-02"],
            vec![
                ("summary", 0, "filesystem_used_bytes"),
                ("summary", 0, "wal_bytes_per_day"),
                ("storage", 0, "growth_bytes_per_day"),
                ("storage", 0, "projected_75_at"),
                ("storage", 0, "needed_12m_bytes"),
                ("archive_lag", 0, "p95_secs"),
                ("archive_lag", 0, "success_pct"),
                ("wal_volume", 0, "mean_bytes_per_day"),
                ("backups", 0, "newest_size_bytes"),
            ],
        ),
        (
            vec!["daily", "--at", "2026-02-28T23:30:00Z"],
            vec![
                ("summary", 0, "hosts"),
                ("summary", 0, "backups_24h"),
                ("storage", 0, "used_pct"),
                ("storage", 0, "change_24h_bytes"),
                ("wal", 0, "archived_24h"),
                ("backups", 0, "newest_size_bytes"),
            ],
        ),
    ] {
        let run = |format: &str| {
            let mut a = args.clone();
            a.extend(["--format", format]);
            cli(config, &a)
        };
        let json: Value = serde_json::from_str(&run("json")?)?;
        let csv = run("csv")?;
        // HTML through --out: the standalone file, charts embedded.
        let out = dir.path().join("report.html");
        let mut a = args.clone();
        let out_arg = out.display().to_string();
        a.extend(["--format", "html", "--out", out_arg.as_str()]);
        cli(config, &a)?;
        let html = std::fs::read_to_string(&out)?;
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo"),
            "charts embedded"
        );
        for (table, row, key) in cells {
            let j = if table == "summary" {
                &json["summary"][key]
            } else {
                &json[table][row][key]
            };
            let j = json_value(j);
            assert!(!j.is_empty(), "{args:?} {table}.{key} is empty in {json:#}");
            assert_eq!(
                csv_value(&csv, table, row, key)?,
                j,
                "{args:?} CSV {table}.{key}"
            );
            assert_eq!(
                html_value(&html, table, row, key)?,
                j,
                "{args:?} HTML {table}.{key}"
            );
            // And the number parses to the same value everywhere.
            if let Ok(n) = j.parse::<f64>() {
                assert_eq!(html_value(&html, table, row, key)?.parse::<f64>()?, n);
            }
        }
    }
    // A bad month is a usage error.
    let out = Command::new(bin("backwatch-collector"))
        .args(["report", "monthly", "--month", "2026-13", "--config"])
        .arg(config)
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = http_client()
        .get(collector.url("/api/v1/reports/daily?format=csv"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/csv")
    );
    assert!(r.text().await?.starts_with("table,row,column,value\n"));
    Ok(())
}

/// `[reports]` with the daily report due `secs` from now (UTC).
fn due_soon(secs: i64) -> (String, DateTime<Utc>) {
    // Whole seconds: that is what `daily_at` can say.
    let at = Utc::now() + TimeDelta::seconds(secs);
    let at = at - TimeDelta::nanoseconds(i64::from(chrono::Timelike::nanosecond(&at)));
    (
        format!(
            "[reports]\ntimezone = \"UTC\"\ndaily_at = \"{}\"\n",
            at.format("%H:%M:%S")
        ),
        at,
    )
}

fn reports_to_management(mails: &[Mail]) -> Vec<&Mail> {
    mails
        .iter()
        .filter(|m| m.is_for(MANAGEMENT) && m.subject.starts_with("Backwatch daily report"))
        .collect()
}

fn assert_report_mail(m: &Mail) {
    let pngs: Vec<_> = m
        .parts
        .iter()
        .filter(|p| p.content_type == "image/png")
        .collect();
    assert!(!pngs.is_empty(), "no PNG part: {m:#?}");
    for p in &pngs {
        let cid = p.content_id.as_deref().expect("Content-ID");
        let bare = cid.trim_start_matches('<').trim_end_matches('>');
        assert!(
            m.html().contains(&format!("src=\"cid:{bare}\"")),
            "{cid} not referenced"
        );
        assert!(p.bytes > 100, "{p:?}");
    }
    assert!(m.text().contains("Hosts:"), "{}", m.text());
    assert!(m.html().contains("<h2>Open alerts</h2>"));
    assert!(
        !m.html().contains("data:image"),
        "email refers to parts, it embeds nothing"
    );
}

#[tokio::test]
async fn daily_report_is_mailed_once_with_charts_across_a_restart() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&[])?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    {
        // Something to report: a filesystem at 40 %.
        let store = SqlStore::open(&url).await?;
        let now = Utc::now() - TimeDelta::minutes(10);
        let mut n = 0;
        let e = item(
            "db1",
            &mut n,
            ProbeKind::Disk,
            "backup",
            now,
            3600,
            disk(400 * GIB, 1000 * GIB),
        );
        store.record_results("db1", &[e]).await?;
        store.touch_host("db1", now, None).await?;
        store.close().await;
    }
    let (reports, due) = due_soon(15);
    let mut collector = Collector::store(&certs, &url)
        .toml(&format!("{}{reports}", alerting_toml(&smtp)))
        .start()
        .await?;
    let mails = smtp
        .wait_for(WAIT, "the daily report", |m| {
            !reports_to_management(m).is_empty()
        })
        .await;
    assert!(Utc::now() >= due, "sent before it was due");
    let sent = reports_to_management(&mails);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_report_mail(sent[0]);
    assert!(
        mails
            .iter()
            .all(|m| !m.subject.starts_with("Backwatch daily report") || m.is_for(MANAGEMENT)),
        "only the route with daily_summary gets it"
    );

    collector.restart().await?;
    consistently(
        Duration::from_secs(5),
        "a restart sending nothing again",
        async || {
            let sent = reports_to_management(&smtp.messages()?).len();
            ensure!(sent == 1, "{sent} reports");
            Ok(())
        },
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn two_collectors_on_one_postgres_send_the_daily_report_once() -> Result<()> {
    let pg = PgCluster::init().archive_mode("off").start()?;
    pg.create_database("backwatch")?;
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&[])?;
    let (reports, _) = due_soon(20);
    let toml = format!("{}{reports}", alerting_toml(&smtp));
    let _a = Collector::postgres(&certs, &pg.url_for("backwatch"))
        .toml(&toml)
        .start()
        .await?;
    let _b = Collector::postgres(&certs, &pg.url_for("backwatch"))
        .toml(&toml)
        .start()
        .await?;
    smtp.wait_for(WAIT, "the daily report", |m| {
        !reports_to_management(m).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mails = smtp.messages()?;
    let sent = reports_to_management(&mails);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_report_mail(sent[0]);
    let runs = pg.psql_in(
        "backwatch",
        "SELECT count(*) FROM report_runs WHERE kind = 'daily' AND baseline = 0",
    )?;
    assert_eq!(runs.trim(), "1");
    Ok(())
}

#[tokio::test]
async fn a_daily_report_due_while_the_collector_was_down_is_sent_when_it_starts() -> Result<()> {
    let smtp = Smtp::capture()?;
    let certs = Certs::fleet(&[])?;
    let (reports, due) = due_soon(10);
    let mut collector = Collector::sqlite(&certs)
        .toml(&format!("{}{reports}", alerting_toml(&smtp)))
        .start()
        .await?;
    // The first start records the latest due run (yesterday's) and sends nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    collector.stop()?;
    let late = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    tokio::time::sleep(late).await;
    assert!(reports_to_management(&smtp.messages()?).is_empty());

    collector.restart().await?;
    let mails = smtp
        .wait_for(WAIT, "the missed daily report", |m| {
            !reports_to_management(m).is_empty()
        })
        .await;
    assert_report_mail(reports_to_management(&mails)[0]);
    collector.restart().await?;
    consistently(
        Duration::from_secs(4),
        "one report, however often the collector restarts",
        async || {
            let sent = reports_to_management(&smtp.messages()?).len();
            ensure!(sent == 1, "{sent} reports");
            Ok(())
        },
    )
    .await;
    Ok(())
}

/// disk.backup and disk.archive of one host on the same filesystem are one filesystem in the
/// fleet totals: the trends page's fleet storage and the monthly review's filesystem total.
#[tokio::test]
async fn two_disk_checks_on_one_filesystem_count_it_once() -> Result<()> {
    let fs = backwatch_tests::harness::mounts::Tmpfs::mount("16m")?;
    let (backup, archive) = (fs.path().join("backup"), fs.path().join("archive"));
    std::fs::create_dir(&backup)?;
    std::fs::create_dir(&archive)?;
    // 4 MiB of data: a used figure far from the tmpfs's empty one.
    std::fs::write(backup.join("base.tar"), vec![7u8; 4 << 20])?;
    let scene = backwatch_tests::harness::scene("db1", |a| {
        a.disk("backup", &backup, "1s")
            .disk("archive", &archive, "1s")
    })
    .await?;
    let collector = &scene.collector;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    collector
        .wait_status("db1", "disk.archive", "ok", WAIT)
        .await;

    let trends = collector.api("/api/v1/trends?days=2").await?;
    let series = trends["storage"].as_array().context("storage")?;
    assert_eq!(series.len(), 2, "{trends}");
    let used: Vec<u64> = series
        .iter()
        .filter_map(|s| s["points"].as_array()?.last()?[1].as_u64())
        .collect();
    let capacity = series[0]["points"][0][2].as_u64().context("capacity")?;
    // Nothing else writes to this tmpfs: both checks see the same bytes used.
    assert!(used[0] >= 4 << 20 && used[0] == used[1], "{trends}");
    let fleet = trends["fleet_storage"]
        .as_array()
        .and_then(|d| d.last())
        .context("fleet storage")?;
    assert_eq!(
        fleet[1].as_u64(),
        Some(used[0]),
        "fleet used {fleet} is one filesystem's, not the sum of {used:?}"
    );
    assert_eq!(fleet[2].as_u64(), Some(capacity), "capacity counted once");

    let month = Utc::now().format("%Y-%m").to_string();
    let json: Value = serde_json::from_str(&cli(
        collector.config_path(),
        &["monthly", "--month", &month, "--format", "json"],
    )?)?;
    let total = json["summary"]["filesystem_used_bytes"]
        .as_u64()
        .context("filesystem_used_bytes")?;
    assert_eq!(
        total, used[0],
        "the monthly total counts the filesystem once: {}",
        json["summary"]
    );
    Ok(())
}
