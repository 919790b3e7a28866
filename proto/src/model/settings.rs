//! WAL configuration compliance (`settings.<name>`): what the server says its settings are.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsObs {
    pub in_recovery: bool,
    pub server_version_num: i32,
    /// `minimal`, `replica` or `logical`.
    pub wal_level: String,
    /// `off`, `on` or `always`.
    pub archive_mode: String,
    /// Whether archive_command is non-empty (its text is never sent here).
    pub archive_command_set: bool,
    /// PostgreSQL 15 and later; empty before and when unset.
    pub archive_library: String,
    /// 0 = off.
    pub archive_timeout_secs: i64,
}
