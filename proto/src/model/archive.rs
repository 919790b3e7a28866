//! What the archive directory probe measured (`archive.<name>`): access, contents, retention,
//! continuity and PostgreSQL's view of archiving, as raw facts. The rules decide.
//!
//! Segment names are PostgreSQL's: 24 upper-case hex digits, timeline, log and segment, 8 each.
//! Ages are on the agent's clock (`measured_at − mtime`), like backup file ages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The first segment `initdb` writes: an archive that still holds it has kept all WAL the
/// cluster ever archived, whatever its age.
pub const FIRST_SEGMENT: &str = "000000010000000000000001";

/// Where the segment size used for the segment arithmetic came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeSource {
    /// `wal_segment_size` of the linked server.
    Postgresql,
    /// The most common size of the uncompressed segments in the directory.
    Archive,
    /// PostgreSQL's default, 16 MiB.
    #[default]
    Default,
}

impl SizeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SizeSource::Postgresql => "postgresql",
            SizeSource::Archive => "archive",
            SizeSource::Default => "default",
        }
    }

    /// Unknown text (a newer agent) reads as the weakest source.
    pub fn parse(s: &str) -> Self {
        match s {
            "postgresql" => SizeSource::Postgresql,
            "archive" => SizeSource::Archive,
            _ => SizeSource::Default,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveDirObs {
    pub path: String,
    pub exists: bool,
    /// The directory cannot be listed: OS error text and what to grant.
    pub read_error: Option<String>,
    pub access: Option<DirAccess>,
    /// Expected owner and group (names or numeric ids); `None` = not checked.
    pub expected_owner: Option<String>,
    pub expected_group: Option<String>,
    pub expected_mode: Option<u32>,
    /// What the agent's configuration asks for (collector thresholds win).
    pub expected_min_retention_secs: Option<u64>,
    pub entries_scanned: u64,
    pub truncated: bool,
    pub newer_than_scan: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub compressed_segments: u64,
    pub history_files: u64,
    pub backup_files: u64,
    pub partial_files: u64,
    pub other_files: u64,
    pub other_names: Vec<String>,
    pub files_open_to_others: u64,
    pub first_open_to_others: Option<String>,
    pub oldest_segment: Option<ArchivedFile>,
    pub newest_segment: Option<ArchivedFile>,
    pub daily: Vec<DayVolume>,
    pub wal_segment_size_bytes: u64,
    pub segment_size_source: SizeSource,
    /// 0 = unknown.
    pub timeline: u32,
    pub timeline_source: Option<String>,
    pub timeline_note: Option<String>,
    pub missing_history: Option<String>,
    pub continuity: Option<Continuity>,
    pub continuity_note: Option<String>,
    pub postgres: Option<ArchiverView>,
    pub newest_backup: Option<BackupHistory>,
    /// Only when the archive is declared encrypted.
    #[serde(default)]
    pub encryption: Option<EncryptionAudit>,
    /// Declared asynchronous: archived by PostgreSQL does not mean present here yet.
    #[serde(default)]
    pub asynchronous: bool,
    /// The recoverable window from the backups whose history files are here (R32).
    #[serde(default)]
    pub window: Option<RecoveryWindow>,
    /// Why there is no window (no backup history file, no restorable backup, not scanned).
    #[serde(default)]
    pub window_note: Option<String>,
}

/// From which moment to which moment a restore could reach (docs/checks.md R32).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryWindow {
    /// History file of the oldest backup whose WAL is unbroken to `end_segment`.
    pub earliest_backup: String,
    /// Its consistency point: STOP TIME when in UTC (`start_exact`), else the history file's
    /// modification time.
    pub start: DateTime<Utc>,
    pub start_exact: bool,
    /// History file of the newest backup restorable to `end_segment`.
    pub latest_backup: String,
    pub end_segment: String,
    /// When `end_segment` was complete in the archive (its mtime, agent clock).
    pub end: DateTime<Utc>,
    /// First missing or short segment after the run: the window is cut there.
    pub cut_at: Option<String>,
    pub segments_after_cut: u64,
    pub backups: u64,
}

/// The newest segments of an archive declared encrypted, checked for content readable without
/// a key (plain WAL by its page header, or a plain compression container).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EncryptionAudit {
    pub sampled: u64,
    pub readable: u64,
    /// The newest readable segment and what it is ("plain WAL page header").
    pub first_readable: Option<String>,
    pub first_readable_kind: Option<String>,
    pub unreadable: u64,
    pub first_error: Option<String>,
}

/// The newest base backup's history file, as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupHistory {
    pub name: String,
    /// Not readable or not parsable; the other fields are then empty.
    pub error: Option<String>,
    pub label: Option<String>,
    /// As written, in the server's log_timezone.
    pub start_time: Option<String>,
    pub stop_time: Option<String>,
    pub duration_secs: Option<i64>,
    pub stop_segment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirAccess {
    pub uid: u32,
    /// User name of `uid`; `None` when it has none.
    pub owner: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
    /// `st_mode & 0o7777`.
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedFile {
    pub name: String,
    pub mtime: DateTime<Utc>,
    pub size_bytes: u64,
    /// measured_at − mtime on the agent's clock; negative for a file dated in the future.
    pub age_secs: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayVolume {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub bytes: u64,
    pub segments: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Continuity {
    /// Backup history file the range starts at; `None` = the range starts at the oldest segment.
    pub newest_backup: Option<String>,
    pub range_start: String,
    pub range_end: String,
    pub range_segments: u64,
    pub gap_count: u64,
    pub missing_segments: u64,
    /// The oldest gaps first.
    pub gaps: Vec<ArchiveGap>,
    pub missing_before_range: u64,
    pub first_missing_before_range: Option<String>,
    pub short_segments: u64,
    /// The oldest first.
    pub short: Vec<ShortSegment>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveGap {
    pub first_missing: String,
    pub missing: u64,
    /// Positions between the end of the gap and `range_end`.
    pub segments_after: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShortSegment {
    pub name: String,
    pub size_bytes: u64,
    pub segments_after: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiverView {
    pub wal_probe: String,
    /// PostgreSQL could not be asked; every other field is then empty.
    pub error: Option<String>,
    pub in_recovery: bool,
    pub archive_mode: String,
    /// Credentials masked.
    pub archive_command: String,
    pub archive_library: String,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    /// The archive's file for `last_archived_wal`, plain or compressed; `None` = not there.
    pub last_archived_file: Option<ArchivedFile>,
    pub last_archived_uncompressed_bytes: Option<u64>,
    pub cluster_created_at: Option<DateTime<Utc>>,
    pub cluster_age_secs: Option<i64>,
}
