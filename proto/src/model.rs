//! Domain types shared by agent and collector: what a probe measured, independent of the wire.
//!
//! Times are `DateTime<Utc>`; raw numbers carry their unit in the field name. Every type
//! serialises to the JSON the collector stores and serves in its API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod archive;
mod backup_tool;
mod drill;
pub mod labels;
mod restore;
mod settings;
pub use archive::*;
pub use backup_tool::*;
pub use drill::*;
pub use restore::*;
pub use settings::*;

/// The kind of probe. Its name is the first part of a check id (`backup.daily`, `wal.main`) and
/// the kind's name in stored rows and JSON: one name, [`ProbeKind::name`].
///
/// The aliases are the names used before migration 0012 (`backup_dir`, `wal_archive`,
/// `archive_dir`, `pg_back_rest`): results stored then keep them until retention removes them,
/// and still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A directory of backup files (`[[backup_dir]]`).
    #[serde(alias = "backup_dir")]
    Backup,
    Disk,
    /// A PostgreSQL server's WAL archiving (`[[wal]]`).
    #[serde(alias = "wal_archive")]
    Wal,
    /// The WAL archive directory (`[[archive_dir]]`).
    #[serde(alias = "archive_dir")]
    Archive,
    Restore,
    #[serde(alias = "pg_back_rest")]
    PgBackRest,
    Barman,
    Drill,
    Settings,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 9] = [
        ProbeKind::Backup,
        ProbeKind::Disk,
        ProbeKind::Wal,
        ProbeKind::Archive,
        ProbeKind::Restore,
        ProbeKind::PgBackRest,
        ProbeKind::Barman,
        ProbeKind::Drill,
        ProbeKind::Settings,
    ];

    /// The kind's one name (its serde name): the check id prefix, the stored kind, the JSON key
    /// of its observation.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Backup => "backup",
            ProbeKind::Disk => "disk",
            ProbeKind::Wal => "wal",
            ProbeKind::Archive => "archive",
            ProbeKind::Restore => "restore",
            ProbeKind::PgBackRest => "pgbackrest",
            ProbeKind::Barman => "barman",
            ProbeKind::Drill => "drill",
            ProbeKind::Settings => "settings",
        }
    }

    /// The kind of a name: a check id prefix, or a stored kind (also one used before migration 0012).
    pub fn from_name(name: &str) -> Option<Self> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        Self::deserialize(name).ok()
    }

    /// The kind of a check id (`wal.main` → `Wal`).
    pub fn of_check(check_id: &str) -> Option<Self> {
        check_id
            .split_once('.')
            .and_then(|(k, _)| Self::from_name(k))
    }
}

/// The disk probe name the agent reports its own spool under (`disk.agent-spool`), reserved in
/// the agent's `[[disk]]` configuration. Judged by the procedure's disk limits, never by a
/// host's `[thresholds.disk]` overrides: those are about the backup filesystems.
pub const AGENT_SPOOL_PROBE: &str = "agent-spool";

/// Stable id of a check on a host: `<kind prefix>.<probe name>`.
pub fn check_id(kind: ProbeKind, name: &str) -> String {
    format!("{}.{}", kind.name(), name)
}

/// One measurement as the agent took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Unique id, the idempotency key from the agent's spool to the collector's store.
    pub result_id: String,
    pub kind: ProbeKind,
    pub name: String,
    /// Agent clock.
    pub measured_at: DateTime<Utc>,
    pub duration_ms: u32,
    pub interval_secs: u32,
    /// The probe could not observe at all ("cannot connect: ..."): an observation of its own.
    pub error: Option<String>,
    pub observation: Option<Observation>,
}

impl ProbeResult {
    pub fn check_id(&self) -> String {
        check_id(self.kind, &self.name)
    }
}

/// What a probe measured, under its kind's name (`{"wal": {...}}`); the aliases are the names
/// used before migration 0012, as on [`ProbeKind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observation {
    #[serde(alias = "backup_dir")]
    Backup(BackupDirObs),
    Disk(DiskObs),
    #[serde(alias = "wal_archive")]
    Wal(WalObs),
    // Boxed: it is several times larger than the other observations.
    #[serde(alias = "archive_dir")]
    Archive(Box<ArchiveDirObs>),
    Restore(Box<RestoreObs>),
    #[serde(alias = "pg_back_rest")]
    PgBackRest(Box<BackupToolObs>),
    Barman(Box<BackupToolObs>),
    Drill(Box<DrillObs>),
    Settings(SettingsObs),
}

impl Observation {
    pub fn kind(&self) -> ProbeKind {
        match self {
            Observation::Backup(_) => ProbeKind::Backup,
            Observation::Disk(_) => ProbeKind::Disk,
            Observation::Wal(_) => ProbeKind::Wal,
            Observation::Archive(_) => ProbeKind::Archive,
            Observation::Restore(_) => ProbeKind::Restore,
            Observation::PgBackRest(_) => ProbeKind::PgBackRest,
            Observation::Barman(_) => ProbeKind::Barman,
            Observation::Drill(_) => ProbeKind::Drill,
            Observation::Settings(_) => ProbeKind::Settings,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupDirObs {
    pub path: String,
    pub exists: bool,
    pub read_error: Option<String>,
    pub file_count: u64,
    pub total_bytes: u64,
    pub newest: Option<NewestFile>,
    pub ignored_files: u64,
    pub entries_scanned: u64,
    pub truncated: bool,
    pub problem_count: u64,
    pub problems: Vec<String>,
    /// What the agent's configuration expects, in seconds (collector thresholds win).
    pub expected_max_age_secs: Option<u64>,
    /// Files dated more than [`FUTURE_TOLERANCE_SECS`] after the measurement; they are never
    /// `newest`, so one of them cannot hide that real backups stopped.
    pub future_files: u64,
    pub newest_future: Option<NewestFile>,
    /// The newest plain pg_basebackup directory met in the scan (`backup_manifest`, else
    /// `backup_label`): start, end, duration, WAL range and size for the monthly trends.
    #[serde(default)]
    pub newest_base_backup: Option<BaseBackup>,
}

/// How far in the future a backup file's mtime may be before it counts as a clock problem
/// rather than a backup (seconds).
pub const FUTURE_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewestFile {
    pub path: String,
    pub mtime: DateTime<Utc>,
    pub size_bytes: u64,
    /// measured_at - mtime on the agent's clock; negative for a file dated in the future.
    pub age_secs: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskObs {
    pub path: String,
    pub error: Option<String>,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_avail: u64,
    pub device_id: u64,
    pub mount_point: Option<String>,
    pub fs_type: Option<String>,
    /// Mounted read-only (statvfs `ST_RDONLY`).
    #[serde(default)]
    pub read_only: bool,
    /// The mount point the agent's configuration expects the path on (`mount_point`).
    #[serde(default)]
    pub expected_mount_point: Option<String>,
    /// The configuration allows the filesystem to be read-only (`allow_read_only`).
    #[serde(default)]
    pub read_only_allowed: bool,
}

/// Disk use is computed here only, as `df` does: root-reserved blocks are neither used nor
/// available, so capacity is used + available, not the total.
impl DiskObs {
    /// total − free.
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.free_bytes)
    }

    /// used + available: what `df`'s Use% divides by.
    pub fn capacity_bytes(&self) -> u64 {
        self.used_bytes().saturating_add(self.avail_bytes)
    }

    /// `df`'s Use% of the space ([`df_used_pct`]).
    pub fn used_pct(&self) -> Option<u8> {
        df_used_pct(self.total_bytes, self.free_bytes, self.avail_bytes)
    }

    /// `df -i`'s IUse%.
    pub fn inodes_used_pct(&self) -> Option<u8> {
        df_used_pct(self.inodes_total, self.inodes_free, self.inodes_avail)
    }
}

/// `df`'s Use%: ⌈100 · used / (used + avail)⌉ with used = total - free. `None` when the
/// filesystem reports no usable space at all.
pub fn df_used_pct(total: u64, free: u64, avail: u64) -> Option<u8> {
    let used = total.saturating_sub(free) as u128;
    let denom = used + avail as u128;
    if denom == 0 {
        return None;
    }
    Some(((100 * used).div_ceil(denom)).min(100) as u8)
}

/// A WAL position as PostgreSQL prints it: `"16/B374D848"` → 0x16_B374D848. Each half is at
/// most 32 bits, as in `pg_lsn_in`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some(hi << 32 | lo)
}

/// Size of the long page header that starts every WAL segment: a position this far into its
/// segment means nothing was written into the segment yet.
pub const WAL_SEGMENT_HEADER_BYTES: u64 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingSource {
    /// `pg_ls_archive_statusdir()`: exact.
    ArchiveStatusdir,
    /// Not readable; `pending_note` says why.
    #[default]
    Unavailable,
    /// Estimated from `pg_current_wal_lsn()` and `last_archived_wal` (PostgreSQL 10 and 11, or
    /// no pg_monitor): the count of segments between them, the oldest one's age from its file
    /// when readable. `pending_note` says so.
    WalPositions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalObs {
    pub server_version_num: i32,
    pub in_recovery: bool,
    pub archive_mode: String,
    pub archive_command: String,
    pub archive_library: String,
    pub archive_timeout_secs: i64,
    pub wal_segment_size_bytes: i64,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    /// Database clock, read in the same statement as the pending list.
    pub db_now: Option<DateTime<Utc>>,
    pub current_lsn: Option<String>,
    pub current_wal_file: Option<String>,
    pub pending_source: PendingSource,
    pub ready_segments: i64,
    pub ready_history: i64,
    pub ready_other: i64,
    pub oldest_ready_name: Option<String>,
    /// db_now - modification of the oldest waiting segment or history file.
    pub oldest_ready_age_secs: Option<i64>,
    pub pending_note: Option<String>,
    /// The agent asks for the A8 exposure advisory (`[[wal]] exposure_advisory`).
    #[serde(default)]
    pub exposure_advisory: bool,
    /// last_archived_time − when its segment became ready (queue wait + archive_command).
    #[serde(default)]
    pub last_archive_latency_ms: Option<i64>,
    /// The next transaction id (primary only): it moves only when a transaction writes.
    #[serde(default)]
    pub next_xid: Option<i64>,
    /// Earliest moment (database clock) a write transaction may have put WAL into the
    /// current, not yet switched segment, tracked by the agent across samples; `None` = no
    /// write transaction since the segment began, as far as the agent saw.
    #[serde(default)]
    pub unswitched_writes_since: Option<DateTime<Utc>>,
    /// Why `unswitched_writes_since` is unknown or a lower bound.
    #[serde(default)]
    pub unswitched_writes_note: Option<String>,
    /// pg_control_system().system_identifier (decimal): shared by a primary, its standbys and
    /// every restore of their backups, so a drill is matched to the cluster it proves.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// Base backups the server is sending now (PostgreSQL 13 and later).
    #[serde(default)]
    pub base_backups_running: Vec<RunningBaseBackup>,
}

/// One base backup in progress on the server (`pg_stat_progress_basebackup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningBaseBackup {
    pub pid: i32,
    pub application_name: Option<String>,
    pub phase: String,
    /// Since the WAL sender started, on the database clock.
    pub running_secs: i64,
}

#[cfg(test)]
mod kind_tests {
    use super::ProbeKind;

    #[test]
    fn a_kind_has_one_name_for_check_ids_rows_and_json() {
        for k in ProbeKind::ALL {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::from(k.name()))
            );
            assert_eq!(ProbeKind::from_name(k.name()), Some(k));
            assert_eq!(ProbeKind::of_check(&super::check_id(k, "main")), Some(k));
            assert!(!k.name().contains(['.', '_', '-']), "{k:?}");
        }
    }

    #[test]
    fn names_stored_before_migration_0012_still_read() {
        for (old, k) in [
            ("backup_dir", ProbeKind::Backup),
            ("wal_archive", ProbeKind::Wal),
            ("archive_dir", ProbeKind::Archive),
            ("pg_back_rest", ProbeKind::PgBackRest),
        ] {
            assert_eq!(ProbeKind::from_name(old), Some(k));
        }
        assert_eq!(ProbeKind::from_name("agent"), None);
        assert_eq!(ProbeKind::of_check("agent"), None);
    }
}
