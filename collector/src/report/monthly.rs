//! The monthly review: performance, issues and capacity over one month. Pure: [`build`]
//! turns the month's daily rollups and the alerts opened in it into a [`MonthlyReport`].
//!
//! Invariants:
//! - growth is the Theil–Sen slope of each day's last measurement (bytes per day), so a
//!   cleanup or a spike moves it little; projections count from the newest measurement;
//! - archive lag statistics are over hourly maxima of the archive delay (the oldest waiting
//!   segment's age), kept in the daily rollups: median, p95 (nearest rank) and max per check;
//! - an alert is a false positive when someone marked it so, or when it resolved by itself
//!   (nobody acknowledged it) within `self_resolved_window`; each alert counts once;
//! - response times: acknowledgement and resolution, from opening; median and p90.

use super::stats::{crossing, median, needed, quantile, round, round_to, slope_per_day};
use crate::store::alerts::{AGENT_CHECK, Alert, Severity};
use crate::store::reports::{DAY_MS, Rollup};
use backwatch_proto::model::ProbeKind;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct MonthlyInput {
    /// `2026-02`.
    pub period: String,
    pub timezone: Tz,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// Daily rollups of the month (UTC days overlapping `[start, end)`).
    pub days: Vec<Rollup>,
    pub alerts: Vec<Alert>,
    pub self_resolved_window: Duration,
    /// (host, WAL check) → the drills (host, check) that restore that cluster, matched by
    /// system identifier (`api::recovery::drills_of`); WAL checks without a known identifier
    /// are absent.
    pub drills_of: BTreeMap<(String, String), Vec<(String, String)>>,
    /// (host, WAL check) → its data-at-risk limit in seconds, as its latest verdict applied
    /// it (`max_data_at_risk_secs`: the host's thresholds); the procedure's 15 min otherwise.
    pub risk_limits: BTreeMap<(String, String), i64>,
}

/// The data-at-risk limit of a WAL check whose verdict did not say (R31's default).
const DEFAULT_RISK_LIMIT_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, Serialize)]
pub struct MonthlySummary {
    pub hosts: u64,
    pub alerts: u64,
    pub false_positives: u64,
    pub false_positive_rate: Option<f64>,
    pub ack_median_secs: Option<f64>,
    pub ack_p90_secs: Option<f64>,
    pub resolve_median_secs: Option<f64>,
    pub resolve_p90_secs: Option<f64>,
    pub filesystem_used_bytes: i64,
    pub filesystem_growth_bytes_per_day: f64,
    pub wal_bytes_per_day: f64,
}

/// A rollup's kind by its one name, also for a row an older collector sharing the database
/// still wrote under the name used before migration 0012; as stored when unknown.
fn kind_name(r: &Rollup) -> String {
    r.probe_kind()
        .map_or_else(|| r.kind.clone(), |k| k.name().to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupTrend {
    pub host: String,
    pub check: String,
    /// The check's kind: `backup` (newest file's size and time), `archive` (base backup
    /// durations from the newest backup history file), `pgbackrest` or `barman`.
    pub source: String,
    pub backups: i64,
    pub days: u64,
    pub newest_size_bytes: Option<i64>,
    pub size_trend_bytes_per_day: Option<f64>,
    /// Median local time of day the newest backup file was written (`HH:MM`).
    pub typical_time: Option<String>,
    pub duration_median_secs: Option<f64>,
    pub duration_max_secs: Option<i64>,
    pub duration_trend_secs_per_day: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageTrend {
    pub host: String,
    pub check: String,
    /// `filesystem`, else the check's kind (`backup`, `archive`).
    pub kind: String,
    pub days: u64,
    pub used_bytes_first: Option<i64>,
    pub used_bytes_last: Option<i64>,
    pub capacity_bytes: Option<i64>,
    pub used_pct_last: Option<f64>,
    pub used_pct_max: Option<f64>,
    pub growth_bytes_per_day: Option<f64>,
    pub projected_75_at: Option<DateTime<Utc>>,
    pub projection_75: String,
    pub projected_85_at: Option<DateTime<Utc>>,
    pub projection_85: String,
    pub needed_3m_bytes: Option<f64>,
    pub needed_6m_bytes: Option<f64>,
    pub needed_12m_bytes: Option<f64>,
    /// Which filesystem a disk check measured: fleet totals count it once per host.
    #[serde(skip)]
    pub filesystem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagLine {
    pub host: String,
    pub check: String,
    pub hours: u64,
    pub median_secs: Option<f64>,
    pub p95_secs: Option<f64>,
    pub max_secs: Option<i64>,
    /// Segments archived and attempts failed over the month (pg_stat_archiver's counters,
    /// summed per sample; a statistics reset restarts from 0), and the success rate.
    pub archived: i64,
    pub failed: i64,
    pub success_pct: Option<f64>,
    /// archive_command latency (ms: a segment's hand-over to its archived time), median and
    /// p95 over the month's hourly maxima.
    pub latency_median_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// One drill's month (docs/checks.md R33): how many ran and passed, and the recovery times
/// measured (one per day at most: the day's last).
#[derive(Debug, Clone, Serialize)]
pub struct DrillLine {
    pub host: String,
    pub check: String,
    pub drills: i64,
    pub passed: i64,
    /// Restored, with a warning (over its RTO, scratch left behind).
    pub warned: i64,
    pub failed: i64,
    pub rto_median_secs: Option<f64>,
    pub rto_p90_secs: Option<f64>,
    pub rto_max_secs: Option<i64>,
}

/// A cluster (a WAL check with rows this month) that no restore drill proved this month.
#[derive(Debug, Clone, Serialize)]
pub struct NotDrilled {
    pub host: String,
    pub check: String,
    /// The drills that restore this cluster but did not run, or that none does.
    pub drills: String,
}

/// One cluster's recoverability over the month (docs/checks.md R31, R32): the worst data at
/// risk of a WAL check, the narrowest recoverable window of an archive check.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverabilityLine {
    pub host: String,
    pub check: String,
    /// Days with the figure.
    pub days: u64,
    pub data_at_risk_secs_max: Option<i64>,
    /// Days whose largest data at risk was above the check's limit (a busy primary has
    /// seconds at risk at every sample: above 0 would be every day).
    pub days_over_data_at_risk_limit: u64,
    pub window_secs_min: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalVolume {
    pub host: String,
    pub check: String,
    pub days: u64,
    pub total_bytes: i64,
    pub mean_bytes_per_day: f64,
    pub trend_bytes_per_day_per_day: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertCount {
    /// A check id (`alerts_by_check`) or a host name (`alerts_by_host`).
    pub key: String,
    pub alerts: u64,
    pub critical: u64,
    pub false_positives: u64,
    pub acknowledged: u64,
}

/// One UTC day of the fleet, for the charts and spreadsheets.
#[derive(Debug, Clone, Serialize)]
pub struct DayPoint {
    pub day: String,
    pub filesystem_used_bytes: i64,
    pub wal_bytes: i64,
    pub alerts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthlyReport {
    pub kind: &'static str,
    pub title: String,
    pub period: String,
    pub timezone: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub self_resolved_window_secs: u64,
    pub summary: MonthlySummary,
    pub storage: Vec<StorageTrend>,
    pub backups: Vec<BackupTrend>,
    pub archive_lag: Vec<LagLine>,
    pub wal_volume: Vec<WalVolume>,
    /// Worst data at risk first, then the narrowest windows.
    pub recoverability: Vec<RecoverabilityLine>,
    /// Restore drills: failures first, then the longest recovery time.
    pub drills: Vec<DrillLine>,
    /// Clusters with a WAL check that no drill proved this month.
    pub not_drilled: Vec<NotDrilled>,
    pub alerts_by_check: Vec<AlertCount>,
    pub alerts_by_host: Vec<AlertCount>,
    pub days: Vec<DayPoint>,
}

fn day_x(r: &Rollup) -> f64 {
    r.bucket_start as f64 / DAY_MS as f64
}

fn opt_round(v: Option<f64>) -> Option<f64> {
    v.map(round)
}

/// A filesystem of a host for fleet totals: the one measured, else (rows from before the
/// filesystem was recorded) the check itself.
fn fs_key<'a>(filesystem: &'a Option<String>, check: &'a str) -> &'a str {
    filesystem.as_deref().unwrap_or(check)
}

fn storage_trend(rows: &[&Rollup]) -> Option<StorageTrend> {
    let last = rows.last()?;
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.used_bytes_last.map(|u| (day_x(r), u as f64)))
        .collect();
    let slope = slope_per_day(&points);
    let used_last = rows.iter().rev().find_map(|r| r.used_bytes_last);
    let capacity = rows.iter().rev().find_map(|r| r.capacity_bytes);
    let last_at = DateTime::from_timestamp_millis(last.last_at).unwrap_or_default();
    let ((p75, w75), (p85, w85)) = match capacity {
        Some(c) if last.probe_kind() == Some(ProbeKind::Disk) && c > 0 => (
            crossing(&points, c as f64, 75.0, last_at),
            crossing(&points, c as f64, 85.0, last_at),
        ),
        _ => (
            (None, "no capacity known".to_string()),
            (None, "no capacity known".to_string()),
        ),
    };
    let used = used_last.unwrap_or(0) as f64;
    let filesystem = rows.iter().rev().find_map(|r| r.filesystem.clone());
    Some(StorageTrend {
        filesystem,
        host: last.host.clone(),
        check: last.check.clone(),
        kind: match last.probe_kind() {
            Some(ProbeKind::Disk) => "filesystem".into(),
            _ => kind_name(last),
        },
        days: rows.len() as u64,
        used_bytes_first: rows.iter().find_map(|r| r.used_bytes_last),
        used_bytes_last: used_last,
        capacity_bytes: capacity,
        used_pct_last: used_last
            .zip(capacity)
            .and_then(|(u, c)| super::stats::df_pct(u, c)),
        used_pct_max: rows
            .iter()
            .filter_map(|r| r.used_pct_max)
            .max_by(f64::total_cmp)
            .map(|p| round_to(p, 1)),
        growth_bytes_per_day: opt_round(slope),
        projected_75_at: p75,
        projection_75: w75,
        projected_85_at: p85,
        projection_85: w85,
        needed_3m_bytes: opt_round(needed(used, slope, 3.0)),
        needed_6m_bytes: opt_round(needed(used, slope, 6.0)),
        needed_12m_bytes: opt_round(needed(used, slope, 12.0)),
    })
}

fn backup_trend(rows: &[&Rollup], tz: Tz) -> Option<BackupTrend> {
    let last = rows.last()?;
    // When backups end: a directory's newest file, a tool's newest backup (an archive
    // directory's newest file is a WAL segment, not a backup).
    let is_dir = matches!(
        last.probe_kind(),
        Some(ProbeKind::Backup | ProbeKind::PgBackRest | ProbeKind::Barman)
    );
    let size_points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.newest_size_bytes.map(|s| (day_x(r), s as f64)))
        .collect();
    let mut mtimes: Vec<i64> = rows.iter().filter_map(|r| r.newest_mtime).collect();
    mtimes.dedup();
    let minutes: Vec<f64> = mtimes
        .iter()
        .filter_map(|m| DateTime::from_timestamp_millis(*m))
        .map(|t| {
            let local = t.with_timezone(&tz);
            f64::from(chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local))
        })
        .collect();
    let durations: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.duration_secs.map(|d| (day_x(r), d as f64)))
        .collect();
    let duration_values: Vec<f64> = durations.iter().map(|p| p.1).collect();
    Some(BackupTrend {
        host: last.host.clone(),
        check: last.check.clone(),
        source: kind_name(last),
        backups: rows.iter().map(|r| r.new_backups).sum(),
        days: rows.len() as u64,
        newest_size_bytes: rows.iter().rev().find_map(|r| r.newest_size_bytes),
        size_trend_bytes_per_day: opt_round(slope_per_day(&size_points)),
        typical_time: if is_dir {
            typical_minute(&minutes).map(|m| {
                let m = (m.round() as i64).rem_euclid(DAY_MINUTES as i64);
                format!("{:02}:{:02}", m / 60, m % 60)
            })
        } else {
            None
        },
        duration_median_secs: opt_round(median(&duration_values)),
        duration_max_secs: rows.iter().filter_map(|r| r.duration_secs).max(),
        duration_trend_secs_per_day: slope_per_day(&durations).map(|s| round_to(s, 1)),
    })
}

fn lag(rows: &[&Rollup]) -> Option<LagLine> {
    let last = rows.last()?;
    let archived: i64 = rows.iter().map(|r| r.archived_delta).sum();
    let failed: i64 = rows.iter().map(|r| r.failed_delta).sum();
    let hourly: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.delay_hourly.iter().flatten().map(|d| *d as f64))
        .collect();
    let latencies: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.latency_hourly.iter().flatten().map(|d| *d as f64))
        .collect();
    Some(LagLine {
        host: last.host.clone(),
        check: last.check.clone(),
        hours: hourly.len() as u64,
        median_secs: median(&hourly),
        p95_secs: quantile(&hourly, 0.95),
        max_secs: rows.iter().filter_map(|r| r.delay_secs_max).max(),
        archived,
        failed,
        success_pct: (archived + failed > 0)
            .then(|| round_to(100.0 * archived as f64 / (archived + failed) as f64, 2)),
        latency_median_ms: median(&latencies),
        latency_p95_ms: quantile(&latencies, 0.95),
    })
}

fn volume(rows: &[&Rollup]) -> Option<WalVolume> {
    let last = rows.last()?;
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (day_x(r), r.wal_bytes as f64))
        .collect();
    let total: i64 = rows.iter().map(|r| r.wal_bytes).sum();
    Some(WalVolume {
        host: last.host.clone(),
        check: last.check.clone(),
        days: rows.len() as u64,
        total_bytes: total,
        mean_bytes_per_day: round(total as f64 / rows.len().max(1) as f64),
        trend_bytes_per_day_per_day: opt_round(slope_per_day(&points)),
    })
}

/// Is `a` a false positive: marked so, or resolved by itself (never acknowledged) within
/// `window` of opening?
pub fn is_false_positive(a: &Alert, window: Duration) -> bool {
    let self_resolved = a.acknowledged.is_none()
        && a.fields
            .resolved_at
            .is_some_and(|r| (r - a.fields.opened_at).to_std().is_ok_and(|d| d <= window));
    a.false_positive.is_some() || self_resolved
}

fn count_alerts<'a>(
    alerts: impl Iterator<Item = (String, &'a Alert)>,
    window: Duration,
) -> Vec<AlertCount> {
    let mut by: BTreeMap<String, AlertCount> = BTreeMap::new();
    for (key, a) in alerts {
        let c = by.entry(key.clone()).or_insert_with(|| AlertCount {
            key,
            alerts: 0,
            critical: 0,
            false_positives: 0,
            acknowledged: 0,
        });
        c.alerts += 1;
        c.critical += u64::from(a.fields.peak_severity == Severity::Critical);
        c.false_positives += u64::from(is_false_positive(a, window));
        c.acknowledged += u64::from(a.acknowledged.is_some());
    }
    let mut v: Vec<AlertCount> = by.into_values().collect();
    v.sort_by(|a, b| b.alerts.cmp(&a.alerts).then(a.key.cmp(&b.key)));
    v
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

pub fn build(mut input: MonthlyInput) -> MonthlyReport {
    let window = input.self_resolved_window;
    // Not a capacity measurement (see AGENT_SPOOL_CHECK): neither a line nor in the totals.
    input.days.retain(|r| r.check != super::AGENT_SPOOL_CHECK);
    let mut by_check: BTreeMap<(&str, &str), Vec<&Rollup>> = BTreeMap::new();
    for r in &input.days {
        by_check
            .entry((r.host.as_str(), r.check.as_str()))
            .or_default()
            .push(r);
    }
    let (mut storage, mut backups, mut archive_lag, mut wal_volume) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recoverability = Vec::new();
    let mut drills = Vec::new();
    let mut wal_checks = Vec::new();
    let mut hosts = std::collections::BTreeSet::new();
    for ((host, check), rows) in &by_check {
        hosts.insert(*host);
        let risks: Vec<i64> = rows.iter().filter_map(|r| r.risk_secs_max).collect();
        let windows: Vec<i64> = rows.iter().filter_map(|r| r.window_secs_min).collect();
        if !risks.is_empty() || !windows.is_empty() {
            recoverability.push(RecoverabilityLine {
                host: host.to_string(),
                check: check.to_string(),
                days: risks.len().max(windows.len()) as u64,
                data_at_risk_secs_max: risks.iter().copied().max(),
                days_over_data_at_risk_limit: {
                    let limit = input
                        .risk_limits
                        .get(&(host.to_string(), check.to_string()))
                        .copied()
                        .unwrap_or(DEFAULT_RISK_LIMIT_SECS);
                    risks.iter().filter(|r| **r > limit).count() as u64
                },
                window_secs_min: windows.iter().copied().min(),
            });
        }
        let Some(kind) = rows.last().and_then(|r| r.probe_kind()) else {
            continue;
        };
        match kind {
            ProbeKind::Disk => storage.extend(storage_trend(rows)),
            ProbeKind::Backup => {
                storage.extend(storage_trend(rows));
                backups.extend(backup_trend(rows, input.timezone));
            }
            ProbeKind::PgBackRest | ProbeKind::Barman => {
                backups.extend(backup_trend(rows, input.timezone));
            }
            ProbeKind::Archive => {
                storage.extend(storage_trend(rows));
                if rows.iter().any(|r| r.duration_secs.is_some()) {
                    backups.extend(backup_trend(rows, input.timezone));
                }
                wal_volume.extend(volume(rows));
            }
            ProbeKind::Drill => drills.push(drill_month(rows)),
            ProbeKind::Wal => {
                wal_checks.push((*host, *check));
                archive_lag.extend(lag(rows));
                wal_volume.extend(volume(rows));
            }
            ProbeKind::Restore | ProbeKind::Settings => {}
        }
    }
    // Days of the fleet: filesystems' used bytes, WAL archived (archive directories when a
    // host has one, else what pg_stat_archiver counted, so no byte is counted twice).
    let has_archive_dir: std::collections::BTreeSet<&str> = input
        .days
        .iter()
        .filter(|r| r.probe_kind() == Some(ProbeKind::Archive))
        .map(|r| r.host.as_str())
        .collect();
    let mut days: BTreeMap<i64, DayPoint> = BTreeMap::new();
    // (day, host, filesystem) already counted: two checks on one filesystem are one.
    let mut counted = std::collections::BTreeSet::new();
    let day_name = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    for r in &input.days {
        let d = days.entry(r.bucket_start).or_insert_with(|| DayPoint {
            day: day_name(r.bucket_start),
            filesystem_used_bytes: 0,
            wal_bytes: 0,
            alerts: 0,
        });
        match r.probe_kind() {
            Some(ProbeKind::Disk)
                if counted.insert((r.bucket_start, &r.host, fs_key(&r.filesystem, &r.check))) =>
            {
                d.filesystem_used_bytes += r.used_bytes_last.unwrap_or(0)
            }
            Some(ProbeKind::Archive) => d.wal_bytes += r.wal_bytes,
            Some(ProbeKind::Wal) if !has_archive_dir.contains(r.host.as_str()) => {
                d.wal_bytes += r.wal_bytes
            }
            _ => {}
        }
    }
    for a in &input.alerts {
        let day = a.fields.opened_at.timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
        if let Some(d) = days.get_mut(&day) {
            d.alerts += 1;
        }
    }
    let days: Vec<DayPoint> = days.into_values().collect();

    let fps = input
        .alerts
        .iter()
        .filter(|a| is_false_positive(a, window))
        .count() as u64;
    let acks: Vec<f64> = input
        .alerts
        .iter()
        .filter_map(|a| {
            a.acknowledged
                .as_ref()
                .map(|m| secs(m.at - a.fields.opened_at))
        })
        .collect();
    let resolves: Vec<f64> = input
        .alerts
        .iter()
        .filter_map(|a| a.fields.resolved_at.map(|r| secs(r - a.fields.opened_at)))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let filesystems: Vec<&StorageTrend> = storage
        .iter()
        .filter(|s| {
            s.kind == "filesystem" && seen.insert((&s.host, fs_key(&s.filesystem, &s.check)))
        })
        .collect();
    let wal_days: Vec<f64> = days.iter().map(|d| d.wal_bytes as f64).collect();
    let summary = MonthlySummary {
        hosts: hosts.len() as u64,
        alerts: input.alerts.len() as u64,
        false_positives: fps,
        false_positive_rate: (!input.alerts.is_empty())
            .then(|| round_to(fps as f64 / input.alerts.len() as f64, 4)),
        ack_median_secs: opt_round(median(&acks)),
        ack_p90_secs: opt_round(quantile(&acks, 0.9)),
        resolve_median_secs: opt_round(median(&resolves)),
        resolve_p90_secs: opt_round(quantile(&resolves, 0.9)),
        filesystem_used_bytes: filesystems.iter().filter_map(|s| s.used_bytes_last).sum(),
        filesystem_growth_bytes_per_day: filesystems
            .iter()
            .filter_map(|s| s.growth_bytes_per_day)
            .sum(),
        wal_bytes_per_day: round(wal_days.iter().sum::<f64>() / wal_days.len().max(1) as f64),
    };
    storage.sort_by(|a, b| {
        b.used_pct_last
            .unwrap_or(-1.0)
            .total_cmp(&a.used_pct_last.unwrap_or(-1.0))
            .then(a.host.cmp(&b.host))
            .then(a.check.cmp(&b.check))
    });
    fn key(l: &RecoverabilityLine) -> (Option<i64>, Option<i64>, &str, &str) {
        (
            l.data_at_risk_secs_max,
            l.window_secs_min,
            &l.host,
            &l.check,
        )
    }
    recoverability.sort_by(|a, b| super::stats::recovery_order(key(a), key(b)));
    let not_drilled = not_drilled(&wal_checks, &drills, &input.drills_of);
    drills.sort_by(|a, b| {
        b.failed
            .cmp(&a.failed)
            .then(b.rto_max_secs.cmp(&a.rto_max_secs))
            .then(a.host.cmp(&b.host))
            .then(a.check.cmp(&b.check))
    });
    let check_key = |a: &Alert| {
        if a.fields.check == AGENT_CHECK {
            "agent (silent)".to_string()
        } else {
            a.fields.check.clone()
        }
    };
    MonthlyReport {
        kind: "monthly",
        title: format!("Backwatch monthly review {}", input.period),
        period: input.period,
        timezone: input.timezone.name().to_string(),
        start: input.start,
        end: input.end,
        generated_at: input.generated_at,
        self_resolved_window_secs: window.as_secs(),
        summary,
        storage,
        backups,
        archive_lag,
        wal_volume,
        recoverability,
        drills,
        not_drilled,
        alerts_by_check: count_alerts(input.alerts.iter().map(|a| (check_key(a), a)), window),
        alerts_by_host: count_alerts(
            input.alerts.iter().map(|a| (a.fields.host.clone(), a)),
            window,
        ),
        days,
    }
}

const DAY_MINUTES: f64 = 1440.0;

/// The median time of day of `minutes` (minutes after midnight) on the clock's circle: cut
/// where the largest gap between them is, so backups around midnight (23:55, 00:05) have a
/// typical time near midnight, not noon.
fn typical_minute(minutes: &[f64]) -> Option<f64> {
    let mut sorted = minutes.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // The gap after each one, the last one's across midnight.
    let gap = |i: usize| {
        let next = if i + 1 < n {
            sorted[i + 1]
        } else {
            sorted[0] + DAY_MINUTES
        };
        next - sorted[i]
    };
    let widest = (0..n).max_by(|a, b| gap(*a).total_cmp(&gap(*b)))?;
    let origin = sorted[(widest + 1) % n];
    let shifted: Vec<f64> = sorted
        .iter()
        .map(|m| (m - origin).rem_euclid(DAY_MINUTES))
        .collect();
    median(&shifted).map(|m| (m + origin).rem_euclid(DAY_MINUTES))
}

/// A drill check's month from its day rows: runs, passes and the recovery times.
/// The WAL checks of the month whose cluster no drill of the month restored.
fn not_drilled(
    wal_checks: &[(&str, &str)],
    drills: &[DrillLine],
    drills_of: &BTreeMap<(String, String), Vec<(String, String)>>,
) -> Vec<NotDrilled> {
    let line = |(h, c): &(String, String)| drills.iter().find(|d| &d.host == h && &d.check == c);
    // Restored: a run that did not fail (one that warned, over its RTO, still restored).
    let restored = |k: &(String, String)| line(k).is_some_and(|d| d.drills > d.failed);
    wal_checks
        .iter()
        .filter_map(|(host, check)| {
            let linked = drills_of.get(&(host.to_string(), check.to_string()));
            let drills = match linked {
                Some(l) if l.iter().any(restored) => return None,
                Some(l) if !l.is_empty() => l
                    .iter()
                    .map(|k @ (h, c)| match line(k) {
                        Some(d) if d.drills > 0 => {
                            format!("{c} on {h} failed all {} of its runs", d.drills)
                        }
                        _ => format!("{c} on {h} did not run"),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Some(_) => "no drill restores this cluster".to_string(),
                None => "not known: the WAL check cannot read the system identifier".to_string(),
            };
            Some(NotDrilled {
                host: host.to_string(),
                check: check.to_string(),
                drills,
            })
        })
        .collect()
}

fn drill_month(rows: &[&Rollup]) -> DrillLine {
    let rtos: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.duration_secs)
        .map(|s| s as f64)
        .collect();
    let last = rows[rows.len() - 1];
    DrillLine {
        host: last.host.clone(),
        check: last.check.clone(),
        drills: rows.iter().map(|r| r.samples).sum(),
        passed: rows.iter().map(|r| r.n_ok).sum(),
        warned: rows.iter().map(|r| r.n_warning).sum(),
        failed: rows.iter().map(|r| r.n_critical + r.n_unknown).sum(),
        rto_median_secs: opt_round(median(&rtos)),
        rto_p90_secs: opt_round(quantile(&rtos, 0.9)),
        rto_max_secs: rows.iter().filter_map(|r| r.duration_secs).max(),
    }
}

#[cfg(test)]
#[path = "monthly_tests.rs"]
mod tests;
