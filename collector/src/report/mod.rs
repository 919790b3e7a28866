//! Reports: the daily fleet report and the monthly capacity and growth review.
//!
//! Data flow: the store's rollups, hosts and alerts are read ([`daily`]/[`monthly`] loaders
//! here), pure builders turn them into a [`DailyReport`] or [`MonthlyReport`] (the JSON
//! form), and HTML, CSV, text and the PNG charts are renderings of that struct's serialised
//! value, so the same number is the same in every format. Reports never scan raw results:
//! they read the hourly and daily rollups kept at ingest (`store::reports`).
//!
//! The scheduler ([`task`]) produces them on time and exactly once (see [`schedule`]);
//! `backwatch-collector report` and `GET /api/v1/reports/*` produce them on demand.

pub mod charts;
pub mod cli;
pub mod daily;
pub mod layout;
pub mod monthly;
pub mod render_csv;
pub mod render_html;
pub mod schedule;
pub mod stats;
pub mod task;

pub use daily::DailyReport;

/// The agent's report on its own spool: a disk measurement, but sent only at the agent's start
/// and when the spool's state changes, not on a schedule. Its sparse samples say nothing about
/// growth, and counting every host's spool filesystem would inflate the fleet's capacity, so
/// the capacity views (trends' storage, the monthly review) leave it out; the daily report
/// shows its status like any check's.
pub const AGENT_SPOOL_CHECK: &str = "disk.agent-spool";
pub use monthly::MonthlyReport;

use crate::config::reports::Reports;
use crate::labels::Member;
use crate::store::alerts::AlertFilter;
use crate::store::reports::{HOUR_MS, Period};
use crate::store::{Store, StoreResult};
use backwatch_proto::model::ProbeKind;
use charts::Chart;
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use render_html::{Images, Page};
use serde_json::Value;
use std::collections::HashSet;
use std::str::FromStr;

/// Alerts read to find those open at a past instant.
const MAX_ALERTS: u32 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Csv,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!("{other:?} is not one of html, json, csv")),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month(pub NaiveDate);

impl FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        NaiveDate::parse_from_str(&format!("{}-01", s.trim()), "%Y-%m-%d")
            .map(Month)
            .map_err(|_| format!("{s:?} is not a month (example: \"2026-02\")"))
    }
}

impl Month {
    /// The month before the one holding `now` in the report time zone.
    pub fn previous(now: DateTime<Utc>, cfg: &Reports) -> Month {
        let d = now.with_timezone(&cfg.timezone).date_naive();
        let first = d.with_day(1).unwrap_or(d);
        Month(first - Months::new(1))
    }

    pub fn name(self) -> String {
        self.0.format("%Y-%m").to_string()
    }

    /// Local midnight of the first day to local midnight of the next month's first day.
    pub fn bounds(self, cfg: &Reports) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = schedule::local_instant(cfg.timezone, self.0, NaiveTime::MIN);
        let end = schedule::local_instant(cfg.timezone, self.0 + Months::new(1), NaiveTime::MIN);
        (start, end)
    }

    /// The daily rollups' UTC days dated within the month, as `[from, until)` in milliseconds.
    /// Not the UTC days that begin within the local month: west of UTC that drops the 1st and
    /// takes the next month's 1st, a day the review runs on, half measured.
    pub fn utc_days(self) -> (i64, i64) {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        (midnight(self.0), midnight(self.0 + Months::new(1)))
    }
}

/// Either report, with what every rendering needs.
#[derive(Debug, Clone)]
pub enum Report {
    Daily(DailyReport),
    Monthly(MonthlyReport),
}

impl Report {
    pub fn value(&self) -> Value {
        let v = match self {
            Report::Daily(r) => serde_json::to_value(r),
            Report::Monthly(r) => serde_json::to_value(r),
        };
        // Plain structs of numbers and strings always serialise.
        v.unwrap_or(Value::Null)
    }

    pub fn title(&self) -> &str {
        match self {
            Report::Daily(r) => &r.title,
            Report::Monthly(r) => &r.title,
        }
    }

    fn subtitle(&self, cfg: &Reports) -> String {
        let local = |t: DateTime<Utc>| {
            t.with_timezone(&cfg.timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        };
        match self {
            Report::Daily(r) => format!(
                "The fleet at {} (the 24 hours since {}).",
                local(r.at),
                local(r.window_start)
            ),
            Report::Monthly(r) => format!(
                "{} to {}. Growth is a robust (Theil–Sen) fit over each day's last measurement; \
                 an alert counts as a false positive when marked so or when it resolved by itself \
                 within {}.",
                local(r.start),
                local(r.end),
                crate::human::duration(r.self_resolved_window_secs as i64)
            ),
        }
    }

    pub fn charts(&self) -> Vec<Chart> {
        match self {
            Report::Daily(r) => charts::daily(r),
            Report::Monthly(r) => charts::monthly(r),
        }
    }

    fn layout(&self) -> &'static layout::Layout {
        match self {
            Report::Daily(_) => &layout::DAILY,
            Report::Monthly(_) => &layout::MONTHLY,
        }
    }

    /// HTML with `images` as given, and the plain-text alternative.
    pub fn html_and_text(
        &self,
        cfg: &Reports,
        charts: &[Chart],
        images: Images,
    ) -> (String, String) {
        let value = self.value();
        let page = Page {
            title: self.title(),
            subtitle: self.subtitle(cfg),
            value: &value,
            layout: self.layout(),
            charts,
            images,
            tz: cfg.timezone,
        };
        (render_html::html(&page), render_html::text(&page, 50))
    }

    /// The report as a standalone document in `format`.
    pub fn render(&self, cfg: &Reports, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(&self.value()).unwrap_or_default() + "\n",
            Format::Csv => render_csv::csv(&self.value()),
            Format::Html => self.html_and_text(cfg, &self.charts(), Images::Embedded).0,
        }
    }
}

/// Reports rendered at once, at most. Drawing the charts (PNG on the CPU) and laying out a
/// month of rows takes tens of milliseconds to seconds: on the blocking pool, and a few at a
/// time, a burst of report requests can neither hold the runtime threads that serve ingest
/// and the API nor take every core.
const RENDER_SLOTS: usize = 2;
static RENDERING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RENDER_SLOTS);

/// Run `work` (a rendering) off the async runtime, waiting for one of [`RENDER_SLOTS`].
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let slot = RENDERING
        .acquire()
        .await
        .map_err(|_| "report rendering is shut down".to_string())?;
    // The slot goes with the work: a caller that gives up (a client that disconnects) must not
    // free it while the rendering still runs.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| format!("report rendering failed: {e}"))
}

/// The daily report at `at` (a scheduled time, or any instant for a backfill).
pub async fn daily(
    store: &dyn Store,
    cfg: &Reports,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    only: Option<&Member>,
) -> StoreResult<DailyReport> {
    let at_ms = at.timestamp_millis();
    let from = Period::Hour.bucket(at_ms - 24 * HOUR_MS);
    let (hosts, covered) = hosts_in_scope(store, only).await?;
    let mut hours = store.rollups(Period::Hour, from, at_ms).await?;
    hours.retain(|r| covered.contains(&r.host));
    let live = (now - at).abs() <= TimeDelta::minutes(15);
    if live {
        // A check retired since (gone from its agent's configuration) left its rollups: it
        // left the host, and its last sample ageing would make the host "unknown".
        let current: HashSet<(String, String)> = store
            .check_clocks()
            .await?
            .into_iter()
            .map(|c| (c.host, c.check))
            .collect();
        hours.retain(|r| current.contains(&(r.host.clone(), r.check.clone())));
    }
    let open_alerts = if live {
        store.open_alerts().await?
    } else {
        store
            .alerts(AlertFilter::All, MAX_ALERTS)
            .await?
            .into_iter()
            .filter(|a| a.fields.opened_at <= at && a.fields.resolved_at.is_none_or(|r| r > at))
            .collect()
    };
    let mut open_alerts = open_alerts;
    open_alerts.retain(|a| covered.contains(&a.fields.host));
    let mut report = daily::build(daily::DailyInput {
        at,
        period: at
            .with_timezone(&cfg.timezone)
            .format("%Y-%m-%d")
            .to_string(),
        timezone: cfg.timezone.name().to_string(),
        generated_at: now,
        hosts,
        hours,
        open_alerts,
        live,
        stale_grace: cfg.stale_grace,
    });
    scoped_title(&mut report.title, only);
    Ok(report)
}

/// The hosts a report covers ([`crate::labels::fleet_hosts`]), and their names.
async fn hosts_in_scope(
    store: &dyn Store,
    only: Option<&Member>,
) -> StoreResult<(Vec<crate::store::HostRecord>, HashSet<String>)> {
    let hosts = crate::labels::fleet_hosts(store, only).await?;
    let names = hosts.iter().map(|h| h.host.clone()).collect();
    Ok((hosts, names))
}

/// A report limited by a selector says so in its title (and thus in the mail's subject).
fn scoped_title(title: &mut String, only: Option<&Member>) {
    if let Some(crate::labels::Member::Label { name, value }) = only {
        title.push_str(&format!(" — hosts with {name}={value}"));
    }
}

/// The monthly review of `month`.
pub async fn monthly(
    store: &dyn Store,
    cfg: &Reports,
    month: Month,
    now: DateTime<Utc>,
    only: Option<&Member>,
) -> StoreResult<MonthlyReport> {
    let (start, end) = month.bounds(cfg);
    let (from, until) = month.utc_days();
    let (_, covered) = hosts_in_scope(store, only).await?;
    let mut days = store.rollups(Period::Day, from, until).await?;
    days.retain(|r| covered.contains(&r.host));
    let mut alerts = store.alerts_opened_between(start, end).await?;
    alerts.retain(|a| covered.contains(&a.fields.host));
    let wal_checks = store.check_states_of_kind(ProbeKind::Wal).await?;
    let mut drills_of = crate::api::recovery::drills_of(
        &wal_checks,
        &store.check_states_of_kind(ProbeKind::Drill).await?,
    );
    drills_of.retain(|(host, _), _| covered.contains(host));
    let risk_limits = wal_checks
        .iter()
        .filter_map(|w| {
            let limit = w.details["max_data_at_risk_secs"].as_i64()?;
            Some(((w.host.clone(), w.check.clone()), limit))
        })
        .collect();
    let mut report = monthly::build(monthly::MonthlyInput {
        period: month.name(),
        timezone: cfg.timezone,
        start,
        end,
        generated_at: now,
        days,
        alerts,
        self_resolved_window: cfg.self_resolved_window,
        drills_of,
        risk_limits,
    });
    scoped_title(&mut report.title, only);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_in_the_report_zone() {
        let m: Month = "2026-03".parse().unwrap();
        let cfg = Reports {
            timezone: chrono_tz::Europe::Berlin,
            ..Reports::default()
        };
        let (s, e) = m.bounds(&cfg);
        assert_eq!(s.to_rfc3339(), "2026-02-28T23:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-03-31T22:00:00+00:00");
        assert!("2026-13".parse::<Month>().is_err());
        // Its daily rollups: the UTC days dated in March, east or west of UTC.
        let day = |d: &str| DateTime::parse_from_rfc3339(d).unwrap().timestamp_millis();
        let march = (day("2026-03-01T00:00:00Z"), day("2026-04-01T00:00:00Z"));
        assert_eq!(m.utc_days(), march);
        let west = Reports {
            timezone: chrono_tz::America::New_York,
            ..Reports::default()
        };
        let (s, e) = m.bounds(&west);
        assert_eq!(s.to_rfc3339(), "2026-03-01T05:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-04-01T04:00:00+00:00");
        let now = DateTime::parse_from_rfc3339("2026-03-01T00:30:00+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Month::previous(now, &cfg).name(), "2026-02");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renderings_run_a_few_at_a_time_even_when_callers_give_up() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let render = || {
            tokio::spawn(off_runtime(|| {
                let n = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                MOST.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
                NOW.fetch_sub(1, Ordering::SeqCst);
            }))
        };
        let first: Vec<_> = (0..RENDER_SLOTS).map(|_| render()).collect();
        while NOW.load(Ordering::SeqCst) < RENDER_SLOTS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Their callers give up (a client that disconnected): the renderings still run, and
        // so still hold their slots.
        for task in &first {
            task.abort();
        }
        let later: Vec<_> = (0..RENDER_SLOTS).map(|_| render()).collect();
        for task in later {
            assert!(task.await.is_ok_and(|r| r.is_ok()));
        }
        assert_eq!(MOST.load(Ordering::SeqCst), RENDER_SLOTS);
    }
}
