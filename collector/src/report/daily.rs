//! The daily report: the fleet at a glance at one instant. Pure: [`build`] turns what the
//! store holds (hosts, the last 24 hours of hourly rollups, open alerts) into a
//! [`DailyReport`]; HTML, CSV and JSON are renderings of that one struct.
//!
//! Invariants:
//! - a check's status is that of its newest sample before the report time, unknown when the
//!   host is silent or the sample is older than twice its interval plus five minutes (as
//!   the silence sweep would judge it; never for a check with interval 0, which is not
//!   scheduled);
//! - a host's status is the worst of its checks' (`Status::rank`), unknown when silent or
//!   without any result in the window;
//! - "backups in the last 24 h" counts the times a backup directory's newest file changed.

use crate::status::Status;
use crate::store::HostRecord;
use crate::store::alerts::{AGENT_CHECK, Alert, Severity};
use crate::store::reports::Rollup;
use backwatch_proto::model::ProbeKind;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything a daily report is made of, as read from the store.
pub struct DailyInput {
    pub at: DateTime<Utc>,
    /// Local date of `at` (`2026-03-29`) and the zone's name.
    pub period: String,
    pub timezone: String,
    pub generated_at: DateTime<Utc>,
    pub hosts: Vec<HostRecord>,
    /// Hourly rollups of the 24 hours before `at`.
    pub hours: Vec<Rollup>,
    /// Alerts open at `at`.
    pub open_alerts: Vec<Alert>,
    /// Use the hosts' silent flags (a report of now); otherwise a host is silent when it
    /// has no sample in the hour before `at` (a backfill).
    pub live: bool,
    /// A sample older than two intervals plus this is stale: the silence sweep's
    /// `silence.check_grace`, so the report and the collector agree on what is overdue.
    pub stale_grace: std::time::Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailySummary {
    pub hosts: u64,
    pub hosts_ok: u64,
    pub hosts_warning: u64,
    pub hosts_critical: u64,
    pub hosts_unknown: u64,
    pub silent_agents: u64,
    pub open_alerts: u64,
    pub backups_24h: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostLine {
    pub host: String,
    pub status: Status,
    pub silent: bool,
    pub checks: u64,
    pub checks_not_ok: u64,
    pub last_contact: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertLine {
    pub id: i64,
    pub host: String,
    pub check: String,
    pub severity: String,
    pub status: Status,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub age_secs: i64,
    pub acknowledged_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupLine {
    pub host: String,
    pub check: String,
    pub status: Status,
    pub backups_24h: i64,
    pub newest_at: Option<DateTime<Utc>>,
    pub newest_age_secs: Option<i64>,
    pub newest_size_bytes: Option<i64>,
    pub files: Option<i64>,
    pub total_bytes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageLine {
    pub host: String,
    pub check: String,
    /// `filesystem` (a `disk.*` check) or `archive` (a WAL archive directory).
    pub kind: String,
    pub status: Status,
    pub used_bytes: Option<i64>,
    pub capacity_bytes: Option<i64>,
    pub used_pct: Option<f64>,
    pub change_24h_bytes: Option<i64>,
    /// Archive directories: age of the oldest segment kept.
    pub retention_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalLine {
    pub host: String,
    pub check: String,
    pub status: Status,
    /// Largest archive delay (oldest waiting segment) in the newest hour with a sample.
    pub delay_secs_last_hour: Option<i64>,
    pub delay_secs_max_24h: Option<i64>,
    pub archived_24h: i64,
    pub failed_24h: i64,
    pub wal_bytes_24h: i64,
}

/// One cluster's recoverability over the 24 hours (docs/checks.md R31, R32): a WAL check's
/// data at risk, or an archive check's recoverable window.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryLine {
    pub host: String,
    pub check: String,
    pub status: Status,
    /// WAL checks: the largest data at risk in the 24 hours, and in the newest hour.
    pub data_at_risk_secs_max_24h: Option<i64>,
    pub data_at_risk_secs_last_hour: Option<i64>,
    /// Archive checks: the narrowest recoverable window in the 24 hours.
    pub window_secs_min_24h: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SilentLine {
    pub host: String,
    pub last_contact: DateTime<Utc>,
    pub silent_for_secs: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyReport {
    pub kind: &'static str,
    pub title: String,
    pub period: String,
    pub timezone: String,
    pub at: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub summary: DailySummary,
    pub hosts: Vec<HostLine>,
    pub open_alerts: Vec<AlertLine>,
    pub backups: Vec<BackupLine>,
    pub storage: Vec<StorageLine>,
    pub wal: Vec<WalLine>,
    /// Data at risk first (largest first), then recoverable windows (narrowest first).
    pub recovery: Vec<RecoveryLine>,
    pub silent_agents: Vec<SilentLine>,
}

/// The rows of one check in the window, oldest first.
struct CheckRows<'a> {
    rows: Vec<&'a Rollup>,
}

impl CheckRows<'_> {
    fn last(&self) -> &Rollup {
        self.rows[self.rows.len() - 1]
    }

    fn status(&self, at: DateTime<Utc>, silent: bool, grace: std::time::Duration) -> Status {
        let last = self.last();
        // As the silence sweep judges it; a check with no interval (`disk.agent-spool`, sent
        // on a change) is never stale, however old its newest sample.
        let interval = u32::try_from(last.interval_secs.max(0)).unwrap_or(u32::MAX);
        let stale = crate::silence::overdue_after(interval, grace)
            .is_some_and(|after| at.timestamp_millis() - last.last_at > after.as_millis() as i64);
        if silent || stale {
            Status::Unknown
        } else {
            last.status_last
        }
    }

    fn sum(&self, f: impl Fn(&Rollup) -> i64) -> i64 {
        self.rows.iter().map(|r| f(r)).sum()
    }

    fn max(&self, f: impl Fn(&Rollup) -> Option<i64>) -> Option<i64> {
        self.rows.iter().filter_map(|r| f(r)).max()
    }

    fn min(&self, f: impl Fn(&Rollup) -> Option<i64>) -> Option<i64> {
        self.rows.iter().filter_map(|r| f(r)).min()
    }

    /// The newest value a row has for `f`.
    fn latest<T: Copy>(&self, f: impl Fn(&Rollup) -> Option<T>) -> Option<T> {
        self.rows.iter().rev().find_map(|r| f(r))
    }

    fn first<T: Copy>(&self, f: impl Fn(&Rollup) -> Option<T>) -> Option<T> {
        self.rows.iter().find_map(|r| f(r))
    }
}

fn time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

pub fn build(input: DailyInput) -> DailyReport {
    let at = input.at;
    let at_ms = at.timestamp_millis();
    let mut by_host: BTreeMap<&str, BTreeMap<&str, CheckRows>> = BTreeMap::new();
    for r in input.hours.iter().filter(|r| r.bucket_start < at_ms) {
        by_host
            .entry(r.host.as_str())
            .or_default()
            .entry(r.check.as_str())
            .or_insert_with(|| CheckRows { rows: Vec::new() })
            .rows
            .push(r);
    }
    let mut summary = DailySummary {
        hosts: 0,
        hosts_ok: 0,
        hosts_warning: 0,
        hosts_critical: 0,
        hosts_unknown: 0,
        silent_agents: 0,
        open_alerts: input.open_alerts.len() as u64,
        backups_24h: 0,
    };
    let (mut hosts, mut backups, mut storage, mut wal, mut silent_agents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recovery = Vec::new();
    let empty = BTreeMap::new();
    for h in &input.hosts {
        let checks = by_host.get(h.host.as_str()).unwrap_or(&empty);
        let silent = if input.live {
            h.silent
        } else {
            !checks
                .values()
                .any(|c| at_ms - c.last().last_at <= 3_600_000)
        };
        let statuses: Vec<Status> = checks
            .values()
            .map(|c| c.status(at, silent, input.stale_grace))
            .collect();
        let worst = statuses
            .iter()
            .copied()
            .max_by_key(|s| s.rank())
            .unwrap_or(Status::Unknown);
        let status = if silent { Status::Unknown } else { worst };
        summary.hosts += 1;
        match status {
            Status::Ok => summary.hosts_ok += 1,
            Status::Warning => summary.hosts_warning += 1,
            Status::Critical => summary.hosts_critical += 1,
            Status::Unknown => summary.hosts_unknown += 1,
        }
        if silent {
            summary.silent_agents += 1;
            silent_agents.push(SilentLine {
                host: h.host.clone(),
                last_contact: h.last_contact,
                silent_for_secs: (at - h.last_contact).num_seconds().max(0),
            });
        }
        hosts.push(HostLine {
            host: h.host.clone(),
            status,
            silent,
            checks: statuses.len() as u64,
            checks_not_ok: statuses.iter().filter(|s| **s != Status::Ok).count() as u64,
            last_contact: h.last_contact,
        });
        for (check, rows) in checks {
            let last = rows.last();
            let status = rows.status(at, silent, input.stale_grace);
            let risk = rows.max(|r| r.risk_secs_max);
            let window = rows.min(|r| r.window_secs_min);
            if risk.is_some() || window.is_some() {
                recovery.push(RecoveryLine {
                    host: h.host.clone(),
                    check: check.to_string(),
                    status,
                    data_at_risk_secs_max_24h: risk,
                    data_at_risk_secs_last_hour: risk.and(last.risk_secs_max),
                    window_secs_min_24h: window,
                });
            }
            match last.probe_kind() {
                // A backup tool's newest backup (the stalest set's) as a directory's newest file.
                Some(ProbeKind::Backup | ProbeKind::PgBackRest | ProbeKind::Barman) => {
                    let newest = rows.latest(|r| r.newest_mtime);
                    let n = rows.sum(|r| r.new_backups);
                    summary.backups_24h += n;
                    backups.push(BackupLine {
                        host: h.host.clone(),
                        check: check.to_string(),
                        status,
                        backups_24h: n,
                        newest_at: newest.and_then(time),
                        newest_age_secs: newest.map(|m| (at_ms - m) / 1000),
                        newest_size_bytes: rows.latest(|r| r.newest_size_bytes),
                        files: rows.latest(|r| r.files_last),
                        total_bytes: rows.latest(|r| r.used_bytes_last),
                    });
                }
                Some(ProbeKind::Disk | ProbeKind::Archive) => {
                    let used = rows.latest(|r| r.used_bytes_last);
                    let capacity = rows.latest(|r| r.capacity_bytes);
                    let first = rows.first(|r| r.used_bytes_last);
                    let used_pct = used
                        .zip(capacity)
                        .and_then(|(u, c)| super::stats::df_pct(u, c));
                    let is_disk = last.probe_kind() == Some(ProbeKind::Disk);
                    storage.push(StorageLine {
                        host: h.host.clone(),
                        check: check.to_string(),
                        kind: if is_disk { "filesystem" } else { "archive" }.into(),
                        status,
                        used_bytes: used,
                        capacity_bytes: capacity,
                        used_pct,
                        change_24h_bytes: used.zip(first).map(|(u, f)| u - f),
                        retention_secs: if is_disk {
                            None
                        } else {
                            rows.latest(|r| r.newest_age_secs)
                        },
                    });
                }
                Some(ProbeKind::Wal) => wal.push(WalLine {
                    host: h.host.clone(),
                    check: check.to_string(),
                    status,
                    delay_secs_last_hour: last.delay_secs_max,
                    delay_secs_max_24h: rows.max(|r| r.delay_secs_max),
                    archived_24h: rows.sum(|r| r.archived_delta),
                    failed_24h: rows.sum(|r| r.failed_delta),
                    wal_bytes_24h: rows.sum(|r| r.wal_bytes),
                }),
                _ => {}
            }
        }
    }
    // Worst first, then by name: what needs a look comes first.
    hosts.sort_by(|a, b| {
        b.status
            .rank()
            .cmp(&a.status.rank())
            .then(a.host.cmp(&b.host))
    });
    storage.sort_by(|a, b| {
        b.used_pct
            .unwrap_or(-1.0)
            .total_cmp(&a.used_pct.unwrap_or(-1.0))
            .then(a.host.cmp(&b.host))
    });
    // Largest data at risk first, then the narrowest windows.
    fn key(l: &RecoveryLine) -> (Option<i64>, Option<i64>, &str, &str) {
        (
            l.data_at_risk_secs_max_24h,
            l.window_secs_min_24h,
            &l.host,
            &l.check,
        )
    }
    recovery.sort_by(|a, b| super::stats::recovery_order(key(a), key(b)));
    let mut open_alerts: Vec<AlertLine> = input
        .open_alerts
        .iter()
        .map(|a| AlertLine {
            id: a.id,
            host: a.fields.host.clone(),
            check: if a.fields.check == AGENT_CHECK {
                "agent (silent)".into()
            } else {
                a.fields.check.clone()
            },
            severity: a.fields.severity.as_str().into(),
            status: a.fields.status,
            summary: a.fields.summary.clone(),
            opened_at: a.fields.opened_at,
            age_secs: (at - a.fields.opened_at).num_seconds().max(0),
            acknowledged_by: a.acknowledged.as_ref().map(|m| m.by.clone()),
        })
        .collect();
    // Critical first (the text, not the enum: "warning" sorts after "critical"), then oldest.
    let rank = |severity: &str| u8::from(severity == Severity::Critical.as_str());
    open_alerts.sort_by(|a, b| {
        rank(&b.severity)
            .cmp(&rank(&a.severity))
            .then(b.age_secs.cmp(&a.age_secs))
    });
    DailyReport {
        kind: "daily",
        title: format!("Backwatch daily report {}", input.period),
        period: input.period,
        timezone: input.timezone,
        at,
        window_start: at - TimeDelta::hours(24),
        generated_at: input.generated_at,
        summary,
        hosts,
        open_alerts,
        backups,
        storage,
        wal,
        recovery,
        silent_agents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::reports::Period;

    /// The newest sample of `check`, `age_secs` before `at`, ok, sent every `interval_secs`.
    fn sample(at: DateTime<Utc>, age_secs: i64, interval_secs: i64) -> Rollup {
        let last_at = at.timestamp_millis() - age_secs * 1000;
        let mut r = Rollup::empty(
            "db1",
            "disk.x",
            Period::Hour,
            last_at - 60_000,
            ProbeKind::Disk,
        );
        r.samples = 1;
        r.status_last = Status::Ok;
        r.last_at = last_at;
        r.interval_secs = interval_secs;
        r
    }

    fn status(r: &Rollup, at: DateTime<Utc>, silent: bool) -> Status {
        CheckRows { rows: vec![r] }.status(at, silent, std::time::Duration::from_secs(300))
    }

    #[test]
    fn a_sample_older_than_two_intervals_plus_five_minutes_is_unknown() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(status(&sample(at, 420, 60), at, false), Status::Ok);
        assert_eq!(status(&sample(at, 421, 60), at, false), Status::Unknown);
    }

    #[test]
    fn staleness_takes_the_collectors_check_grace() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let r = sample(at, 600, 60);
        let rows = CheckRows { rows: vec![&r] };
        let grace = |m: u64| std::time::Duration::from_secs(m * 60);
        assert_eq!(rows.status(at, false, grace(5)), Status::Unknown);
        assert_eq!(rows.status(at, false, grace(15)), Status::Ok);
    }

    #[test]
    fn a_check_without_interval_is_never_stale_but_silence_still_counts() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        // 23 hours old, interval 0 (disk.agent-spool): still its own status.
        let r = sample(at, 23 * 3600, 0);
        assert_eq!(status(&r, at, false), Status::Ok);
        assert_eq!(status(&r, at, true), Status::Unknown);
    }
}
