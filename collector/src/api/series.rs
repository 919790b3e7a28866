//! `GET /api/v1/hosts/{host}/series?since=7d&points=400`: each check's history as one number
//! per point, for the host page's charts.
//!
//! - `backup.*`: the newest backup's age (seconds), threshold its age limit;
//! - `disk.*`: used % as `df` shows it, thresholds warning and critical %;
//! - `wal.*`: archive delay (seconds; age of the oldest segment waiting, 0 when none
//!   waits), threshold the maximum delay, plus failed archive attempts since the sample before;
//! - `drill.*`: the measured recovery time (RTO, seconds), warning line `max_rto`;
//! - `pgbackrest.*`, `barman.*`: three series, as for the stalest stanza or server: the newest
//!   backup's age (critical line its age limit), how long the newest full backup took
//!   (`full_backup_duration_secs`, warning line `max_duration`) and the newest backup's size
//!   (`backup_size_bytes`).
//!
//! Invariants: values are read from the stored observations, so a chart never depends on
//! how a verdict was worded; at most `points` points per check (default 400, at most 2000),
//! each the *worst* of its time bucket (highest value, worst status, failures summed), so a
//! spike is never averaged away; a check with more than [`PAGE`] results in the window is
//! sampled, one result per bucket, and says so (`sampled`).

use super::{ApiError, ApiState, parse_since};
use crate::status::Status;
use crate::store::HistoryEntry;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use backwatch_proto::model::{Observation, ProbeKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Results read in one go; a window holding more is sampled.
const PAGE: u32 = 5000;
const DEFAULT_POINTS: u32 = 400;
const MAX_POINTS: u32 = 2000;

#[derive(Deserialize)]
pub struct SeriesQuery {
    since: Option<String>,
    points: Option<u32>,
}

/// One point: time (Unix ms), value (null: nothing measured), status, failures since the
/// previous point. An array, not an object: a week of many checks stays small.
type Point = (i64, Option<f64>, Status, i64);

#[derive(Serialize)]
pub struct Series {
    check: String,
    /// `newest_backup_age_secs`, `used_pct`, `archive_delay_secs`, `rto_secs`,
    /// `full_backup_duration_secs`, `backup_size_bytes`, or `none`.
    measure: &'static str,
    /// Warning and critical lines in the unit of the measure (null: none).
    warning: Option<f64>,
    critical: Option<f64>,
    sampled: bool,
    points: Vec<Point>,
}

#[derive(Serialize)]
pub struct SeriesView {
    host: String,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    series: Vec<Series>,
}

fn measure_of(check: &str) -> &'static str {
    match ProbeKind::of_check(check) {
        // A backup tool's newest backup of any type: the same curve as a directory's.
        Some(ProbeKind::Backup | ProbeKind::PgBackRest | ProbeKind::Barman) => {
            "newest_backup_age_secs"
        }
        Some(ProbeKind::Disk) => "used_pct",
        Some(ProbeKind::Wal) => "archive_delay_secs",
        Some(ProbeKind::Drill) => "rto_secs",
        _ => "none",
    }
}

/// The extra measures of a backup tool's check, beside its newest backup's age.
const TOOL_MEASURES: [&str; 2] = ["full_backup_duration_secs", "backup_size_bytes"];

/// `measure` of one stored observation: the tool measures, else the check's own
/// ([`value_of`]).
fn measure_value(measure: &str, observation: Option<&Observation>) -> Option<f64> {
    if !TOOL_MEASURES.contains(&measure) {
        return value_of(observation);
    }
    let (Observation::PgBackRest(t) | Observation::Barman(t)) = observation? else {
        return None;
    };
    let set = t.stalest_set()?;
    match measure {
        "full_backup_duration_secs" => set.newest_full.as_ref()?.duration_secs.map(|d| d as f64),
        _ => set.newest.as_ref().map(|b| b.size_bytes as f64),
    }
}

/// The charted number of one stored observation.
pub fn value_of(observation: Option<&Observation>) -> Option<f64> {
    match observation? {
        Observation::Backup(b) => b.newest.as_ref().map(|n| n.age_secs as f64),
        // The stalest set speaks for the check, as its verdict does.
        Observation::PgBackRest(t) | Observation::Barman(t) => t
            .sets
            .iter()
            .filter_map(|s| s.newest.as_ref()?.age_secs)
            .max()
            .map(|a| a as f64),
        Observation::Disk(d) => d.used_pct().map(f64::from),
        // The measured recovery time; a drill that did not get that far has none.
        Observation::Drill(d) => d.rto_ms.map(|ms| ms as f64 / 1000.0),
        // Not a 0 when the waiting files cannot be read.
        Observation::Wal(w) => crate::rules::wal::archive_delay_secs(w).map(|a| a as f64),
        Observation::Archive(_) | Observation::Restore(_) | Observation::Settings(_) => None,
    }
}

fn failed_count(observation: Option<&Observation>) -> Option<i64> {
    match observation? {
        Observation::Wal(w) => Some(w.failed_count),
        _ => None,
    }
}

/// Points of consecutive results, with failures counted against the result before.
fn points_of(measure: &str, entries: &[HistoryEntry]) -> Vec<Point> {
    let mut prev_failed: Option<i64> = None;
    entries
        .iter()
        .map(|e| {
            let obs = e.observation.as_ref();
            let failed = failed_count(obs);
            // A counter that went down was reset (pg_stat_reset_shared): count nothing.
            let new = match (prev_failed, failed) {
                (Some(p), Some(f)) if f > p => f - p,
                _ => 0,
            };
            if failed.is_some() {
                prev_failed = failed;
            }
            (
                e.measured_at.timestamp_millis(),
                measure_value(measure, obs),
                e.status,
                new,
            )
        })
        .collect()
}

/// At most `buckets` points between `from` and `to` (ms): per bucket the latest time, the
/// highest value, the worst status and the sum of failures.
pub fn downsample(points: &[Point], from: i64, to: i64, buckets: u32) -> Vec<Point> {
    let buckets = i64::from(buckets.max(1));
    let width = ((to - from) / buckets).max(1);
    let mut out: Vec<(i64, Point)> = Vec::new();
    for &(t, v, s, f) in points {
        let b = ((t - from) / width).clamp(0, buckets - 1);
        match out.last_mut() {
            Some((lb, p)) if *lb == b => {
                p.0 = p.0.max(t);
                p.1 = match (p.1, v) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if s.rank() > p.2.rank() {
                    p.2 = s;
                }
                p.3 += f;
            }
            _ => out.push((b, (t, v, s, f))),
        }
    }
    out.into_iter().map(|(_, p)| p).collect()
}

pub async fn series(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<SeriesView>, ApiError> {
    let until = Utc::now();
    let since =
        parse_since(q.since.as_deref(), until).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let buckets = q.points.unwrap_or(DEFAULT_POINTS).clamp(1, MAX_POINTS);
    if s.store.host(&host).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no host {host:?}")));
    }
    let limits = s.dashboard.thresholds.get().for_host(&host);
    let (from, to) = (since.timestamp_millis(), until.timestamp_millis());
    let mut out = Vec::new();
    for state in s.store.check_states(Some(&host)).await? {
        let check = state.check;
        let measure = measure_of(&check);
        let (warning, critical) = match measure {
            "used_pct" => (
                Some(f64::from(limits.disk.warning_pct)),
                Some(f64::from(limits.disk.critical_pct)),
            ),
            "archive_delay_secs" => (None, Some(limits.wal.max_delay.as_secs_f64())),
            // The limit the verdict used (collector, agent or procedure default, plus grace).
            "newest_backup_age_secs" => (None, state.details["max_age_secs"].as_f64()),
            "rto_secs" => (state.details["max_rto_secs"].as_f64(), None),
            _ => (None, None),
        };
        let page = s.store.history(&host, Some(&check), since, PAGE).await?;
        let sampled = page.len() >= PAGE as usize;
        let entries = if sampled {
            sample(&s, &host, &check, from, to, buckets).await?
        } else {
            page
        };
        let tool = matches!(
            ProbeKind::of_check(&check),
            Some(ProbeKind::PgBackRest | ProbeKind::Barman)
        );
        out.push(Series {
            measure,
            warning,
            critical,
            sampled,
            points: downsample(&points_of(measure, &entries), from, to, buckets),
            check: check.clone(),
        });
        // A backup tool's check also charts its backups' durations and sizes.
        if tool {
            for extra in TOOL_MEASURES {
                let warning = (extra == "full_backup_duration_secs")
                    .then(|| state.details["max_duration_secs"].as_f64())
                    .flatten();
                out.push(Series {
                    measure: extra,
                    warning,
                    critical: None,
                    sampled,
                    points: downsample(&points_of(extra, &entries), from, to, buckets),
                    check: check.clone(),
                });
            }
        }
    }
    Ok(Json(SeriesView {
        host,
        since,
        until,
        series: out,
    }))
}

/// One result per bucket: the first measured in it.
async fn sample(
    s: &ApiState,
    host: &str,
    check: &str,
    from: i64,
    to: i64,
    buckets: u32,
) -> Result<Vec<HistoryEntry>, ApiError> {
    let width = ((to - from) / i64::from(buckets)).max(1);
    let mut out: Vec<HistoryEntry> = Vec::new();
    for b in 0..i64::from(buckets) {
        let start = DateTime::from_timestamp_millis(from + b * width).unwrap_or_default();
        let end = from + (b + 1) * width;
        let got = s.store.history(host, Some(check), start, 1).await?;
        if let Some(e) = got.into_iter().next()
            && e.measured_at.timestamp_millis() < end
        {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::{
        BackupDirObs, BackupSet, BackupToolObs, DiskObs, NewestFile, ToolBackup, WalObs,
    };

    fn backup(age_secs: Option<i64>) -> Observation {
        Observation::Backup(BackupDirObs {
            newest: age_secs.map(|age_secs| NewestFile {
                path: "/backup/base.tar".into(),
                mtime: DateTime::from_timestamp(0, 0).unwrap(),
                size_bytes: 1,
                age_secs,
            }),
            ..Default::default()
        })
    }

    fn wal(ready_segments: i64, oldest_ready_age_secs: i64, failed_count: i64) -> Observation {
        Observation::Wal(WalObs {
            ready_segments,
            oldest_ready_age_secs: Some(oldest_ready_age_secs),
            failed_count,
            pending_source: backwatch_proto::model::PendingSource::ArchiveStatusdir,
            ..Default::default()
        })
    }

    #[test]
    fn values_come_from_the_typed_observation() {
        assert_eq!(value_of(Some(&backup(Some(3600)))), Some(3600.0));
        assert_eq!(value_of(Some(&backup(None))), None);
        // df: 1000 blocks, 50 reserved, 600 used -> ceil(600 / 950) = 64 %.
        let disk = Observation::Disk(DiskObs {
            total_bytes: 1000,
            free_bytes: 400,
            avail_bytes: 350,
            ..Default::default()
        });
        assert_eq!(value_of(Some(&disk)), Some(64.0));
        assert_eq!(
            value_of(Some(&wal(0, 900, 0))),
            Some(0.0),
            "nothing waits: no delay"
        );
        assert_eq!(value_of(Some(&wal(3, 1200, 0))), Some(1200.0));
        let Observation::Wal(mut unreadable) = wal(0, 0, 0) else {
            unreachable!()
        };
        unreadable.pending_source = backwatch_proto::model::PendingSource::Unavailable;
        assert_eq!(
            value_of(Some(&Observation::Wal(unreadable))),
            None,
            "no 0 when nothing could be read"
        );
        assert_eq!(value_of(None), None);
    }

    #[test]
    fn observations_stored_under_the_old_kind_names_still_chart() {
        let old: Observation = serde_json::from_str(
            r#"{"backup_dir": {"path": "/b", "exists": true, "read_error": null,
                "file_count": 1, "total_bytes": 1, "ignored_files": 0, "entries_scanned": 1,
                "truncated": false, "problem_count": 0, "problems": [],
                "expected_max_age_secs": null, "future_files": 0, "newest_future": null,
                "newest": {"path": "/b/x", "mtime": "2026-12-01T00:00:00Z", "size_bytes": 1,
                           "age_secs": 60}}}"#,
        )
        .unwrap();
        assert_eq!(value_of(Some(&old)), Some(60.0));
        assert_eq!(
            serde_json::to_value(&old).unwrap()["backup"]["newest"]["age_secs"],
            60,
            "shown under the kind's one name"
        );
    }

    fn entry(secs: i64, obs: Observation, status: Status) -> HistoryEntry {
        HistoryEntry {
            result_id: format!("r{secs}"),
            check: "wal.main".into(),
            measured_at: DateTime::from_timestamp(secs, 0).unwrap(),
            received_at: DateTime::from_timestamp(secs, 0).unwrap(),
            status,
            summary: String::new(),
            error: None,
            observation: Some(obs),
        }
    }

    #[test]
    fn a_backup_tools_duration_and_size_come_from_its_stalest_set() {
        let b = |label: &str, kind: &str, age: i64, size: u64, took: i64| ToolBackup {
            label: label.into(),
            kind: kind.into(),
            age_secs: Some(age),
            size_bytes: size,
            duration_secs: Some(took),
            ..Default::default()
        };
        let tool = Observation::PgBackRest(Box::new(BackupToolObs {
            sets: vec![
                BackupSet {
                    name: "fresh".into(),
                    newest: Some(b("a", "full", 60, 10, 5)),
                    newest_full: Some(b("a", "full", 60, 10, 5)),
                    ..Default::default()
                },
                BackupSet {
                    name: "stale".into(),
                    newest: Some(b("c", "incr", 7200, 300, 9)),
                    newest_full: Some(b("b", "full", 86400, 200, 600)),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }));
        assert_eq!(
            measure_value("full_backup_duration_secs", Some(&tool)),
            Some(600.0)
        );
        assert_eq!(measure_value("backup_size_bytes", Some(&tool)), Some(300.0));
        assert_eq!(
            measure_value("newest_backup_age_secs", Some(&tool)),
            Some(7200.0)
        );
    }

    #[test]
    fn failures_are_counted_between_samples_and_resets_count_nothing() {
        let wal = |failed: i64| wal(0, 0, failed);
        let entries = [
            entry(0, wal(5), Status::Ok),
            entry(60, wal(7), Status::Critical),
            entry(120, wal(7), Status::Ok),
            entry(180, wal(1), Status::Ok),
            entry(240, wal(2), Status::Critical),
        ];
        let failures: Vec<i64> = points_of("archive_delay_secs", &entries)
            .iter()
            .map(|p| p.3)
            .collect();
        assert_eq!(failures, [0, 2, 0, 0, 1]);
    }

    #[test]
    fn downsampling_keeps_the_worst_of_each_bucket() {
        let pts = [
            (0, Some(1.0), Status::Ok, 0),
            (10, Some(9.0), Status::Ok, 1),
            (20, Some(2.0), Status::Critical, 2),
            (60, None, Status::Unknown, 0),
            (99, Some(4.0), Status::Warning, 0),
        ];
        let out = downsample(&pts, 0, 100, 2);
        assert_eq!(
            out,
            [
                (20, Some(9.0), Status::Critical, 3),
                (99, Some(4.0), Status::Unknown, 0)
            ]
        );
        assert_eq!(downsample(&pts, 0, 100, 1000).len(), 5);
    }
}
