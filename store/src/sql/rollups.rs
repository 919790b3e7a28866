//! Hourly and daily rollups, maintained inside the transaction that stores new results
//! ([`apply_group`], called from `group::write`), so reports read a few rows per check and
//! day instead of scanning `results`.
//!
//! Invariants:
//! - [`fold`] is pure: the same row, previous row and sample give the same new row;
//! - "last" measures come from the newest sample by `measured_at`; a replayed older sample
//!   only counts (samples, statuses, maxima), it never rolls a "last" value back, and it
//!   adds nothing to a counter delta;
//! - a counter's increase is measured against the previous sample of the check: the row's
//!   own last value, or the latest earlier row's when the bucket is new, so the hour
//!   boundary loses nothing; a decrease (stats reset) adds 0.
//!
//! On PostgreSQL the bucket rows are read `FOR UPDATE`. Two collectors writing the very first
//! sample of the same bucket at the same instant would both insert; the second upsert wins
//! and one sample goes uncounted. One agent stream per host makes that practically
//! impossible, and rollups are statistics, not the record (that is `results`).

use super::Backend;
use super::multi_row::{AnyQuery, MultiRow};
use super::read::{get, parse_status};
use super::write::query_error;
use crate::reports::{HOUR_MS, Period, Rollup};
use crate::{Evaluated, StoreResult};
use backwatch_proto::model::{Observation, ProbeKind};
use backwatch_rules::status::Status;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet};

/// The measures of one result that rollups keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub at: i64,
    pub status: Option<Status>,
    pub interval_secs: i64,
    pub used: Option<i64>,
    pub capacity: Option<i64>,
    pub used_pct: Option<f64>,
    pub files: Option<i64>,
    pub newest_mtime: Option<i64>,
    pub newest_size: Option<i64>,
    pub newest_age: Option<i64>,
    pub duration: Option<i64>,
    pub delay: Option<i64>,
    pub archived: Option<i64>,
    pub failed: Option<i64>,
    pub segment_bytes: Option<i64>,
    /// Archive directories: bytes archived per UTC day (`YYYY-MM-DD`).
    pub day_volumes: Vec<(String, i64)>,
    /// Disk checks: which filesystem (see `Rollup::filesystem`).
    pub filesystem: Option<String>,
    /// WAL checks: data at risk (R31).
    pub risk: Option<i64>,
    /// Archive checks: the recoverable window's length (R32).
    pub window: Option<i64>,
    /// WAL checks: the latest segment's archive_command latency (ms).
    pub latency: Option<i64>,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What rollups keep of an observation; `None` measures for an error result.
pub fn sample(item: &Evaluated) -> Sample {
    let r = &item.result;
    let mut s = Sample {
        at: r.measured_at.timestamp_millis(),
        status: Some(item.verdict.status),
        interval_secs: i64::from(r.interval_secs),
        ..Sample::default()
    };
    match &r.observation {
        Some(Observation::Disk(d)) if d.error.is_none() && d.total_bytes > 0 => {
            s.used = Some(int(d.used_bytes()));
            s.capacity = Some(int(d.capacity_bytes()));
            // As `df` and the disk check round it, so reports and alerts agree.
            s.used_pct = d.used_pct().map(f64::from);
            s.filesystem = filesystem_key(d);
        }
        Some(Observation::Backup(b)) if b.exists && b.read_error.is_none() => {
            s.used = Some(int(b.total_bytes));
            s.files = Some(int(b.file_count));
            if let Some(n) = &b.newest {
                s.newest_mtime = Some(n.mtime.timestamp_millis());
                s.newest_size = Some(int(n.size_bytes));
                s.newest_age = Some(n.age_secs);
            }
            // A plain base backup's start and end are known (backup_label, backup_manifest):
            // its duration feeds the monthly duration trend, a full one's (an incremental one
            // copies only the changed blocks).
            s.duration = b
                .newest_base_backup
                .as_ref()
                .filter(|bb| !bb.incremental)
                .and_then(|bb| bb.duration_secs);
        }
        Some(Observation::Wal(w)) => {
            s.delay = backwatch_rules::wal::archive_delay_secs(w);
            s.archived = Some(w.archived_count);
            s.failed = Some(w.failed_count);
            s.risk = backwatch_rules::wal::data_at_risk(w).map(|r| r.secs);
            s.latency = w.last_archive_latency_ms.filter(|ms| *ms >= 0);
            if w.wal_segment_size_bytes > 0 {
                s.segment_bytes = Some(w.wal_segment_size_bytes);
            }
        }
        Some(Observation::Drill(d)) => {
            // The measured recovery time: the monthly review's RTO figures.
            s.duration = d.rto_ms.map(|ms| int(ms / 1000));
        }
        Some(Observation::PgBackRest(o) | Observation::Barman(o)) if o.error.is_none() => {
            // The narrowest set's recoverable window, as the check reports it.
            s.window = backwatch_rules::backup_tool::narrowest_window(o)
                .map(|w| (w.end - w.start).num_seconds());
            // The stalest set's newest backup, as for a backup directory's newest file: when
            // it ended (a new one is counted when that changes), its age and size (pgBackRest:
            // the database size it read); the duration is the newest full's, so the monthly
            // trend compares like with like (incrementals take minutes).
            if let Some(set) = o.stalest_set() {
                if let Some(n) = &set.newest {
                    s.newest_mtime = n.stop_time.map(|t| t.timestamp_millis());
                    s.newest_size = Some(int(n.size_bytes));
                    s.newest_age = n.age_secs;
                }
                s.duration = set.newest_full.as_ref().and_then(|f| f.duration_secs);
            }
        }
        Some(Observation::Archive(a)) if a.exists && a.read_error.is_none() => {
            s.used = Some(int(a.segment_bytes));
            s.files = Some(int(a.segments));
            s.newest_age = a.oldest_segment.as_ref().map(|f| f.age_secs);
            s.newest_mtime = a
                .newest_segment
                .as_ref()
                .map(|f| f.mtime.timestamp_millis());
            s.duration = a.newest_backup.as_ref().and_then(|b| b.duration_secs);
            s.window = a.window.as_ref().map(|w| (w.end - w.start).num_seconds());
            s.day_volumes = a
                .daily
                .iter()
                .map(|d| (d.day.clone(), int(d.bytes)))
                .collect();
        }
        _ => {}
    }
    s
}

/// One filesystem of a host: its device number (`st_dev`, what `df` and the disk check treat
/// as one filesystem), else its mount point.
pub fn filesystem_key(d: &backwatch_proto::model::DiskObs) -> Option<String> {
    if d.device_id != 0 {
        return Some(format!("dev:{}", d.device_id));
    }
    d.mount_point.as_ref().map(|m| format!("mount:{m}"))
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn min_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Increase of a counter from `reference` to `now`; 0 for a reset or without a reference.
fn increase(reference: Option<i64>, now: Option<i64>) -> i64 {
    match (reference, now) {
        (Some(r), Some(n)) if n >= r => n - r,
        _ => 0,
    }
}

/// Fold sample `s` into `row` (the bucket's row so far, or `None`); `prev` is the check's
/// latest row before this bucket, consulted only when the bucket is new.
pub fn fold(row: Option<Rollup>, prev: Option<&Rollup>, s: &Sample, template: Rollup) -> Rollup {
    let fresh = row.is_none();
    let mut r = row.unwrap_or(template);
    // What the previous sample of the check left: this row's, or the earlier row's.
    let (ref_archived, ref_failed, ref_mtime) = if fresh {
        prev.map_or((None, None, None), |p| {
            (p.archived_count, p.failed_count, p.newest_mtime)
        })
    } else {
        (r.archived_count, r.failed_count, r.newest_mtime)
    };
    let newer = fresh || s.at >= r.last_at;
    if fresh {
        r.first_at = s.at;
        r.last_at = s.at;
    }
    r.samples += 1;
    match s.status {
        Some(Status::Ok) => r.n_ok += 1,
        Some(Status::Warning) => r.n_warning += 1,
        Some(Status::Critical) => r.n_critical += 1,
        Some(Status::Unknown) | None => r.n_unknown += 1,
    }
    r.first_at = r.first_at.min(s.at);
    r.used_bytes_max = max_opt(r.used_bytes_max, s.used);
    r.used_pct_max = max_opt(r.used_pct_max, s.used_pct);
    r.delay_secs_max = max_opt(r.delay_secs_max, s.delay);
    r.risk_secs_max = max_opt(r.risk_secs_max, s.risk);
    r.window_secs_min = min_opt(r.window_secs_min, s.window);
    if r.period == Period::Day {
        // Hourly maxima of a day: what the monthly review's medians and p95s are taken over.
        let slot = usize::try_from((s.at - r.bucket_start).div_euclid(HOUR_MS))
            .unwrap_or(0)
            .min(23);
        for (hourly, v) in [
            (&mut r.delay_hourly, s.delay),
            (&mut r.latency_hourly, s.latency),
        ] {
            if let Some(v) = v {
                if hourly.len() < 24 {
                    hourly.resize(24, None);
                }
                hourly[slot] = max_opt(hourly[slot], Some(v));
            }
        }
    }
    if !newer {
        return r;
    }
    r.last_at = s.at;
    if let Some(st) = s.status {
        r.status_last = st;
    }
    r.interval_secs = s.interval_secs;
    // Measures of the newest sample replace the row's; an error sample keeps the last known.
    if s.used.is_some() {
        r.used_bytes_last = s.used;
    }
    if s.capacity.is_some() {
        r.capacity_bytes = s.capacity;
    }
    if s.files.is_some() {
        r.files_last = s.files;
    }
    if s.newest_size.is_some() {
        r.newest_size_bytes = s.newest_size;
    }
    if s.newest_age.is_some() {
        r.newest_age_secs = s.newest_age;
    }
    if s.duration.is_some() {
        r.duration_secs = s.duration;
    }
    if s.segment_bytes.is_some() {
        r.segment_bytes = s.segment_bytes;
    }
    if s.filesystem.is_some() {
        r.filesystem = s.filesystem.clone();
    }
    if let Some(m) = s.newest_mtime {
        // A backup is new when the newest file got newer (not when it was deleted and an
        // older one is the newest again); the very first sample of a check counts its newest
        // file when that was written within this bucket.
        let is_new = match ref_mtime {
            Some(old) => m > old,
            None => m >= r.bucket_start,
        };
        let backup = matches!(
            r.probe_kind(),
            Some(ProbeKind::Backup | ProbeKind::PgBackRest | ProbeKind::Barman)
        );
        if is_new && backup {
            r.new_backups += 1;
        }
        r.newest_mtime = Some(m);
    }
    if s.archived.is_some() {
        r.archived_delta += increase(ref_archived, s.archived);
        r.archived_count = s.archived;
    }
    if s.failed.is_some() {
        r.failed_delta += increase(ref_failed, s.failed);
        r.failed_count = s.failed;
    }
    if r.probe_kind() == Some(ProbeKind::Wal) {
        r.wal_bytes = r.archived_delta * r.segment_bytes.unwrap_or(16 << 20);
    }
    if !s.day_volumes.is_empty() {
        let day = chrono::DateTime::from_timestamp_millis(Period::Day.bucket(r.bucket_start))
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        r.wal_bytes = s
            .day_volumes
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |(_, b)| *b);
    }
    r
}

// === SQL ===

macro_rules! rollup_columns {
    () => {
        "host, check_id, period, bucket_start, kind, samples, n_ok, n_warning, n_critical, \
         n_unknown, status_last, first_at, last_at, interval_secs, used_bytes_last, \
         used_bytes_max, capacity_bytes, used_pct_max, files_last, newest_mtime, \
         newest_size_bytes, newest_age_secs, new_backups, duration_secs, delay_secs_max, \
         delay_hourly, archived_count, archived_delta, failed_count, failed_delta, \
         segment_bytes, wal_bytes, filesystem, risk_secs_max, window_secs_min, latency_hourly"
    };
}
pub(super) use rollup_columns;

/// The upsert of one rollup row, sent for many (`multi_row`).
static UPSERT: MultiRow = MultiRow::new(include_str!("../queries/upsert_rollup.sql"));
/// `used_pct_max`'s stand-in for NULL (see `queries/upsert_rollup.sql`).
const NO_PCT: f64 = -1.0;

/// The key list every read below walks: one `VALUES` row per key, repeated by `multi_row`.
macro_rules! rollup_keys {
    () => {
        "WITH k (k_host, k_check, k_period, k_bucket) AS (VALUES (CAST($1 AS TEXT), \
         CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS BIGINT))) "
    };
}

/// The listed bucket rows, each looked up by its primary key, whatever the table's size.
/// SQLite: `CROSS JOIN` makes it walk the key list and look each key up, never the other way
/// round. PostgreSQL would hash-join a long key list against a scan of the whole table (and
/// its dead row versions: these rows are rewritten all day), so each key is a `LATERAL`
/// index lookup that locks its row; the keys come sorted, so rows are locked in key order,
/// the order every group write takes them in.
static READ_BUCKETS_SQLITE: MultiRow = MultiRow::new(concat!(
    rollup_keys!(),
    "SELECT ",
    rollup_columns!(),
    " FROM k CROSS JOIN rollups WHERE host = k_host AND check_id = k_check \
     AND period = k_period AND bucket_start = k_bucket"
));
static READ_BUCKETS_POSTGRES: MultiRow = MultiRow::new(concat!(
    rollup_keys!(),
    "SELECT r.* FROM k CROSS JOIN LATERAL (SELECT ",
    rollup_columns!(),
    " FROM rollups WHERE host = k_host AND check_id = k_check \
     AND period = k_period AND bucket_start = k_bucket FOR UPDATE) r"
));
/// For each listed key, the latest row of its series (host, check, period) before the key's
/// bucket: where a new bucket takes its counters on from. Not locked: it is only read.
static READ_PREVIOUS_SQLITE: MultiRow = MultiRow::new(concat!(
    rollup_keys!(),
    "SELECT ",
    rollup_columns!(),
    " FROM k CROSS JOIN rollups WHERE host = k_host AND check_id = k_check \
     AND period = k_period AND bucket_start = (SELECT MAX(p.bucket_start) FROM rollups p \
     WHERE p.host = k_host AND p.check_id = k_check AND p.period = k_period \
     AND p.bucket_start < k_bucket)"
));
static READ_PREVIOUS_POSTGRES: MultiRow = MultiRow::new(concat!(
    rollup_keys!(),
    "SELECT r.* FROM k CROSS JOIN LATERAL (SELECT ",
    rollup_columns!(),
    " FROM rollups WHERE host = k_host AND check_id = k_check AND period = k_period \
     AND bucket_start < k_bucket ORDER BY bucket_start DESC LIMIT 1) r"
));

/// A rollup row's identity; ordered as rows are locked and written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    host: String,
    check: String,
    period: Period,
    bucket: i64,
}

impl Key {
    fn of(r: &Rollup) -> Key {
        Key {
            host: r.host.clone(),
            check: r.check.clone(),
            period: r.period,
            bucket: r.bucket_start,
        }
    }

    fn same_series(&self, other: &Key) -> bool {
        self.host == other.host && self.check == other.check && self.period == other.period
    }
}

fn bind_key(q: AnyQuery, k: &Key) -> AnyQuery {
    q.bind(k.host.clone())
        .bind(k.check.clone())
        .bind(k.period.as_str())
        .bind(k.bucket)
}

fn encode_hourly(v: &[Option<i64>]) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    Some(
        v.iter()
            .map(|x| x.map(|n| n.to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn decode_hourly(text: Option<String>) -> Vec<Option<i64>> {
    text.map(|t| t.split(',').map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

pub(super) fn decode(row: &AnyRow) -> StoreResult<Rollup> {
    let period: String = get(row, "period")?;
    Ok(Rollup {
        host: get(row, "host")?,
        check: get(row, "check_id")?,
        period: Period::parse(&period).ok_or_else(|| crate::StoreError::Corrupt {
            what: "period",
            problem: format!("{period:?} is not hour or day"),
        })?,
        bucket_start: get(row, "bucket_start")?,
        kind: get(row, "kind")?,
        samples: get(row, "samples")?,
        n_ok: get(row, "n_ok")?,
        n_warning: get(row, "n_warning")?,
        n_critical: get(row, "n_critical")?,
        n_unknown: get(row, "n_unknown")?,
        status_last: parse_status("status_last", &get::<String>(row, "status_last")?)?,
        first_at: get(row, "first_at")?,
        last_at: get(row, "last_at")?,
        interval_secs: get(row, "interval_secs")?,
        used_bytes_last: get(row, "used_bytes_last")?,
        used_bytes_max: get(row, "used_bytes_max")?,
        capacity_bytes: get(row, "capacity_bytes")?,
        used_pct_max: get(row, "used_pct_max")?,
        files_last: get(row, "files_last")?,
        newest_mtime: get(row, "newest_mtime")?,
        newest_size_bytes: get(row, "newest_size_bytes")?,
        newest_age_secs: get(row, "newest_age_secs")?,
        new_backups: get(row, "new_backups")?,
        duration_secs: get(row, "duration_secs")?,
        delay_secs_max: get(row, "delay_secs_max")?,
        delay_hourly: decode_hourly(get(row, "delay_hourly")?),
        archived_count: get(row, "archived_count")?,
        archived_delta: get(row, "archived_delta")?,
        failed_count: get(row, "failed_count")?,
        failed_delta: get(row, "failed_delta")?,
        segment_bytes: get(row, "segment_bytes")?,
        wal_bytes: get(row, "wal_bytes")?,
        filesystem: get(row, "filesystem")?,
        risk_secs_max: get(row, "risk_secs_max")?,
        window_secs_min: get(row, "window_secs_min")?,
        latency_hourly: decode_hourly(get(row, "latency_hourly")?),
    })
}

/// Replace `rows` whole, in a few statements; their keys must be distinct (one statement
/// cannot upsert a row twice).
pub(super) async fn upsert_many(conn: &mut AnyConnection, rows: &[&Rollup]) -> StoreResult<()> {
    UPSERT
        .execute(conn, rows, |q, r| bind_rollup(q, r))
        .await
        .map_err(query_error("upsert rollups"))
}

fn bind_rollup(q: AnyQuery, r: &Rollup) -> AnyQuery {
    q.bind(r.host.clone())
        .bind(r.check.clone())
        .bind(r.period.as_str())
        .bind(r.bucket_start)
        .bind(r.kind.clone())
        .bind(r.samples)
        .bind(r.n_ok)
        .bind(r.n_warning)
        .bind(r.n_critical)
        .bind(r.n_unknown)
        .bind(r.status_last.as_str())
        .bind(r.first_at)
        .bind(r.last_at)
        .bind(r.interval_secs)
        .bind(r.used_bytes_last)
        .bind(r.used_bytes_max)
        .bind(r.capacity_bytes)
        .bind(r.used_pct_max.unwrap_or(NO_PCT))
        .bind(r.files_last)
        .bind(r.newest_mtime)
        .bind(r.newest_size_bytes)
        .bind(r.newest_age_secs)
        .bind(r.new_backups)
        .bind(r.duration_secs)
        .bind(r.delay_secs_max)
        .bind(encode_hourly(&r.delay_hourly))
        .bind(r.archived_count)
        .bind(r.archived_delta)
        .bind(r.failed_count)
        .bind(r.failed_delta)
        .bind(r.segment_bytes)
        .bind(r.wal_bytes)
        // "" for NULL, as $18 does for floats: a NULL's type would stick to the statement.
        .bind(r.filesystem.clone().unwrap_or_default())
        .bind(r.risk_secs_max)
        .bind(r.window_secs_min)
        .bind(encode_hourly(&r.latency_hourly))
}

/// A newly stored result, as rollups see it.
pub(super) struct NewResult<'a> {
    pub(super) host: &'a str,
    pub(super) check: &'a str,
    pub(super) item: &'a Evaluated,
}

/// Fold a group's newly stored results into their hour and day rollups, inside the caller's
/// transaction (see the module invariants), in at most three statements per 256 rows: read
/// the rows of every bucket touched (locked on PostgreSQL), read the row before each bucket
/// that does not exist yet, write every row that changed. Results are folded in the order
/// given, exactly as one-by-one writes would have folded them.
pub(super) async fn apply_group(
    conn: &mut AnyConnection,
    backend: Backend,
    news: &[NewResult<'_>],
) -> StoreResult<()> {
    if news.is_empty() {
        return Ok(());
    }
    let samples: Vec<Sample> = news.iter().map(|n| sample(n.item)).collect();
    let key = |n: &NewResult<'_>, period: Period, at: i64| Key {
        host: n.host.to_string(),
        check: n.check.to_string(),
        period,
        bucket: period.bucket(at),
    };
    let mut keys: Vec<Key> = news
        .iter()
        .zip(&samples)
        .flat_map(|(n, s)| [key(n, Period::Hour, s.at), key(n, Period::Day, s.at)])
        .collect();
    keys.sort();
    keys.dedup();
    let read = match backend {
        Backend::Sqlite => &READ_BUCKETS_SQLITE,
        Backend::Postgres => &READ_BUCKETS_POSTGRES,
    };
    // Every row read, and later every row folded: a bucket's row, or the row a new bucket
    // takes its counters on from (the latest of its series before it).
    let mut known: BTreeMap<Key, Rollup> = BTreeMap::new();
    for row in read
        .fetch_keys(conn, &keys, bind_key)
        .await
        .map_err(query_error("read rollups"))?
    {
        let r = decode(&row)?;
        known.insert(Key::of(&r), r);
    }
    // Once an hour and once a day per check, a bucket is new.
    let missing: Vec<Key> = keys
        .into_iter()
        .filter(|k| !known.contains_key(k))
        .collect();
    if !missing.is_empty() {
        let previous = match backend {
            Backend::Sqlite => &READ_PREVIOUS_SQLITE,
            Backend::Postgres => &READ_PREVIOUS_POSTGRES,
        };
        for row in previous
            .fetch_keys(conn, &missing, bind_key)
            .await
            .map_err(query_error("read previous rollups"))?
        {
            let r = decode(&row)?;
            known.insert(Key::of(&r), r);
        }
    }
    let mut changed = BTreeSet::new();
    for (n, s) in news.iter().zip(&samples) {
        for period in [Period::Hour, Period::Day] {
            let k = key(n, period, s.at);
            let row = known.remove(&k);
            // The series' latest row before this bucket: read above, or folded earlier in
            // this group (a replay that crosses an hour).
            let prev = match row {
                None => known
                    .range(..&k)
                    .next_back()
                    .filter(|(p, _)| p.same_series(&k))
                    .map(|(_, r)| r),
                Some(_) => None,
            };
            let template = Rollup::empty(n.host, n.check, period, k.bucket, n.item.result.kind);
            let next = fold(row, prev, s, template);
            known.insert(k.clone(), next);
            changed.insert(k);
        }
    }
    let rows: Vec<&Rollup> = changed.iter().filter_map(|k| known.get(k)).collect();
    upsert_many(conn, &rows).await
}

#[cfg(test)]
#[path = "rollups_tests.rs"]
mod tests;
