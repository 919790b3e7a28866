//! `GET /api/v1/trends?days=30`: fleet storage growth per host with a projected full date,
//! WAL archive volume per day and alert counts per day, for the trends page.
//!
//! Invariants:
//! - days are UTC days; each storage sample is the last disk result of its day, so a host
//!   measured hourly or weekly weighs the same;
//! - growth is the Theil–Sen slope of used bytes per day over the window (see `fit`), and the
//!   full date counts from the latest measured use towards the capacity `df` shows (used +
//!   available to non-root users);
//! - archive volume is the growth of `pg_stat_archiver.archived_count` between consecutive
//!   daily samples times the WAL segment size; a counter reset (`stats_reset` moved or the
//!   count went down) contributes nothing for that day rather than a wrong number;
//! - the answer is cached for [`CACHE_FOR`] per `days`: the page may be opened by many people
//!   at once and the query scans the window.

use super::fit::{Projection, project_full};
use super::{ApiError, ApiState};
use crate::store::HistoryEntry;
use crate::store::alerts::{AlertFilter, Severity};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use backwatch_proto::model::{DiskObs, Observation, ProbeKind};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;
const DEFAULT_DAYS: u32 = 30;
const MAX_DAYS: u32 = 366;
/// Alerts read for the per-day counts; beyond this the oldest days are marked incomplete.
const MAX_ALERTS: u32 = 20_000;
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// Answers cached at once, at most. The dashboard asks for four spans (7, 30, 90, 365 days);
/// any other `days` an API client sends is kept too, but only this many and only while fresh,
/// so a client walking through every span cannot pin hundreds of year-long answers.
const CACHED_SPANS: usize = 8;

/// The last answer per `days`, serialised.
#[derive(Default)]
pub struct Cache(Mutex<BTreeMap<u32, (Instant, Arc<str>)>>);

impl Cache {
    fn get(&self, days: u32) -> Option<Arc<str>> {
        let c = self.0.lock().ok()?;
        let (at, body) = c.get(&days)?;
        (at.elapsed() < CACHE_FOR).then(|| body.clone())
    }

    fn put(&self, days: u32, body: Arc<str>) {
        if let Ok(mut c) = self.0.lock() {
            c.retain(|d, (at, _)| *d != days && at.elapsed() < CACHE_FOR);
            while c.len() >= CACHED_SPANS {
                let oldest = c.iter().min_by_key(|(_, (at, _))| *at).map(|(d, _)| *d);
                match oldest {
                    Some(d) => c.remove(&d),
                    None => break,
                };
            }
            c.insert(days, (Instant::now(), body));
        }
    }
}

#[derive(Deserialize)]
pub struct TrendsQuery {
    days: Option<u32>,
}

#[derive(Serialize)]
pub struct StorageSeries {
    host: String,
    check: String,
    path: String,
    /// `[day (Unix ms of 00:00 UTC), used bytes, capacity bytes]`, oldest first.
    points: Vec<(i64, u64, u64)>,
    used_pct: Option<u8>,
    growth_bytes_per_day: Option<f64>,
    projected_full_at: Option<DateTime<Utc>>,
    /// `full in N days`, `full`, `not growing`, `beyond 10 years`, `too few samples`.
    projection: String,
    /// The filesystem measured (device number): fleet totals count it once per host.
    #[serde(skip)]
    filesystem: Option<u64>,
}

#[derive(Serialize)]
pub struct Trends {
    generated_at: DateTime<Utc>,
    since: DateTime<Utc>,
    days: u32,
    fit: &'static str,
    storage: Vec<StorageSeries>,
    /// `[day, used bytes, capacity bytes]` summed over every filesystem (two disk checks of a
    /// host on one filesystem count once), each carried forward from its latest sample so a
    /// missed day is not a dip.
    fleet_storage: Vec<(i64, u64, u64)>,
    /// `[day, bytes, segments]` archived over the fleet.
    archive_per_day: Vec<(i64, u64, u64)>,
    /// `[day, warning, critical]`: alerts opened that day, by peak severity.
    alerts_per_day: Vec<(i64, u32, u32)>,
    /// More alerts than were read: the oldest days may be undercounted.
    alerts_truncated: bool,
}

fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().div_euclid(DAY_MS) * DAY_MS
}

/// The disk observation of a sample, when it measured something.
fn disk_of(obs: Option<&Observation>) -> Option<&DiskObs> {
    match obs? {
        Observation::Disk(d) if d.error.is_none() && d.total_bytes > 0 => Some(d),
        _ => None,
    }
}

/// The device number of a disk observation, when it has one.
fn device_of(obs: Option<&Observation>) -> Option<u64> {
    disk_of(obs).map(|d| d.device_id).filter(|d| *d != 0)
}

/// Used and capacity bytes of a disk observation, as `df` counts them, and what it measured.
fn disk_bytes(obs: Option<&Observation>) -> Option<(u64, u64, String)> {
    let d = disk_of(obs)?;
    let path = d.mount_point.as_deref().unwrap_or(&d.path).to_string();
    Some((d.used_bytes(), d.capacity_bytes(), path))
}

fn group(samples: Vec<(String, HistoryEntry)>) -> BTreeMap<(String, String), Vec<HistoryEntry>> {
    let mut by: BTreeMap<(String, String), Vec<HistoryEntry>> = BTreeMap::new();
    for (host, e) in samples {
        by.entry((host, e.check.clone())).or_default().push(e);
    }
    by
}

fn storage_series(host: String, check: String, entries: &[HistoryEntry]) -> StorageSeries {
    let mut points = Vec::new();
    let mut path = String::new();
    let mut filesystem = None;
    for e in entries {
        if let Some((used, cap, p)) = disk_bytes(e.observation.as_ref()) {
            points.push((day_of(e.measured_at), used, cap));
            path = p;
            filesystem = device_of(e.observation.as_ref()).or(filesystem);
        }
    }
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|&(d, used, _)| (d as f64 / DAY_MS as f64, used as f64))
        .collect();
    let (capacity, used_pct) = points.last().map_or((0.0, None), |&(_, used, cap)| {
        let pct = (cap > 0).then(|| (used.saturating_mul(100).div_ceil(cap)).min(100) as u8);
        (cap as f64, pct)
    });
    let (fit, projection) = project_full(&xy, capacity);
    let last_day = points.last().map_or(0, |p| p.0);
    let (full_at, words) = match projection {
        Projection::FullIn(days) => (
            DateTime::from_timestamp_millis(last_day + (days * DAY_MS as f64) as i64),
            format!("full in {} days", days.round()),
        ),
        Projection::Full => (None, "full".into()),
        Projection::NotGrowing => (None, "not growing".into()),
        Projection::BeyondHorizon => (None, "beyond 10 years".into()),
        Projection::TooFewSamples => (None, "too few samples".into()),
    };
    StorageSeries {
        host,
        check,
        path,
        points,
        used_pct,
        growth_bytes_per_day: fit.map(|f| f.slope),
        projected_full_at: full_at,
        projection: words,
        filesystem,
    }
}

/// `(day, used bytes, capacity bytes)`.
type Point = (i64, u64, u64);

/// A filesystem not measured for this long has left the fleet (its host retired, its check
/// removed from the agent's configuration): no longer carried forward into the fleet's sum.
const CARRY_FORWARD_DAYS: i64 = 3;

/// Sum per day over all filesystems, each carried forward from its latest sample for at most
/// [`CARRY_FORWARD_DAYS`]. Series of one host on the same device are one filesystem: each day
/// it counts once, with the freshest sample any of them has by then (a check added later, or
/// one measured rarely, neither hides nor freezes it).
fn fleet_sum(series: &[StorageSeries], days: &[i64]) -> Vec<(i64, u64, u64)> {
    use std::collections::btree_map::Entry;
    days.iter()
        .map(|&d| {
            // (host, device) or, without a device, the series itself -> (day, used, capacity)
            let mut latest: BTreeMap<(&str, Result<u64, usize>), Point> = BTreeMap::new();
            for (i, s) in series.iter().enumerate() {
                let Some(&p) = s.points.iter().rev().find(|p| p.0 <= d) else {
                    continue;
                };
                if d - p.0 > CARRY_FORWARD_DAYS * DAY_MS {
                    continue;
                }
                let key = (s.host.as_str(), s.filesystem.ok_or(i));
                match latest.entry(key) {
                    Entry::Vacant(v) => {
                        v.insert(p);
                    }
                    Entry::Occupied(mut o) if o.get().0 < p.0 => {
                        o.insert(p);
                    }
                    Entry::Occupied(_) => {}
                }
            }
            let (used, cap) = latest.values().fold((0u64, 0u64), |(u, c), p| {
                (u.saturating_add(p.1), c.saturating_add(p.2))
            });
            (d, used, cap)
        })
        .collect()
}

/// `(day, bytes, segments)` archived, from consecutive daily samples of one WAL check.
fn archived(entries: &[HistoryEntry]) -> Vec<(i64, u64, u64)> {
    let mut out = Vec::new();
    let read = |e: &HistoryEntry| match e.observation.as_ref()? {
        Observation::Wal(w) => Some((w.archived_count, w.wal_segment_size_bytes, w.stats_reset)),
        _ => None,
    };
    for pair in entries.windows(2) {
        let (Some(a), Some(b)) = (read(&pair[0]), read(&pair[1])) else {
            continue;
        };
        if b.2 != a.2 || b.0 < a.0 {
            continue; // statistics were reset in between
        }
        let segments = (b.0 - a.0) as u64;
        let size = b.1.max(0) as u64;
        out.push((
            day_of(pair[1].measured_at),
            segments.saturating_mul(size),
            segments,
        ));
    }
    out
}

pub async fn trends(
    State(s): State<ApiState>,
    Query(q): Query<TrendsQuery>,
) -> Result<Response, ApiError> {
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !(2..=MAX_DAYS).contains(&days) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("days: {days} is not between 2 and {MAX_DAYS}"),
        ));
    }
    let body = match s.dashboard.trends.get(days) {
        Some(body) => body,
        None => {
            let t = compute(&s, days).await?;
            let body: Arc<str> = serde_json::to_string(&t)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .into();
            s.dashboard.trends.put(days, body.clone());
            body
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

async fn compute(s: &ApiState, days: u32) -> Result<Trends, ApiError> {
    let now = Utc::now();
    let first_day = day_of(now) - i64::from(days - 1) * DAY_MS;
    let since = DateTime::from_timestamp_millis(first_day).unwrap_or(now);
    let day_list: Vec<i64> = (0..i64::from(days))
        .map(|i| first_day + i * DAY_MS)
        .collect();

    let storage: Vec<StorageSeries> =
        group(s.store.daily_last_results(ProbeKind::Disk, since).await?)
            .into_iter()
            .filter(|((_, check), _)| check != crate::report::AGENT_SPOOL_CHECK)
            .map(|((host, check), entries)| storage_series(host, check, &entries))
            .collect();
    let fleet_storage = fleet_sum(&storage, &day_list);

    // One day earlier: the first day's volume needs the count at the end of the day before.
    let wal = s
        .store
        .daily_last_results(ProbeKind::Wal, since - TimeDelta::days(1))
        .await?;
    let mut per_day: BTreeMap<i64, (u64, u64)> = day_list.iter().map(|&d| (d, (0, 0))).collect();
    for entries in group(wal).values() {
        for (d, bytes, segs) in archived(entries) {
            if let Some(slot) = per_day.get_mut(&d) {
                slot.0 = slot.0.saturating_add(bytes);
                slot.1 = slot.1.saturating_add(segs);
            }
        }
    }

    let alerts = s.store.alerts(AlertFilter::All, MAX_ALERTS).await?;
    let alerts_truncated = alerts.len() >= MAX_ALERTS as usize
        && alerts.last().is_some_and(|a| a.fields.opened_at >= since);
    let mut counts: BTreeMap<i64, (u32, u32)> = day_list.iter().map(|&d| (d, (0, 0))).collect();
    for a in &alerts {
        if let Some(c) = counts.get_mut(&day_of(a.fields.opened_at)) {
            match a.fields.peak_severity {
                Severity::Warning => c.0 += 1,
                Severity::Critical => c.1 += 1,
            }
        }
    }

    Ok(Trends {
        generated_at: now,
        since,
        days,
        fit: "theil-sen",
        storage,
        fleet_storage,
        archive_per_day: per_day.into_iter().map(|(d, (b, n))| (d, b, n)).collect(),
        alerts_per_day: counts.into_iter().map(|(d, (w, c))| (d, w, c)).collect(),
        alerts_truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use backwatch_proto::model::WalObs;

    #[test]
    fn the_cache_holds_few_answers_and_only_fresh_ones() {
        let cache = Cache::default();
        let held = |c: &Cache| c.0.lock().unwrap().keys().copied().collect::<Vec<_>>();
        // An answer from two minutes ago is dropped by the next one stored.
        if let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(120)) {
            cache
                .0
                .lock()
                .unwrap()
                .insert(365, (long_ago, "old".into()));
            cache.put(7, "seven".into());
            assert_eq!(held(&cache), [7]);
        }
        for days in 2..=MAX_DAYS {
            cache.put(days, days.to_string().into());
        }
        let kept = held(&cache);
        assert_eq!(kept.len(), CACHED_SPANS, "{kept:?}");
        assert!(kept.contains(&MAX_DAYS), "the newest stays: {kept:?}");
        assert_eq!(cache.get(MAX_DAYS).as_deref(), Some("366"));
    }

    fn disk(path: &str, total: u64, used: u64, device_id: u64) -> Observation {
        Observation::Disk(DiskObs {
            path: path.into(),
            total_bytes: total,
            free_bytes: total - used,
            avail_bytes: total - used,
            device_id,
            ..Default::default()
        })
    }

    fn entry(day: i64, obs: Observation) -> HistoryEntry {
        let t = DateTime::from_timestamp_millis(day * DAY_MS + 3_600_000).unwrap();
        HistoryEntry {
            result_id: format!("r{day}"),
            check: "x".into(),
            measured_at: t,
            received_at: t,
            status: Status::Ok,
            summary: String::new(),
            error: None,
            observation: Some(obs),
        }
    }

    #[test]
    fn storage_growth_projects_the_full_day() {
        // 1 GB more each day on a 100 GB filesystem (no reserved blocks), 50 GB used today.
        const GB: u64 = 1 << 30;
        let entries: Vec<_> = (0..10)
            .map(|d| {
                let used = (41 + d as u64) * GB;
                entry(d, disk("/backup", 100 * GB, used, 0))
            })
            .collect();
        let s = storage_series("db1".into(), "disk.backup".into(), &entries);
        assert_eq!(s.used_pct, Some(50));
        assert_eq!(s.growth_bytes_per_day, Some(GB as f64));
        assert_eq!(s.projection, "full in 50 days");
        assert_eq!(
            s.projected_full_at.map(|t| t.timestamp_millis()),
            Some((9 + 50) * DAY_MS)
        );
    }

    #[test]
    fn archive_volume_skips_counter_resets() {
        let wal = |n: i64, reset: i64| {
            Observation::Wal(WalObs {
                archived_count: n,
                wal_segment_size_bytes: 16,
                stats_reset: DateTime::from_timestamp(reset, 0),
                ..Default::default()
            })
        };
        let entries = [
            entry(0, wal(10, 1)),
            entry(1, wal(13, 1)),
            entry(2, wal(2, 2)),
            entry(3, wal(6, 2)),
        ];
        assert_eq!(archived(&entries), [(DAY_MS, 48, 3), (3 * DAY_MS, 64, 4)]);
    }

    #[test]
    fn fleet_sum_carries_each_series_forward() {
        let all = [
            series("db1", None, vec![(0, 10, 100), (2 * DAY_MS, 12, 100)]),
            series("db1", None, vec![(DAY_MS, 5, 50)]),
        ];
        assert_eq!(
            fleet_sum(&all, &[0, DAY_MS, 2 * DAY_MS]),
            [(0, 10, 100), (DAY_MS, 15, 150), (2 * DAY_MS, 17, 150)]
        );
        // The second one measured last on day 1 (its host retired): carried three days, then
        // it has left the fleet.
        let days: Vec<i64> = (0..6).map(|d| d * DAY_MS).collect();
        let caps: Vec<u64> = fleet_sum(&all, &days).iter().map(|d| d.2).collect();
        assert_eq!(caps, [100, 150, 150, 150, 150, 100]);
    }

    fn series(host: &str, filesystem: Option<u64>, points: Vec<(i64, u64, u64)>) -> StorageSeries {
        StorageSeries {
            host: host.into(),
            check: String::new(),
            path: String::new(),
            points,
            used_pct: None,
            growth_bytes_per_day: None,
            projected_full_at: None,
            projection: String::new(),
            filesystem,
        }
    }

    #[test]
    fn fleet_sum_counts_a_filesystem_of_a_host_once() {
        // disk.backup and disk.archive both on / of db1 (device 2049); db2's device 2049 is
        // another machine's filesystem.
        let all = [
            series("db1", Some(2049), vec![(0, 10, 100)]),
            series("db1", Some(2049), vec![(0, 10, 100)]),
            series("db2", Some(2049), vec![(0, 7, 50)]),
        ];
        assert_eq!(fleet_sum(&all, &[0]), [(0, 17, 150)]);
    }

    #[test]
    fn a_filesystem_counts_with_its_freshest_sample_each_day() {
        // disk.archive (sorted first) added on day 2 next to a disk.backup measured daily: the
        // days before count disk.backup's samples, and day 2 the fresher of the two.
        let all = [
            series("db1", Some(7), vec![(2 * DAY_MS, 30, 100)]),
            series(
                "db1",
                Some(7),
                vec![(0, 10, 100), (DAY_MS, 20, 100), (3 * DAY_MS, 40, 100)],
            ),
        ];
        assert_eq!(
            fleet_sum(&all, &[0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS]),
            [
                (0, 10, 100),
                (DAY_MS, 20, 100),
                (2 * DAY_MS, 30, 100),
                (3 * DAY_MS, 40, 100)
            ]
        );
    }

    #[test]
    fn the_device_number_is_read_from_the_disk_observation() {
        let e = entry(0, disk("/backup", 100, 50, 2049));
        let s = storage_series("db1".into(), "disk.backup".into(), &[e]);
        assert_eq!(s.filesystem, Some(2049));
    }
}
