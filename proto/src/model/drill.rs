//! Restore drills (`drill.<name>`), as raw facts: what was restored, how long each step took,
//! which point recovery reached, what the smoke checks returned. The rule decides.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a recovered point is read: `pg_last_xact_replay_timestamp()` after promotion, which
/// PostgreSQL keeps at the commit time of the last transaction the recovery replayed.
pub const RECOVERED_POINT_SOURCE: &str = "pg_last_xact_replay_timestamp()";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillObs {
    /// "plain": a pg_basebackup directory (`-Fp` or `-Ft`).
    pub source_kind: String,
    pub backup_root: String,
    pub backup_path: Option<String>,
    /// "plain", "tar" or "tar.gz".
    pub backup_format: Option<String>,
    pub archive_path: Option<String>,
    pub scratch_dir: String,
    /// The restore, the recovery or the start failed.
    pub error: Option<String>,
    /// The drill refused to start (space); nothing was written.
    pub refused: Option<String>,
    pub backup_bytes: u64,
    pub scratch_free_bytes: u64,
    pub space_factor: f64,
    pub pg_version: Option<String>,
    pub bindir: Option<String>,
    pub io_limit: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub restore_ms: u64,
    pub recovery_ms: u64,
    /// restore + recovery until the promoted server answers: the measured RTO.
    pub rto_ms: Option<u64>,
    pub smoke_ms: u64,
    pub bytes_restored: u64,
    pub wal_segments_restored: u64,
    /// "latest" or "1h before now".
    pub target: String,
    pub target_time: Option<DateTime<Utc>>,
    /// See [`RECOVERED_POINT_SOURCE`].
    pub recovered_at: Option<DateTime<Utc>>,
    pub replay_lsn: Option<String>,
    pub archive_newest_segment: Option<String>,
    pub archive_end_reached: bool,
    pub shortfall_secs: Option<i64>,
    pub target_distance_secs: Option<i64>,
    pub missing_segment: Option<String>,
    pub server_log: Vec<String>,
    pub smoke: Vec<SmokeCheck>,
    pub max_rto_secs: Option<u64>,
    pub max_shortfall_secs: u64,
    pub timed_out: bool,
    pub cleanup_error: Option<String>,
    /// The recovered cluster's system identifier (decimal): the cluster this drill proves.
    #[serde(default)]
    pub system_identifier: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeCheck {
    pub sql: String,
    /// First column of the first row it must return; `None`: any answer passes.
    pub expect: Option<String>,
    /// What it returned (`None`: no row, or it failed).
    pub got: Option<String>,
    pub error: Option<String>,
    pub passed: bool,
}
