//! Plain `pg_basebackup` directories and restore readiness (`restore.<name>`), as raw facts.
//!
//! A [`BaseBackup`] is what a backup's `backup_label` and `backup_manifest` say about it: when
//! it started and ended, which WAL it needs, how big it is. [`RestoreObs`] adds what
//! `pg_verifybackup` said about the newest one and whether the WAL it needs is at hand. The
//! rules decide.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaseBackup {
    pub path: String,
    /// backup_label or backup_manifest unreadable or malformed; the rest is what could be read.
    pub error: Option<String>,
    pub label: Option<String>,
    /// START TIME as written, in the server's log_timezone.
    pub start_time_text: Option<String>,
    /// START TIME as an instant (zone UTC/GMT or a numeric offset).
    pub start_time: Option<DateTime<Utc>>,
    /// backup_manifest's mtime: pg_basebackup writes it last.
    pub end_time: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub start_lsn: Option<String>,
    pub start_segment: Option<String>,
    pub end_lsn: Option<String>,
    pub end_segment: Option<String>,
    pub timeline: u32,
    pub file_count: u64,
    pub size_bytes: u64,
    pub wal_segment_size_bytes: Option<u64>,
    /// An incremental backup (PostgreSQL 17 and later): it restores only combined with its
    /// chain (pg_combinebackup).
    #[serde(default)]
    pub incremental: bool,
}

/// Where the WAL a backup needs was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalSource {
    /// The backup's own `pg_wal` (`pg_basebackup -X stream` or `fetch`).
    Backup,
    /// The WAL archive directory.
    Archive,
}

impl WalSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WalSource::Backup => "backup",
            WalSource::Archive => "archive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "backup" => Some(WalSource::Backup),
            "archive" => Some(WalSource::Archive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreObs {
    pub backup_root: String,
    pub exists: bool,
    /// The root cannot be read, or holds no base backup with a manifest.
    pub error: Option<String>,
    pub backup: Option<BaseBackup>,
    /// pg_verifybackup used; `None` when none was found.
    pub verifier: Option<String>,
    /// pg_verifybackup could not be started.
    pub verify_error: Option<String>,
    /// Command prefix limiting its IO and CPU ("nice -n 19 ionice -c 3").
    pub io_limit: Option<String>,
    pub verify_started_at: Option<DateTime<Utc>>,
    pub verify_duration_ms: u64,
    /// 0 = verified; `None` = did not run.
    pub verify_exit_code: Option<i32>,
    pub verify_messages: Vec<String>,
    /// pg_verifybackup parsed the WAL itself (all of it was in the backup's pg_wal).
    pub wal_parsed: bool,
    pub wal_source: Option<WalSource>,
    pub archive_path: Option<String>,
    pub wal_segments_needed: u64,
    /// The first segment the backup needs that is in neither its pg_wal nor the archive.
    pub wal_first_missing: Option<String>,
    /// "plain", "tar", "tar.gz", "tar.lz4" or "tar.zst".
    #[serde(default)]
    pub backup_format: Option<String>,
    /// The backup's major (PG_VERSION), when readable.
    #[serde(default)]
    pub backup_major: Option<u32>,
    /// The major of the pg_verifybackup chosen (`None`: configured, or none found).
    #[serde(default)]
    pub verifier_major: Option<u32>,
    /// Incremental backups newer than the one verified (the newest full one).
    #[serde(default)]
    pub newer_incrementals: u32,
}
