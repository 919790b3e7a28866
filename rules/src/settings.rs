//! WAL configuration compliance (`settings.<name>`, docs/checks.md R34): does the cluster run
//! with the settings the operations procedure asks for?
//!
//! - `wal_level` must be `replica` or `logical`: `minimal` WAL cannot restore a base backup;
//! - `archive_mode` must be `on` or `always`: `off` archives nothing;
//! - with archiving on, `archive_command` or `archive_library` must be set: otherwise
//!   PostgreSQL keeps every segment in `pg_wal` and archives nothing; and not both from
//!   PostgreSQL 16 on, where the archiver then refuses to start;
//! - `archive_timeout` must be set (not 0) and at most `max_archive_timeout` (procedure:
//!   300 s): it bounds how long a quiet server's last writes wait in an unswitched segment.
//!
//! Each setting that differs is named, with its value and what is expected, in one warning:
//! the server works, but it does not give the recovery the procedure promises. A standby is
//! judged the same way: it runs with these settings the moment it is promoted.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::SettingsObs;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsLimits {
    /// The longest `archive_timeout` allowed (procedure: 300 s).
    #[serde(serialize_with = "crate::wal::ser_secs")]
    pub max_archive_timeout: Duration,
}

impl Default for SettingsLimits {
    fn default() -> Self {
        SettingsLimits {
            max_archive_timeout: Duration::from_secs(300),
        }
    }
}

/// One setting that differs from the procedure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

#[must_use]
pub fn judge(obs: &SettingsObs, limits: &SettingsLimits) -> Verdict {
    let differ = differences(obs, limits);
    let role = if obs.in_recovery { " (standby)" } else { "" };
    let verdict = if differ.is_empty() {
        Verdict::new(
            Status::Ok,
            format!(
                "wal_level {}, archive_mode {}, archive_timeout {}: as the procedure asks{role}",
                obs.wal_level,
                obs.archive_mode,
                human::duration(obs.archive_timeout_secs)
            ),
        )
    } else {
        let named: Vec<String> = differ
            .iter()
            .map(|d| format!("{} = {} (expected {})", d.setting, d.value, d.expected))
            .collect();
        Verdict::new(
            Status::Warning,
            format!(
                "{} differ{} from the procedure{role}: {}",
                if differ.len() == 1 {
                    "1 setting".to_string()
                } else {
                    format!("{} settings", differ.len())
                },
                if differ.len() == 1 { "s" } else { "" },
                named.join("; ")
            ),
        )
        .with_procedure(procedure::SETTINGS)
    };
    verdict.with_details(json!({
        "in_recovery": obs.in_recovery,
        "server_version_num": obs.server_version_num,
        "wal_level": obs.wal_level,
        "archive_mode": obs.archive_mode,
        "archive_command_set": obs.archive_command_set,
        "archive_library": obs.archive_library,
        "archive_timeout_secs": obs.archive_timeout_secs,
        "max_archive_timeout_secs": limits.max_archive_timeout.as_secs(),
        "differences": differ,
    }))
}

fn differences(obs: &SettingsObs, limits: &SettingsLimits) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |setting, value: &str, expected: &str| {
        out.push(Difference {
            setting,
            value: if value.is_empty() {
                "''".into()
            } else {
                value.into()
            },
            expected: expected.into(),
        })
    };
    if !matches!(obs.wal_level.as_str(), "replica" | "logical") {
        differ("wal_level", &obs.wal_level, "replica or logical");
    }
    let archiving = matches!(obs.archive_mode.as_str(), "on" | "always");
    if !archiving {
        differ("archive_mode", &obs.archive_mode, "on");
    }
    if archiving && !obs.archive_command_set && obs.archive_library.is_empty() {
        differ(
            "archive_command",
            "",
            "a command that copies the segment (or archive_library)",
        );
    }
    // PostgreSQL 15 lets archive_library win; from 16 the archiver refuses to start with both
    // set ("both archive_command and archive_library set") and archives nothing, while
    // pg_stat_archiver's failure count never moves.
    if archiving
        && obs.server_version_num >= 160_000
        && obs.archive_command_set
        && !obs.archive_library.is_empty()
    {
        differ(
            "archive_library",
            &obs.archive_library,
            "'' while archive_command is set (PostgreSQL 16 and later archive nothing with both)",
        );
    }
    let max = limits.max_archive_timeout.as_secs();
    let timeout = obs.archive_timeout_secs;
    if timeout <= 0 {
        differ(
            "archive_timeout",
            "0 (off)",
            &format!("set, at most {}", human::duration(max as i64)),
        );
    } else if u64::try_from(timeout).is_ok_and(|t| t > max) {
        differ(
            "archive_timeout",
            &human::duration(timeout),
            &format!("at most {}", human::duration(max as i64)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compliant() -> SettingsObs {
        SettingsObs {
            in_recovery: false,
            server_version_num: 150_000,
            wal_level: "replica".into(),
            archive_mode: "on".into(),
            archive_command_set: true,
            archive_library: String::new(),
            archive_timeout_secs: 300,
        }
    }

    fn judge_default(obs: &SettingsObs) -> Verdict {
        judge(obs, &SettingsLimits::default())
    }

    #[test]
    fn the_procedures_settings_are_ok() {
        let v = judge_default(&compliant());
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(v.procedure.is_none());
    }

    #[test]
    fn logical_and_always_are_as_good_as_replica_and_on() {
        let obs = SettingsObs {
            wal_level: "logical".into(),
            archive_mode: "always".into(),
            in_recovery: true,
            ..compliant()
        };
        let v = judge_default(&obs);
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(v.summary.ends_with("(standby)"), "{}", v.summary);
    }

    #[test]
    fn every_setting_that_differs_is_named_in_one_warning() {
        let obs = SettingsObs {
            wal_level: "minimal".into(),
            archive_mode: "off".into(),
            archive_timeout_secs: 0,
            ..compliant()
        };
        let v = judge_default(&obs);
        assert_eq!(v.status, Status::Warning);
        assert_eq!(
            v.summary,
            "3 settings differ from the procedure: wal_level = minimal (expected replica or logical); \
             archive_mode = off (expected on); archive_timeout = 0 (off) (expected set, at most 5 min)"
        );
        assert_eq!(v.details["differences"].as_array().map(Vec::len), Some(3));
        assert!(v.procedure.is_some());
    }

    #[test]
    fn archiving_on_without_a_command_or_library_is_named() {
        let obs = SettingsObs {
            archive_command_set: false,
            ..compliant()
        };
        let v = judge_default(&obs);
        assert_eq!(v.status, Status::Warning);
        assert!(v.summary.starts_with("1 setting differs"), "{}", v.summary);
        assert!(v.summary.contains("archive_command = ''"), "{}", v.summary);
        let library = SettingsObs {
            archive_command_set: false,
            archive_library: "basic_archive".into(),
            ..compliant()
        };
        assert_eq!(judge_default(&library).status, Status::Ok);
    }

    #[test]
    fn both_a_command_and_a_library_archive_nothing_from_16_on() {
        let both = |server_version_num| SettingsObs {
            server_version_num,
            archive_library: "basic_archive".into(),
            ..compliant()
        };
        let v = judge_default(&both(160_000));
        assert_eq!(v.status, Status::Warning);
        assert!(
            v.summary.contains(
                "archive_library = basic_archive (expected '' while archive_command is set"
            ),
            "{}",
            v.summary
        );
        // PostgreSQL 15 uses the library and ignores the command.
        assert_eq!(judge_default(&both(150_000)).status, Status::Ok);
    }

    #[test]
    fn archive_timeout_above_the_limit_is_a_warning_and_the_limit_is_configurable() {
        let obs = SettingsObs {
            archive_timeout_secs: 600,
            ..compliant()
        };
        let v = judge_default(&obs);
        assert_eq!(v.status, Status::Warning);
        assert!(
            v.summary
                .contains("archive_timeout = 10 min (expected at most 5 min)"),
            "{}",
            v.summary
        );
        let relaxed = SettingsLimits {
            max_archive_timeout: Duration::from_secs(900),
        };
        assert_eq!(judge(&obs, &relaxed).status, Status::Ok);
    }
}
