//! Report benchmark seeding: one month of hourly and daily rollups for N hosts with
//! four checks each (`disk.backup`, `backup.daily`, `wal.main`, `archive.main`), written into
//! a store through `ReportStore::put_rollups`, as ingest would have left them.
//!
//! Run by `scripts/bench-report`, which then times `backwatch-collector report monthly` on the
//! store. Usage: `bench-report --url sqlite:///tmp/x.db --hosts 1000 --month 2026-02`.

use anyhow::{Context, Result, bail};
use backwatch_collector::status::Status;
use backwatch_collector::store::reports::{DAY_MS, HOUR_MS, Period, ReportStore, Rollup};
use backwatch_collector::store::{SqlStore, Store};
use backwatch_proto::model::{ProbeKind, check_id};
use chrono::NaiveDate;

const GIB: i64 = 1 << 30;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The row of check `c` of host `h` for one bucket; `t` counts hours since the month began.
fn row(host: &str, c: usize, period: Period, start: i64, t: i64, h: i64) -> Rollup {
    let (kind, name) = [
        (ProbeKind::Disk, "backup"),
        (ProbeKind::Backup, "daily"),
        (ProbeKind::Wal, "main"),
        (ProbeKind::Archive, "main"),
    ][c];
    let check = check_id(kind, name);
    let mut r = Rollup::empty(host, &check, period, start, kind);
    let samples = if period == Period::Day { 24 } else { 1 };
    r.samples = samples;
    r.n_ok = samples;
    r.status_last = Status::Ok;
    r.first_at = start;
    r.last_at = start + period.millis() - HOUR_MS;
    r.interval_secs = 3600;
    let days = (t as f64) / 24.0;
    match kind {
        ProbeKind::Disk => {
            let used = 300 * GIB + ((2.0 + (h % 7) as f64) * days * GIB as f64) as i64;
            r.used_bytes_last = Some(used);
            r.used_bytes_max = Some(used);
            r.capacity_bytes = Some(1000 * GIB);
            r.used_pct_max = Some(100.0 * used as f64 / (1000 * GIB) as f64);
        }
        ProbeKind::Backup => {
            r.used_bytes_last = Some(200 * GIB + (days * GIB as f64) as i64);
            r.files_last = Some(7);
            r.newest_mtime = Some(start.div_euclid(DAY_MS) * DAY_MS + HOUR_MS);
            r.newest_size_bytes = Some(30 * GIB + (days * 0.1 * GIB as f64) as i64);
            r.newest_age_secs = Some(3600);
            r.new_backups = i64::from(period == Period::Day || t % 24 == 1);
        }
        ProbeKind::Wal => {
            r.delay_secs_max = Some((t * 7 + h) % 300);
            if period == Period::Day {
                r.delay_hourly = (0..24).map(|i| Some((i * 7 + h) % 300)).collect();
            }
            r.archived_count = Some(10_000 + t * 4);
            r.archived_delta = 4 * samples;
            r.failed_count = Some(0);
            r.segment_bytes = Some(16 << 20);
            r.wal_bytes = r.archived_delta * (16 << 20);
        }
        _ => {
            r.used_bytes_last = Some(50 * GIB + (days * 1.5 * GIB as f64) as i64);
            r.files_last = Some(3000 + t * 4);
            r.newest_age_secs = Some(8 * 86_400);
            r.duration_secs = Some(600 + h % 60);
            r.wal_bytes = 96 * (16 << 20);
        }
    }
    r
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url", "");
    if url.is_empty() {
        bail!("usage: bench-report --url sqlite:///path.db [--hosts 1000] [--month 2026-02]");
    }
    let hosts: i64 = arg(&args, "--hosts", "1000").parse()?;
    let month = NaiveDate::parse_from_str(
        &format!("{}-01", arg(&args, "--month", "2026-02")),
        "%Y-%m-%d",
    )
    .context("--month")?;
    let next = month + chrono::Months::new(1);
    let start = month
        .and_hms_opt(0, 0, 0)
        .context("month start")?
        .and_utc()
        .timestamp_millis();
    let hours = (next - month).num_days() * 24;
    let store = SqlStore::open(&url).await?;
    let began = std::time::Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    let mut written = 0usize;
    for h in 0..hosts {
        let host = format!("db{h:04}.example.com");
        store
            .touch_host(
                &host,
                chrono::DateTime::from_timestamp_millis(start + hours * HOUR_MS)
                    .unwrap_or_default(),
                None,
            )
            .await?;
        for c in 0..4 {
            for t in 0..hours {
                batch.push(row(&host, c, Period::Hour, start + t * HOUR_MS, t, h));
            }
            for d in 0..hours / 24 {
                batch.push(row(
                    &host,
                    c,
                    Period::Day,
                    start + d * DAY_MS,
                    d * 24 + 23,
                    h,
                ));
            }
        }
        if batch.len() >= 15_000 {
            store.put_rollups(&batch).await?;
            written += batch.len();
            batch.clear();
        }
    }
    written += batch.len();
    store.put_rollups(&batch).await?;
    store.close().await;
    eprintln!(
        "seeded {written} rollup rows ({hosts} hosts x 4 checks, {hours} hours) in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
