//! `[reports]`: when the daily and monthly reports are produced, in which time zone, and how
//! the monthly review counts self-resolved alerts. Recipients are the routes with
//! `daily_summary = true` (see `alerts::routes::summary_routes`).
//!
//! Invariants: every problem is reported with its key; times of day are local wall-clock
//! times in `timezone` (an IANA name), turned into instants only by `report::schedule`, which
//! knows what to do with a time a DST change skips or repeats.

use backwatch_common::config::{Problems, de_opt_duration};
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    pub enabled: Option<bool>,
    pub timezone: Option<String>,
    pub daily_at: Option<String>,
    pub monthly_day: Option<u32>,
    pub monthly_at: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub self_resolved_window: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reports {
    /// Produce and send reports on schedule (default true). On-demand reports (CLI, API)
    /// work either way.
    pub enabled: bool,
    /// Time zone of the schedule and of the report's days and months (default UTC).
    pub timezone: Tz,
    /// Local time of the daily report (default 08:00).
    pub daily_at: NaiveTime,
    /// Day of the month the monthly review of the previous month is produced (1..=28, default 1).
    pub monthly_day: u32,
    /// Local time of the monthly review (default 08:00).
    pub monthly_at: NaiveTime,
    /// An alert resolved by itself within this long counts as a false positive (default 10 min).
    pub self_resolved_window: Duration,
    /// Not a `[reports]` key: `silence.check_grace`, with which the daily report judges a
    /// check stale as the collector does.
    pub stale_grace: Duration,
}

pub fn default_time() -> NaiveTime {
    NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN)
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            enabled: true,
            timezone: Tz::UTC,
            daily_at: default_time(),
            monthly_day: 1,
            monthly_at: default_time(),
            self_resolved_window: Duration::from_secs(600),
            // The silence sweep's default `check_grace`.
            stale_grace: Duration::from_secs(300),
        }
    }
}

/// `HH:MM` or `HH:MM:SS`, 24-hour clock.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
        .map_err(|_| format!("{s:?} is not a time of day (examples: \"08:00\", \"06:30:00\")"))
}

pub fn validate(p: &mut Problems, raw: RawReports) -> Reports {
    let d = Reports::default();
    let timezone = match raw.timezone {
        None => d.timezone,
        Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
            p.push(
                "reports.timezone",
                format!("{name:?} is not an IANA time zone (examples: \"UTC\", \"Europe/Berlin\")"),
            );
            d.timezone
        }),
    };
    let mut time = |key: &str, v: Option<String>| match v {
        None => default_time(),
        Some(s) => parse_time_of_day(&s).unwrap_or_else(|e| {
            p.push(key, e);
            default_time()
        }),
    };
    let daily_at = time("reports.daily_at", raw.daily_at);
    let monthly_at = time("reports.monthly_at", raw.monthly_at);
    let monthly_day = raw.monthly_day.unwrap_or(d.monthly_day);
    if !(1..=28).contains(&monthly_day) {
        p.push(
            "reports.monthly_day",
            format!("{monthly_day} is not a day every month has (1 to 28)"),
        );
    }
    let self_resolved_window = raw.self_resolved_window.unwrap_or(d.self_resolved_window);
    if self_resolved_window.is_zero() {
        p.push("reports.self_resolved_window", "must be more than 0");
    }
    Reports {
        enabled: raw.enabled.unwrap_or(true),
        timezone,
        daily_at,
        monthly_day,
        monthly_at,
        self_resolved_window,
        stale_grace: d.stale_grace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_common::config::parse_toml;
    use std::path::Path;

    #[derive(Deserialize)]
    struct Doc {
        reports: RawReports,
    }

    fn check(text: &str) -> Result<Reports, String> {
        let path = Path::new("collector.toml");
        let doc: Doc = parse_toml(path, text).map_err(|e| e.to_string())?;
        let mut p = Problems::new(path);
        let r = validate(&mut p, doc.reports);
        p.finish().map(|()| r).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_procedure() {
        let r = check("[reports]\n").unwrap();
        assert_eq!(r, Reports::default());
        assert_eq!(r.daily_at.to_string(), "08:00:00");
    }

    #[test]
    fn keys_are_read_and_problems_named() {
        let r = check(
            "[reports]\ntimezone = \"Europe/Berlin\"\ndaily_at = \"06:30\"\nmonthly_day = 2\n\
             monthly_at = \"07:15:30\"\nself_resolved_window = \"5m\"\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(r.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(r.daily_at.to_string(), "06:30:00");
        assert_eq!((r.monthly_day, r.enabled), (2, false));
        assert_eq!(r.self_resolved_window, Duration::from_secs(300));
        let e = check(
            "[reports]\ntimezone = \"Mars/Olympus\"\ndaily_at = \"8 am\"\nmonthly_day = 31\n",
        )
        .unwrap_err();
        for want in [
            "collector.toml",
            "reports.timezone: \"Mars/Olympus\" is not an IANA time zone",
            "reports.daily_at: \"8 am\" is not a time of day",
            "reports.monthly_day: 31 is not a day every month has",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
    }
}
