//! When reports are due, and the task that produces them.
//!
//! Invariants:
//! - a run is identified by its key, `daily:<local date>` or `monthly:<reported month>`;
//!   [`due_runs`] is pure (`now` is an argument) and returns at most one run per kind: the
//!   latest whose time has come, and only when no run of that kind with the same or a later
//!   key was claimed. A collector that was down for days sends the latest report once, not a
//!   backlog;
//! - the very first time the scheduler runs on a store (no run of a kind recorded yet) the
//!   latest due run is recorded as a baseline and nothing is sent: installing or upgrading
//!   Backwatch at 10:00 does not mail the 08:00 report of a fleet it has just met;
//! - local times are turned into instants by [`local_instant`]: a time that a DST change
//!   skips runs at the first instant after the gap (02:30 on a spring-forward night runs at
//!   03:00 new time), a time it repeats runs at the earlier of the two;
//! - the claim (`report_runs` primary key) and the queued emails commit together
//!   (`ReportStore::claim_report_run`), so with several collectors on one store, and across
//!   restarts, each run is sent once.

use crate::config::reports::Reports;
use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Daily,
    Monthly,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Monthly => "monthly",
        }
    }
}

/// A report the scheduler should produce now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub kind: Kind,
    /// `2026-03-29` (the local day of a daily report) or `2026-02` (the reported month).
    pub period: String,
    /// When it was due.
    pub at: DateTime<Utc>,
    /// First start on this store: record, do not send.
    pub baseline: bool,
}

impl Run {
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.period)
    }
}

/// The instant the local wall-clock time `date time` happens in `tz` (see the module
/// invariants for the times a DST change skips or repeats).
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap. Zone transitions happen on whole minutes, so the first whole minute
            // that exists after the wall-clock time is the end of the gap.
            let mut m = naive - TimeDelta::seconds(i64::from(chrono::Timelike::second(&naive)));
            for _ in 0..(26 * 60) {
                m += TimeDelta::minutes(1);
                match tz.from_local_datetime(&m) {
                    LocalResult::Single(t) => return t.with_timezone(&Utc),
                    LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
                    LocalResult::None => {}
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// The latest daily run due at or before `now`.
pub fn latest_daily(now: DateTime<Utc>, cfg: &Reports) -> Run {
    let mut day = now.with_timezone(&cfg.timezone).date_naive();
    let mut at = local_instant(cfg.timezone, day, cfg.daily_at);
    if at > now {
        day = day - Days::new(1);
        at = local_instant(cfg.timezone, day, cfg.daily_at);
    }
    Run {
        kind: Kind::Daily,
        period: day.format("%Y-%m-%d").to_string(),
        at,
        baseline: false,
    }
}

fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// The latest monthly run due at or before `now`: on `monthly_day` of a month, for the
/// month before it.
pub fn latest_monthly(now: DateTime<Utc>, cfg: &Reports) -> Run {
    let this = month_start(now.with_timezone(&cfg.timezone).date_naive());
    let run_day = |m: NaiveDate| m.with_day(cfg.monthly_day).unwrap_or(m);
    let mut month = this;
    let mut at = local_instant(cfg.timezone, run_day(month), cfg.monthly_at);
    if at > now {
        month = month - Months::new(1);
        at = local_instant(cfg.timezone, run_day(month), cfg.monthly_at);
    }
    let reported = month - Months::new(1);
    Run {
        kind: Kind::Monthly,
        period: reported.format("%Y-%m").to_string(),
        at,
        baseline: false,
    }
}

/// The next instant after `now` at which some run becomes due.
pub fn next_due(now: DateTime<Utc>, cfg: &Reports) -> DateTime<Utc> {
    let tz = cfg.timezone;
    let today = now.with_timezone(&tz).date_naive();
    let daily = [today, today + Days::new(1), today + Days::new(2)]
        .into_iter()
        .map(|d| local_instant(tz, d, cfg.daily_at))
        .find(|t| *t > now);
    let this = month_start(today);
    let monthly = [this, this + Months::new(1), this + Months::new(2)]
        .into_iter()
        .map(|m| local_instant(tz, m.with_day(cfg.monthly_day).unwrap_or(m), cfg.monthly_at))
        .find(|t| *t > now);
    [daily, monthly]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + TimeDelta::hours(1))
}

/// What to produce now, given the greatest claimed key of each kind (`(kind, key)`).
pub fn due_runs(now: DateTime<Utc>, claimed: &[(String, String)], cfg: &Reports) -> Vec<Run> {
    if !cfg.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    for mut run in [latest_daily(now, cfg), latest_monthly(now, cfg)] {
        let last = claimed
            .iter()
            .filter(|(k, _)| k == run.kind.as_str())
            .map(|(_, key)| key.as_str())
            .max();
        match last {
            None => {
                run.baseline = true;
                out.push(run);
            }
            Some(last) if last < run.key().as_str() => out.push(run),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
