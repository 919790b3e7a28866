//! What a backup tool's own catalogue says (`pgbackrest.<name>`, `barman.<name>`), as raw
//! facts: one [`BackupSet`] per pgBackRest stanza or Barman server. The rules decide.
//!
//! Ages are on the agent's clock (`measured_at − stop_time`), like backup file ages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupToolObs {
    /// The command lines run.
    pub commands: Vec<String>,
    /// The tool could not be run, or its output not understood.
    pub error: Option<String>,
    pub sets: Vec<BackupSet>,
    /// What the agent's configuration expects (the rule's defaults otherwise).
    pub expected_max_age_secs: Option<u64>,
    pub expected_max_full_age_secs: Option<u64>,
    #[serde(default)]
    pub expected_max_duration_secs: Option<u64>,
    #[serde(default)]
    pub expected_min_size_ratio: Option<f64>,
    #[serde(default)]
    pub expected_min_full_backups: Option<u32>,
    /// The linked server is a standby: the primary's probe judges these sets.
    #[serde(default)]
    pub on_standby: bool,
    /// The linked server could not be asked its role; the sets are judged here.
    #[serde(default)]
    pub role_error: Option<String>,
    /// The tool's own version ("2.45"), where the probe asks it (pgBackRest).
    #[serde(default)]
    pub tool_version: Option<String>,
    /// The linked server's major version, when the section is linked and the server answered.
    #[serde(default)]
    pub server_major: Option<u32>,
}

impl BackupToolObs {
    /// What these sets are, whichever host reports them: every set's name and the cluster it
    /// backs up (`main@7321…`), sorted; `None` when a set's cluster is not known or there is
    /// no set. Two hosts reporting the same identity watch the same backups.
    #[must_use]
    pub fn set_identity(&self) -> Option<String> {
        let mut ids: Vec<String> = self
            .sets
            .iter()
            .map(|s| Some(format!("{}@{}", s.name, s.system_identifier.as_deref()?)))
            .collect::<Option<_>>()?;
        ids.sort();
        (!ids.is_empty()).then(|| ids.join(","))
    }

    /// The set that speaks for the check where one figure stands for all (metrics, rollups,
    /// charts): the stalest, as the verdict's worst set usually is. A set without any backup
    /// is the stalest of all; among sets with one, the one whose newest backup is oldest.
    #[must_use]
    pub fn stalest_set(&self) -> Option<&BackupSet> {
        self.sets.iter().max_by_key(|s| match &s.newest {
            None => i64::MAX,
            Some(b) => b.age_secs.unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSet {
    /// Stanza or server.
    pub name: String,
    /// pgBackRest `status.code`; Barman: 0 when `barman check` passes, else 1.
    pub status_code: i32,
    pub status_message: Option<String>,
    /// The tool's own failing checks, "name: hint".
    pub failing_checks: Vec<String>,
    pub backup_running: bool,
    pub backup_count: u64,
    /// Newest successful backup of any type.
    pub newest: Option<ToolBackup>,
    pub newest_full: Option<ToolBackup>,
    /// The latest attempt, when it failed after `newest`.
    pub newest_failed: Option<ToolBackup>,
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
    /// The oldest successful backup: where the recoverable window starts (R32).
    #[serde(default)]
    pub oldest: Option<ToolBackup>,
    /// When `archive_max` was stored in the repository (pgBackRest: its modification time,
    /// from `repo-ls`): where the recoverable window ends.
    #[serde(default)]
    pub archive_max_time: Option<DateTime<Utc>>,
    /// The successful full backup before `newest_full`: what its size is compared with.
    #[serde(default)]
    pub previous_full: Option<ToolBackup>,
    /// Successful full backups kept.
    #[serde(default)]
    pub full_count: u64,
    /// How long the running backup has run (at least), on the agent's clock.
    #[serde(default)]
    pub backup_running_secs: Option<i64>,
    /// The cluster's system identifier as the tool records it (decimal).
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// pgBackRest: the repository this set is (its name is then `<stanza>/repo<N>`), when the
    /// stanza is judged per repository; `None` when the set is the whole stanza.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolBackup {
    pub label: String,
    /// "full", "diff" or "incr".
    #[serde(rename = "type")]
    pub kind: String,
    pub start_time: Option<DateTime<Utc>>,
    pub stop_time: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    pub age_secs: Option<i64>,
    /// Pages whose checksum did not match were found while copying (pgBackRest `error: true`):
    /// the backup completed; the cluster has corrupted pages.
    #[serde(default)]
    pub page_checksum_errors: bool,
}
