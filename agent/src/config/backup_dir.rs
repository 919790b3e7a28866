//! `[[backup_dir]]`: the backup directory probe's configuration.
//!
//! Defaults from the operations procedure: `daily` (/backup/daily, 24 h) and `weekly`
//! (/backup/weekly, 7 d), every 6 h. A directory named `daily` or `weekly` without `max_age`
//! gets the procedure's age for it.

use super::effective::{Settings, duration};
use super::{At, Cx, Section, Valid, is_file_not_dir};
use crate::probe::backup_dir::{
    BackupDirProbe, DEFAULT_MAX_DEPTH, DEFAULT_MAX_ENTRIES, default_ignore_suffixes,
};
use backwatch_common::config::de_opt_duration;
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const BACKUP_INTERVAL: Duration = Duration::from_secs(6 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackupDir {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// A run taking longer is reported as timed out (default `schedule.timeout`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    pub max_depth: Option<u32>,
    pub max_entries: Option<u64>,
    pub ignore_suffixes: Option<Vec<String>>,
    /// File name patterns of backup files (`*` any run; default every file).
    pub include: Option<Vec<String>>,
}

/// The procedure's two backup sets, when the file has no `backup_dir` list.
pub fn defaults() -> Vec<RawBackupDir> {
    let dir = |name: &str, path: &str, max_age: Duration| RawBackupDir {
        name: name.into(),
        path: path.into(),
        max_age: Some(max_age),
        interval: None,
        timeout: None,
        max_depth: None,
        max_entries: None,
        ignore_suffixes: None,
        include: None,
    };
    vec![
        dir("daily", "/backup/daily", DAY),
        dir("weekly", "/backup/weekly", DAY * 7),
    ]
}

impl Section for RawBackupDir {
    const KEY: &'static str = "backup_dir";
    const KIND: ProbeKind = ProbeKind::Backup;
    const INTERVAL: Duration = BACKUP_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        if is_file_not_dir(&self.path) {
            cx.problems.push(
                at.key("path"),
                format!("{} is not a directory", self.path.display()),
            );
        }
        let timeout = cx.timeout(at, self.timeout, cx.default_timeout);
        let max_age = self.max_age.or(match self.name.as_str() {
            "daily" => Some(DAY),
            "weekly" => Some(DAY * 7),
            _ => None,
        });
        let probe = BackupDirProbe {
            name: self.name,
            path: self.path,
            max_age,
            max_depth: self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            max_entries: self.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            ignore_suffixes: self.ignore_suffixes.unwrap_or_else(default_ignore_suffixes),
            include: self.include.unwrap_or_default(),
        };
        if probe
            .include
            .iter()
            .any(|p| p.is_empty() || p.contains('/'))
        {
            cx.problems.push(
                at.key("include"),
                "patterns match file names: none may be empty or hold a '/'",
            );
        }
        let settings = Settings::default()
            .path("path", &probe.path)
            .or_note(
                "max_age",
                probe.max_age,
                duration,
                "the collector's threshold or the procedure's default applies",
            )
            .count("max_depth", u64::from(probe.max_depth))
            .count("max_entries", probe.max_entries)
            .strings("ignore_suffixes", &probe.ignore_suffixes)
            .strings("include", &probe.include)
            .duration("timeout", timeout);
        Some(Valid {
            probe: Box::new(probe),
            timeout,
            settings,
        })
    }
}
