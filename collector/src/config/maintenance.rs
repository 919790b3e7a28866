//! Recurring maintenance windows (`[[maintenance]]`): "every Sunday 02:00–04:00 Europe/Berlin,
//! hosts db*, checks backup.*". While one is open, the alerts it covers are recorded but their
//! notices are withheld, exactly as under a silence (docs/checks.md R30): the engine adds each
//! open window to its silences.
//!
//! Times are wall-clock times in the window's time zone, turned into instants per day, so a
//! window stays at 02:00 local across daylight-saving changes: on the day a local time does
//! not exist (spring forward) the window starts at the first instant after the gap; where a
//! local time happens twice (fall back) it starts at the first. A window whose `to` is not
//! after `from` ends the next day (22:00–02:00).

use crate::store::alerts::Silence;
use backwatch_common::config::Problems;
use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub name: Option<String>,
    /// Days it opens: weekday names ("sunday", "sun"), or "day" for every day.
    #[serde(default)]
    pub every: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// IANA time zone of `from` and `to` (default UTC).
    pub timezone: Option<String>,
    /// What it covers: host names or patterns, groups, check ids or patterns; each list
    /// empty = any, and all three must match.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub checks: Vec<String>,
    pub reason: Option<String>,
}

/// One validated window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub name: String,
    #[serde(serialize_with = "ser_days")]
    pub every: Vec<Weekday>,
    pub from: NaiveTime,
    pub to: NaiveTime,
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    pub checks: Vec<String>,
    pub reason: String,
}

fn ser_days<S: serde::Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(days.iter().map(|d| day_name(*d)))
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

/// One occurrence of a window: when it opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Window {
    /// The instant local time `t` of `date` happens in the window's zone (see the module
    /// comment for gaps and folds).
    fn instant(&self, date: NaiveDate, t: NaiveTime) -> Option<DateTime<Utc>> {
        let local = NaiveDateTime::new(date, t);
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(x) => Some(x.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            // In a spring-forward gap: the first minute that exists after it.
            LocalResult::None => (1..=180).find_map(|m| {
                let later = local + chrono::Duration::minutes(m);
                self.timezone
                    .from_local_datetime(&later)
                    .earliest()
                    .map(|x| x.with_timezone(&Utc))
            }),
        }
    }

    /// The occurrence that opens on local `date`, if the window opens that day.
    fn on(&self, date: NaiveDate) -> Option<Occurrence> {
        if !self.every.contains(&date.weekday()) {
            return None;
        }
        let end_date = if self.to > self.from {
            date
        } else {
            date.checked_add_days(Days::new(1))?
        };
        let starts_at = self.instant(date, self.from)?;
        let ends_at = self.instant(end_date, self.to)?;
        (ends_at > starts_at).then_some(Occurrence { starts_at, ends_at })
    }

    /// The occurrence open at `t`, if any (it may have opened the local day before).
    pub fn open_at(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        let today = t.with_timezone(&self.timezone).date_naive();
        [today.pred_opt(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.on(d))
            .find(|o| o.starts_at <= t && t < o.ends_at)
    }

    /// The next occurrence opening after `t`, within the coming eight days.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        let today = t.with_timezone(&self.timezone).date_naive();
        (0..=8)
            .filter_map(|n| today.checked_add_days(Days::new(n)))
            .filter_map(|d| self.on(d))
            .find(|o| o.starts_at > t)
    }

    /// The window open at `t` as silences the engine applies (one per host × group × check
    /// pattern: a silence has one of each).
    pub fn silences_at(&self, t: DateTime<Utc>) -> Vec<Silence> {
        let Some(o) = self.open_at(t) else {
            return Vec::new();
        };
        let any = |v: &[String]| -> Vec<Option<String>> {
            if v.is_empty() {
                vec![None]
            } else {
                v.iter().cloned().map(Some).collect()
            }
        };
        let mut out = Vec::new();
        for host in any(&self.hosts) {
            for group in any(&self.groups) {
                for check in any(&self.checks) {
                    out.push(Silence {
                        id: 0,
                        host: host.clone(),
                        group: group.clone(),
                        check,
                        created_by: format!("maintenance window {}", self.name),
                        reason: self.reason.clone(),
                        created_at: o.starts_at,
                        starts_at: o.starts_at,
                        ends_at: o.ends_at,
                        ended_by: None,
                    });
                }
            }
        }
        out
    }
}

fn weekday(s: &str) -> Option<Vec<Weekday>> {
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    let s = s.trim().to_ascii_lowercase();
    if s == "day" {
        return Some(all.to_vec());
    }
    all.iter()
        .find(|d| day_name(**d) == s || day_name(**d)[..3] == *s)
        .map(|d| vec![*d])
}

pub fn validate(
    p: &mut Problems,
    raw: Vec<RawWindow>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("maintenance[{i}].{k}");
        let before = p.len();
        let name = w.name.clone().unwrap_or_default();
        if name.trim().is_empty() {
            p.push(
                key("name"),
                "is required (it names the window in alerts and the API)",
            );
        } else if out.iter().any(|o| o.name == name) {
            p.push(
                key("name"),
                format!("{name:?} is used by an earlier window"),
            );
        }
        let mut every = Vec::new();
        if w.every.is_empty() {
            p.push(key("every"), "is required: weekday names, or \"day\"");
        }
        for d in &w.every {
            match weekday(d) {
                Some(days) => every.extend(days),
                None => p.push(
                    key("every"),
                    format!("{d:?} is not a weekday (examples: \"sunday\", \"sun\", \"day\")"),
                ),
            }
        }
        every.sort_by_key(Weekday::num_days_from_monday);
        every.dedup();
        let mut time = |k: &str, v: Option<String>| match v {
            None => {
                p.push(key(k), "is required (\"HH:MM\")");
                None
            }
            Some(s) => super::reports::parse_time_of_day(&s)
                .map_err(|e| p.push(key(k), e))
                .ok(),
        };
        let (from, to) = (time("from", w.from), time("to", w.to));
        if from.is_some() && from == to {
            p.push(key("to"), "must differ from `from`");
        }
        let timezone = match &w.timezone {
            None => Tz::UTC,
            Some(n) => n.parse::<Tz>().unwrap_or_else(|_| {
                p.push(
                    key("timezone"),
                    format!(
                        "{n:?} is not an IANA time zone (examples: \"UTC\", \"Europe/Berlin\")"
                    ),
                );
                Tz::UTC
            }),
        };
        for g in &w.groups {
            if !groups.contains_key(g) {
                p.push(key("groups"), format!("{g:?} is not a group in [groups]"));
            }
        }
        for (k, list) in [("hosts", &w.hosts), ("checks", &w.checks)] {
            if list.iter().any(|s| s.trim().is_empty()) {
                p.push(key(k), "has an empty entry");
            }
        }
        if let (Some(from), Some(to)) = (from, to)
            && p.len() == before
        {
            out.push(Window {
                name,
                every,
                from,
                to,
                timezone,
                hosts: w.hosts,
                groups: w.groups,
                checks: w.checks,
                reason: w.reason.unwrap_or_else(|| "maintenance window".into()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(every: &str, from: &str, to: &str, tz: &str) -> Window {
        let mut p = Problems::new(std::path::Path::new("c.toml"));
        let w = validate(
            &mut p,
            vec![RawWindow {
                name: Some("w".into()),
                every: vec![every.into()],
                from: Some(from.into()),
                to: Some(to.into()),
                timezone: Some(tz.into()),
                ..RawWindow::default()
            }],
            &BTreeMap::new(),
        );
        assert!(p.is_empty(), "{:?}", p.finish());
        w.into_iter().next().expect("one window")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an instant")
    }

    #[test]
    fn sunday_two_to_four_berlin_stays_local_across_daylight_saving() {
        let w = window("sunday", "02:00", "04:00", "Europe/Berlin");
        // Winter (UTC+1): 2026-03-22 02:00 local is 01:00 UTC.
        let o = w.open_at(at("2026-03-22T01:30:00Z")).expect("open");
        assert_eq!(o.starts_at, at("2026-03-22T01:00:00Z"));
        assert_eq!(o.ends_at, at("2026-03-22T03:00:00Z"));
        assert!(w.open_at(at("2026-03-22T03:00:00Z")).is_none());
        // 2026-03-29: clocks jump from 02:00 to 03:00; 02:00 does not exist, so the window
        // opens at 03:00 CEST (01:00 UTC) and closes at 04:00 CEST (02:00 UTC).
        let o = w.next_after(at("2026-03-23T00:00:00Z")).expect("next");
        assert_eq!(o.starts_at, at("2026-03-29T01:00:00Z"));
        assert_eq!(o.ends_at, at("2026-03-29T02:00:00Z"));
        // Summer (UTC+2): 02:00 local is 00:00 UTC.
        let o = w.next_after(at("2026-04-01T00:00:00Z")).expect("next");
        assert_eq!(o.starts_at, at("2026-04-05T00:00:00Z"));
        // Not on a Monday.
        assert!(w.open_at(at("2026-04-06T00:30:00Z")).is_none());
    }

    #[test]
    fn a_window_past_midnight_ends_the_next_day() {
        let w = window("sat", "22:00", "02:00", "UTC");
        let o = w
            .open_at(at("2026-12-06T01:00:00Z"))
            .expect("open on Sunday 01:00");
        assert_eq!(o.starts_at, at("2026-12-05T22:00:00Z"));
        assert_eq!(o.ends_at, at("2026-12-06T02:00:00Z"));
    }

    #[test]
    fn an_open_window_is_one_silence_per_pattern() {
        let w = Window {
            hosts: vec!["db*".into()],
            checks: vec!["backup.*".into(), "disk.*".into()],
            ..window("day", "00:00", "23:59", "UTC")
        };
        // One silence per host pattern × check pattern, matched as every silence is.
        let s = w.silences_at(at("2026-12-05T12:00:00Z"));
        let what: Vec<(Option<&str>, Option<&str>)> = s
            .iter()
            .map(|s| (s.host.as_deref(), s.check.as_deref()))
            .collect();
        assert_eq!(
            what,
            [
                (Some("db*"), Some("backup.*")),
                (Some("db*"), Some("disk.*"))
            ]
        );
        assert_eq!(s[0].created_by, "maintenance window w");
        assert_eq!(s[0].ends_at, at("2026-12-05T23:59:00Z"));
    }

    #[test]
    fn mistakes_name_the_key() {
        let mut p = Problems::new(std::path::Path::new("c.toml"));
        validate(
            &mut p,
            vec![RawWindow {
                every: vec!["someday".into()],
                from: Some("25:00".into()),
                timezone: Some("Mars/Olympus".into()),
                groups: vec!["nope".into()],
                ..RawWindow::default()
            }],
            &BTreeMap::new(),
        );
        let e = p.finish().expect_err("invalid").to_string();
        for want in [
            "maintenance[0].name: is required",
            "maintenance[0].every: \"someday\" is not a weekday",
            "maintenance[0].from: \"25:00\" is not a time of day",
            "maintenance[0].to: is required",
            "maintenance[0].timezone: \"Mars/Olympus\" is not an IANA time zone",
            "maintenance[0].groups: \"nope\" is not a group in [groups]",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
    }
}
