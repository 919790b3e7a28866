//! What the store keeps for reports: hourly and daily rollups of every check, and the log of
//! scheduled report runs.
//!
//! Invariants every backend keeps (and `suite_reports` proves for both):
//! - a stored new result is folded into its hour and day rollup in the same transaction
//!   (`record_results`); a duplicate result changes no rollup;
//! - counters (`archived_count`, `failed_count`) grow the row's delta by the increase since
//!   the previous sample of the check, in this bucket or the one before; a counter that went
//!   down (a stats reset) adds nothing;
//! - a report run is claimed once: [`ReportStore::claim_report_run`] inserts the run's key
//!   and queues its notifications in one transaction, and does nothing when the key exists.

use super::StoreResult;
use super::alerts::Alert;
use super::outbox::NewNotification;
use backwatch_proto::model::ProbeKind;
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Period::Hour => HOUR_MS,
            Period::Day => DAY_MS,
        }
    }

    /// Start of the UTC bucket holding `ms`.
    pub fn bucket(self, ms: i64) -> i64 {
        ms.div_euclid(self.millis()) * self.millis()
    }
}

/// One rollup row: a check on a host over one UTC hour or day. Times are Unix ms. Which
/// measures are set depends on the probe kind (see `migrations/*/0003_reports.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub host: String,
    pub check: String,
    pub period: Period,
    pub bucket_start: i64,
    /// The probe kind's name (`disk`, `backup`, `wal`, `archive`), as stored: a row written by a
    /// newer collector may hold a kind this one does not know ([`Rollup::probe_kind`]).
    pub kind: String,
    pub samples: i64,
    pub n_ok: i64,
    pub n_warning: i64,
    pub n_critical: i64,
    pub n_unknown: i64,
    /// Status of the newest sample.
    pub status_last: Status,
    pub first_at: i64,
    /// measured_at of the newest sample.
    pub last_at: i64,
    pub interval_secs: i64,
    pub used_bytes_last: Option<i64>,
    pub used_bytes_max: Option<i64>,
    pub capacity_bytes: Option<i64>,
    pub used_pct_max: Option<f64>,
    pub files_last: Option<i64>,
    pub newest_mtime: Option<i64>,
    pub newest_size_bytes: Option<i64>,
    pub newest_age_secs: Option<i64>,
    pub new_backups: i64,
    pub duration_secs: Option<i64>,
    pub delay_secs_max: Option<i64>,
    /// Day rows of WAL checks: the maximum delay of each UTC hour (`None`: no sample).
    pub delay_hourly: Vec<Option<i64>>,
    /// Day rows of WAL checks: the largest archive_command latency (ms) of each hour.
    pub latency_hourly: Vec<Option<i64>>,
    pub archived_count: Option<i64>,
    pub archived_delta: i64,
    pub failed_count: Option<i64>,
    pub failed_delta: i64,
    pub segment_bytes: Option<i64>,
    pub wal_bytes: i64,
    /// Disk checks: the filesystem measured (device number, else mount point), so that fleet
    /// totals count a filesystem shared by several checks of a host once.
    pub filesystem: Option<String>,
    /// WAL checks: the largest data at risk of the bucket (R31).
    pub risk_secs_max: Option<i64>,
    /// Archive checks: the narrowest recoverable window of the bucket (R32).
    pub window_secs_min: Option<i64>,
}

impl Rollup {
    /// The stored kind as a type; `None` for a kind this collector does not know (a row
    /// written by a newer one).
    pub fn probe_kind(&self) -> Option<ProbeKind> {
        ProbeKind::from_name(&self.kind)
    }

    /// An empty row; the caller folds samples into it.
    pub fn empty(
        host: &str,
        check: &str,
        period: Period,
        bucket_start: i64,
        kind: ProbeKind,
    ) -> Self {
        Rollup {
            host: host.to_string(),
            check: check.to_string(),
            period,
            bucket_start,
            kind: kind.name().to_string(),
            samples: 0,
            n_ok: 0,
            n_warning: 0,
            n_critical: 0,
            n_unknown: 0,
            status_last: Status::Unknown,
            first_at: bucket_start,
            last_at: bucket_start,
            interval_secs: 0,
            used_bytes_last: None,
            used_bytes_max: None,
            capacity_bytes: None,
            used_pct_max: None,
            files_last: None,
            newest_mtime: None,
            newest_size_bytes: None,
            newest_age_secs: None,
            new_backups: 0,
            duration_secs: None,
            delay_secs_max: None,
            delay_hourly: Vec::new(),
            latency_hourly: Vec::new(),
            filesystem: None,
            risk_secs_max: None,
            window_secs_min: None,
            archived_count: None,
            archived_delta: 0,
            failed_count: None,
            failed_delta: 0,
            segment_bytes: None,
            wal_bytes: 0,
        }
    }

    /// The worst status seen in the bucket, in [`Status::rank`] order.
    pub fn worst(&self) -> Status {
        if self.n_critical > 0 {
            Status::Critical
        } else if self.n_unknown > 0 {
            Status::Unknown
        } else if self.n_warning > 0 {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// A run of the report scheduler, identified by `key` (`daily:2026-03-29`, `monthly:2026-02`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRun {
    pub key: String,
    /// `daily` or `monthly`.
    pub kind: String,
    /// `2026-03-29` or `2026-02`.
    pub period: String,
    pub scheduled_at: DateTime<Utc>,
    pub claimed_at: DateTime<Utc>,
    pub claimed_by: String,
    /// Recorded at the scheduler's first start, nothing sent.
    pub baseline: bool,
    pub notifications: i64,
}

/// An inline part of an email (a chart), carried through the outbox with its message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Content-ID without angle brackets; the HTML refers to it as `cid:<cid>`.
    pub cid: String,
    pub content_type: String,
    /// Base64 (standard alphabet, padded).
    pub data: String,
}

#[async_trait::async_trait]
pub trait ReportStore: Send + Sync {
    /// Rollups of `period` whose bucket starts in `[from_ms, until_ms)`, ordered by host,
    /// check, bucket.
    async fn rollups(
        &self,
        period: Period,
        from_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<Rollup>>;

    /// Write rows as given, replacing rows with the same key: backfills, seeding and the
    /// benchmark. Ingest maintains rollups by itself.
    async fn put_rollups(&self, rows: &[Rollup]) -> StoreResult<()>;

    /// Delete the rollups of `period` whose bucket began before `before_ms` (retention of
    /// the hourly rows; daily rows are what monthly reviews read and are kept). Returns how
    /// many went.
    async fn prune_rollups(&self, period: Period, before_ms: i64) -> StoreResult<u64>;

    /// Alerts opened in `[from, until)`, oldest first.
    async fn alerts_opened_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<Alert>>;

    /// The greatest claimed key of each kind (`daily`, `monthly`), baseline rows included.
    async fn latest_report_runs(&self) -> StoreResult<Vec<(String, String)>>;

    /// Claim `run` and queue its notifications (each with its inline parts) in one
    /// transaction; false, with nothing written, when the run was claimed before.
    async fn claim_report_run(
        &self,
        run: &ReportRun,
        notifications: &[(NewNotification, Vec<Attachment>)],
    ) -> StoreResult<bool>;

    /// Newest first.
    async fn report_runs(&self, limit: u32) -> StoreResult<Vec<ReportRun>>;
}
