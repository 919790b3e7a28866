//! Backup freshness of a plain backup directory (docs/checks.md R4–R8).
//!
//! The age was computed on the agent from the agent's own clock (measured_at - mtime), so a
//! skewed collector clock can neither create nor hide an alert.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::BackupDirObs;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupLimits {
    /// Newest backup older than this is critical. `None`: the agent's expectation for the
    /// directory, or the procedure's default for its name ([`default_max_age`]).
    #[serde(with = "opt_secs")]
    pub max_age: Option<Duration>,
    /// Added to `max_age` before alerting (default 0, as the procedure says).
    #[serde(with = "secs")]
    pub grace: Duration,
    /// A newest file dated further in the future than this means a clock problem.
    #[serde(with = "secs")]
    pub future_tolerance: Duration,
    /// Newest backup smaller than this many bytes is suspicious (warning).
    pub min_size_bytes: Option<u64>,
    /// The newest plain base backup taking longer is a warning (default 4 h, pgMonitor's).
    #[serde(with = "secs")]
    pub max_duration: Duration,
}

impl Default for BackupLimits {
    fn default() -> Self {
        BackupLimits {
            max_age: None,
            grace: Duration::ZERO,
            future_tolerance: Duration::from_secs(300),
            min_size_bytes: None,
            max_duration: Duration::from_secs(4 * 3600),
        }
    }
}

/// The procedure's limit for a directory by its name: weekly 7 days, anything else 24 h.
pub fn default_max_age(name: &str) -> Duration {
    match name {
        "weekly" => Duration::from_secs(7 * 24 * 3600),
        _ => Duration::from_secs(24 * 3600),
    }
}

/// `fallback` applies when neither the collector's configuration (`l.max_age`) nor the agent's
/// (`expected_max_age_secs`) sets a limit, in that order of precedence.
pub fn freshness(obs: &BackupDirObs, l: &BackupLimits, fallback: Duration) -> Verdict {
    let mut v = judge(obs, l, fallback);
    // Files dated in the future were kept out of `newest` by the agent: they never make a
    // stale directory look fresh, but they do mean a clock is wrong somewhere.
    if let Some(f) = &obs.newest_future {
        let name = f.path.rsplit('/').next().unwrap_or(f.path.as_str());
        v.summary.push_str(&format!(
            "; {} files dated in the future (newest {name}, {} ahead): check the clocks",
            obs.future_files,
            human::duration(f.age_secs.saturating_neg())
        ));
        if v.status == Status::Ok {
            v.status = Status::Warning;
            v.procedure = Some(procedure::BACKUP);
        }
    }
    if obs.truncated {
        v.summary.push_str(&format!(
            "; scan stopped after {} entries, a newer file may exist among those not examined",
            obs.entries_scanned
        ));
    }
    // A plain pg_basebackup directory: its duration and size, for the monthly trends; a
    // duration above `max_duration` is a warning (R8).
    if let Some(b) = &obs.newest_base_backup {
        if let Some(secs) = b.duration_secs {
            // An incremental one (PostgreSQL 17 and later) holds only the changed blocks.
            v.summary.push_str(&format!(
                "; newest base backup{} took {} ({})",
                if b.incremental { " (incremental)" } else { "" },
                human::duration(secs.max(0)),
                human::bytes(b.size_bytes)
            ));
            if u64::try_from(secs).is_ok_and(|s| s > l.max_duration.as_secs()) {
                v.summary.push_str(&format!(
                    ", longer than {}",
                    human::duration(l.max_duration.as_secs() as i64)
                ));
                if v.status == Status::Ok {
                    v.status = Status::Warning;
                    v.procedure = Some(procedure::BACKUP);
                }
            }
        }
        if v.details.is_object() {
            v.details["newest_base_backup"] = json!(b);
        } else {
            v.details = json!({ "newest_base_backup": b });
        }
    }
    v
}

fn judge(obs: &BackupDirObs, l: &BackupLimits, fallback: Duration) -> Verdict {
    let max_age = l
        .max_age
        .or(obs.expected_max_age_secs.map(Duration::from_secs))
        .unwrap_or(fallback);
    let limit = max_age.saturating_add(l.grace);
    let limit_secs = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
    let base = json!({
        "path": obs.path,
        "max_age_secs": limit_secs,
        "file_count": obs.file_count,
        "total_bytes": obs.total_bytes,
        "problem_count": obs.problem_count,
        "problems": obs.problems,
    });
    // Entries the scan could not read (a backup's own 0700 directory owned by another user,
    // an I/O error): said with every verdict, as the likely cause of "no file" or "too old".
    // Not a status of its own: a mount point's root-only `lost+found` is one too.
    let unread = match obs.problems.first() {
        Some(first) if obs.problem_count > 0 => format!(
            "; {} {} could not be read (first: {first})",
            obs.problem_count,
            if obs.problem_count == 1 {
                "entry"
            } else {
                "entries"
            }
        ),
        _ => String::new(),
    };
    let critical = |summary: String| {
        Verdict::new(Status::Critical, summary)
            .with_details(base.clone())
            .with_procedure(procedure::BACKUP)
    };
    if !obs.exists {
        return critical(format!("backup directory {} is missing", obs.path));
    }
    if let Some(err) = &obs.read_error {
        return critical(format!("cannot read backup directory {}: {err}", obs.path));
    }
    let Some(newest) = &obs.newest else {
        let ignored = if obs.ignored_files > 0 {
            format!(
                " ({} files ignored: empty, in progress, or not matching include)",
                obs.ignored_files
            )
        } else {
            String::new()
        };
        return critical(format!("no backup file in {}{ignored}{unread}", obs.path));
    };
    let mut details = base.clone();
    details["newest_path"] = json!(newest.path);
    details["newest_age_secs"] = json!(newest.age_secs);
    details["newest_size_bytes"] = json!(newest.size_bytes);
    let name = newest
        .path
        .rsplit('/')
        .next()
        .unwrap_or(newest.path.as_str());
    if newest.age_secs < -i64::try_from(l.future_tolerance.as_secs()).unwrap_or(i64::MAX) {
        return Verdict::new(
            Status::Warning,
            format!(
                "newest backup {name} is dated {} in the future: check the host's clock",
                human::duration(newest.age_secs.saturating_neg())
            ),
        )
        .with_details(details)
        .with_procedure(procedure::BACKUP);
    }
    if newest.age_secs > limit_secs {
        return Verdict::new(
            Status::Critical,
            format!(
                "newest backup {name} is {} old (limit {}) in {}{unread}",
                human::duration(newest.age_secs),
                human::duration(limit_secs),
                obs.path
            ),
        )
        .with_details(details)
        .with_procedure(procedure::BACKUP);
    }
    // A plain base backup's newest file is its backup_manifest, a few kB: the size that
    // counts is the whole backup's (Barman's `last_backup_minimum_size` is per backup too).
    let (sized, size) = match &obs.newest_base_backup {
        Some(b) if newest.path.starts_with(&format!("{}/", b.path)) => {
            (b.path.rsplit('/').next().unwrap_or(&b.path), b.size_bytes)
        }
        _ => (name, newest.size_bytes),
    };
    if let Some(min) = l.min_size_bytes
        && size < min
    {
        return Verdict::new(
            Status::Warning,
            format!(
                "newest backup {sized} is only {} (expected at least {})",
                human::bytes(size),
                human::bytes(min)
            ),
        )
        .with_details(details)
        .with_procedure(procedure::BACKUP);
    }
    Verdict::new(
        Status::Ok,
        format!(
            "newest backup {name} is {} old (limit {}); {} files, {}{unread}",
            human::duration(newest.age_secs.max(0)),
            human::duration(limit_secs),
            obs.file_count,
            human::bytes(obs.total_bytes)
        ),
    )
    .with_details(details)
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::NewestFile;
    use chrono::Utc;

    const H: i64 = 3600;
    const DAY: Duration = Duration::from_secs(86400);

    fn dir_with_newest(age_secs: i64) -> BackupDirObs {
        BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            file_count: 3,
            total_bytes: 3000,
            newest: Some(NewestFile {
                path: "/backup/daily/base-20261125.tar.gz".into(),
                mtime: Utc::now(),
                size_bytes: 1000,
                age_secs,
            }),
            ..Default::default()
        }
    }

    fn daily() -> BackupLimits {
        BackupLimits {
            max_age: Some(Duration::from_secs(24 * 3600)),
            ..Default::default()
        }
    }

    #[test]
    fn backup_of_23_hours_is_ok() {
        let v = freshness(&dir_with_newest(23 * H), &daily(), DAY);
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(v.procedure.is_none());
    }

    #[test]
    fn backup_of_25_hours_is_critical_with_procedure() {
        let v = freshness(&dir_with_newest(25 * H), &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(v.summary.contains("25 h old (limit 24 h)"), "{}", v.summary);
        assert_eq!(v.procedure, Some(procedure::BACKUP));
    }

    #[test]
    fn exactly_at_the_limit_is_not_late() {
        assert_eq!(
            freshness(&dir_with_newest(24 * H), &daily(), DAY).status,
            Status::Ok
        );
    }

    #[test]
    fn grace_moves_the_limit() {
        let l = BackupLimits {
            grace: Duration::from_secs(12 * 3600),
            ..daily()
        };
        assert_eq!(
            freshness(&dir_with_newest(30 * H), &l, DAY).status,
            Status::Ok
        );
    }

    #[test]
    fn missing_directory_is_critical() {
        let obs = BackupDirObs {
            path: "/backup/weekly".into(),
            ..Default::default()
        };
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(v.summary.contains("missing"));
    }

    #[test]
    fn unreadable_directory_is_critical_with_the_os_error() {
        let obs = BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            read_error: Some("permission denied".into()),
            ..Default::default()
        };
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(v.summary.contains("permission denied"));
    }

    #[test]
    fn entries_the_scan_could_not_read_are_said_with_the_verdict() {
        let unreadable = |obs: BackupDirObs| BackupDirObs {
            problem_count: 2,
            problems: vec!["reading /backup/daily/2026-12-02: Permission denied".into()],
            ..obs
        };
        let empty = BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            ..Default::default()
        };
        let v = freshness(&unreadable(empty), &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.ends_with(
                "; 2 entries could not be read (first: reading /backup/daily/2026-12-02: \
                 Permission denied)"
            ),
            "{}",
            v.summary
        );
        assert_eq!(v.details["problem_count"], 2);
        // A fresh backup beside an unreadable entry (a mount point's lost+found) stays ok.
        let v = freshness(&unreadable(dir_with_newest(H)), &daily(), DAY);
        assert_eq!(v.status, Status::Ok);
        assert!(v.summary.contains("could not be read"), "{}", v.summary);
    }

    #[test]
    fn directory_without_backup_file_is_critical() {
        let obs = BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            ignored_files: 2,
            ..Default::default()
        };
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(v.summary.contains("no backup file"), "{}", v.summary);
        assert!(
            v.summary
                .contains("(2 files ignored: empty, in progress, or not matching include)"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn file_dated_in_the_future_is_a_clock_warning() {
        let v = freshness(&dir_with_newest(-2 * H), &daily(), DAY);
        assert_eq!(v.status, Status::Warning);
        assert!(v.summary.contains("future"));
    }

    #[test]
    fn a_future_dated_file_cannot_hide_stale_backups() {
        let mut obs = dir_with_newest(30 * H);
        obs.future_files = 1;
        obs.newest_future = Some(NewestFile {
            path: "/backup/daily/restored-2030.tar".into(),
            mtime: Utc::now(),
            size_bytes: 0,
            age_secs: -100 * 24 * H,
        });
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert!(v.summary.contains("30 h old"), "{}", v.summary);
        assert!(
            v.summary
                .contains("1 files dated in the future (newest restored-2030.tar"),
            "{}",
            v.summary
        );
        // With fresh real backups the clock problem is a warning.
        obs.newest = dir_with_newest(H).newest;
        assert_eq!(freshness(&obs, &daily(), DAY).status, Status::Warning);
    }

    #[test]
    fn only_future_files_means_no_backup() {
        let obs = BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            file_count: 1,
            future_files: 1,
            newest_future: dir_with_newest(-H).newest,
            ..Default::default()
        };
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.starts_with("no backup file in /backup/daily"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn truncated_scan_says_so() {
        let mut obs = dir_with_newest(30 * H);
        obs.truncated = true;
        obs.entries_scanned = 100_000;
        let v = freshness(&obs, &daily(), DAY);
        assert!(
            v.summary.contains("scan stopped after 100000 entries"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn small_future_offset_is_tolerated() {
        assert_eq!(
            freshness(&dir_with_newest(-60), &daily(), DAY).status,
            Status::Ok
        );
    }

    #[test]
    fn agent_expectation_applies_when_collector_has_none() {
        let mut obs = dir_with_newest(3 * 24 * H);
        obs.expected_max_age_secs = Some(7 * 24 * 3600);
        assert_eq!(
            freshness(&obs, &BackupLimits::default(), DAY).status,
            Status::Ok
        );
        obs.expected_max_age_secs = None;
        assert_eq!(
            freshness(&obs, &BackupLimits::default(), DAY).status,
            Status::Critical
        );
    }

    #[test]
    fn collector_limit_wins_over_the_agents_expectation() {
        let mut obs = dir_with_newest(30 * H);
        obs.expected_max_age_secs = Some(7 * 24 * 3600);
        assert_eq!(freshness(&obs, &daily(), DAY).status, Status::Critical);
    }

    #[test]
    fn procedure_defaults_by_directory_name() {
        assert_eq!(default_max_age("daily"), DAY);
        assert_eq!(default_max_age("weekly"), 7 * DAY);
        assert_eq!(default_max_age("monthly-offsite"), DAY);
    }

    #[test]
    fn backup_smaller_than_min_size_warns() {
        let l = BackupLimits {
            min_size_bytes: Some(1 << 20),
            ..daily()
        };
        assert_eq!(
            freshness(&dir_with_newest(H), &l, DAY).status,
            Status::Warning
        );
        // A plain base backup: its newest file is the small backup_manifest, the backup is
        // what counts.
        let mut obs = dir_with_newest(H);
        obs.newest.as_mut().unwrap().path = "/backup/daily/2026-11-25/backup_manifest".into();
        obs.newest_base_backup = Some(backwatch_proto::model::BaseBackup {
            path: "/backup/daily/2026-11-25".into(),
            size_bytes: 3 << 30,
            ..Default::default()
        });
        assert_eq!(freshness(&obs, &l, DAY).status, Status::Ok);
        obs.newest_base_backup.as_mut().unwrap().size_bytes = 1000;
        let v = freshness(&obs, &l, DAY);
        assert!(
            v.summary.starts_with("newest backup 2026-11-25 is only "),
            "{}",
            v.summary
        );
    }

    #[test]
    fn plain_base_backup_duration_and_size_are_reported_not_judged() {
        let mut obs = dir_with_newest(H);
        obs.newest_base_backup = Some(backwatch_proto::model::BaseBackup {
            path: "/backup/daily/2026-11-25".into(),
            duration_secs: Some(750),
            size_bytes: 3 << 30,
            ..Default::default()
        });
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(
            v.summary
                .ends_with("; newest base backup took 12 min (3.0 GiB)"),
            "{}",
            v.summary
        );
        assert_eq!(v.details["newest_base_backup"]["duration_secs"], 750);
    }

    #[test]
    fn a_plain_base_backup_slower_than_max_duration_is_a_warning() {
        let mut obs = dir_with_newest(H);
        obs.newest_base_backup = Some(backwatch_proto::model::BaseBackup {
            duration_secs: Some(5 * 3600),
            size_bytes: 3 << 30,
            ..Default::default()
        });
        let v = freshness(&obs, &daily(), DAY);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary
                .ends_with("; newest base backup took 5 h (3.0 GiB), longer than 4 h"),
            "{}",
            v.summary
        );
        let relaxed = BackupLimits {
            max_duration: Duration::from_secs(6 * 3600),
            ..daily()
        };
        assert_eq!(freshness(&obs, &relaxed, DAY).status, Status::Ok);
    }
}
