//! Restore readiness (`restore.<name>`): can the newest plain base backup be restored?
//!
//! The agent ran `pg_verifybackup` on the newest plain `pg_basebackup` directory that has a
//! `backup_manifest`, and looked for the WAL that backup needs (its own `pg_wal`, else the
//! archive directory). A backup is restorable only when both hold, so:
//!
//! - backup directory missing, no base backup with a manifest in it ⇒ critical (nothing to
//!   restore from);
//! - `pg_verifybackup` exited non-zero ⇒ critical, naming its first message (a checksum
//!   mismatch names the damaged file);
//! - a segment between the backup's start and end WAL location in neither place ⇒ critical,
//!   naming it (recovery cannot reach consistency without it);
//! - `pg_verifybackup` could not be started (not installed, wrong path) ⇒ unknown: nothing was
//!   judged, and the summary says what to configure;
//! - otherwise ok, with the verification's duration and the WAL's source.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::{RestoreObs, WalSource};
use serde_json::json;

#[must_use]
pub fn judge(obs: &RestoreObs) -> Verdict {
    let details = json!({
        "backup_root": obs.backup_root,
        "backup": obs.backup,
        "verifier": obs.verifier,
        "verifier_major": obs.verifier_major,
        "backup_major": obs.backup_major,
        "backup_format": obs.backup_format,
        "io_limit": obs.io_limit,
        "verify_started_at": obs.verify_started_at,
        "verify_duration_ms": obs.verify_duration_ms,
        "verify_exit_code": obs.verify_exit_code,
        "verify_messages": obs.verify_messages,
        "wal_parsed": obs.wal_parsed,
        "wal_source": obs.wal_source,
        "archive_path": obs.archive_path,
        "wal_segments_needed": obs.wal_segments_needed,
        "wal_first_missing": obs.wal_first_missing,
        "newer_incrementals": obs.newer_incrementals,
    });
    verdict(obs)
        .with_details(details)
        .with_procedure(procedure::RESTORE)
}

fn verdict(obs: &RestoreObs) -> Verdict {
    let root = &obs.backup_root;
    if !obs.exists {
        return Verdict::new(
            Status::Critical,
            format!("backup directory {root} does not exist: nothing to restore from"),
        );
    }
    if let Some(e) = &obs.error {
        return Verdict::new(Status::Critical, format!("{root}: {e}"));
    }
    let Some(backup) = &obs.backup else {
        if obs.newer_incrementals > 0 {
            return Verdict::new(
                Status::Critical,
                no_full_backup(root, obs.newer_incrementals),
            );
        }
        return Verdict::new(
            Status::Critical,
            format!("no plain base backup with a backup_manifest under {root}"),
        );
    };
    let path = &backup.path;
    if let Some(e) = &obs.verify_error {
        return Verdict::new(
            Status::Unknown,
            format!("pg_verifybackup could not run on {path}: {e}"),
        );
    }
    let took = match obs.verify_duration_ms {
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => human::duration((ms / 1000) as i64),
    };
    match obs.verify_exit_code {
        Some(0) => {}
        Some(code) => {
            let why = first_error(&obs.verify_messages)
                .map_or(format!("exit status {code}"), str::to_string);
            return Verdict::new(
                Status::Critical,
                format!("base backup {path} fails verification: {why}"),
            );
        }
        None => {
            return Verdict::new(
                Status::Unknown,
                format!("pg_verifybackup did not run on {path}"),
            );
        }
    }
    if let Some(missing) = &obs.wal_first_missing {
        let archive = obs
            .archive_path
            .as_deref()
            .map_or("no archive directory configured".to_string(), |a| {
                format!("not in the archive {a}")
            });
        return Verdict::new(
            Status::Critical,
            format!(
                "base backup {path} cannot be restored: WAL segment {missing} it needs is not in its pg_wal and {archive}"
            ),
        );
    }
    let tar = obs
        .backup_format
        .as_deref()
        .is_some_and(|f| f.starts_with("tar"));
    let wal = match obs.wal_source {
        Some(WalSource::Backup) if tar => {
            "its WAL in the backup's tar files (listed; pg_verifybackup does not parse WAL in tar)"
                .to_string()
        }
        Some(WalSource::Backup) if obs.wal_parsed => {
            "its WAL in the backup's pg_wal, parsed".to_string()
        }
        Some(WalSource::Backup) => "its WAL in the backup's pg_wal".to_string(),
        Some(WalSource::Archive) => format!(
            "its WAL ({} segment{}) present in the archive",
            obs.wal_segments_needed,
            if obs.wal_segments_needed == 1 {
                ""
            } else {
                "s"
            }
        ),
        None if obs
            .backup_format
            .as_deref()
            .is_some_and(|f| f.starts_with("tar.")) =>
        {
            "its WAL not checked (a compressed tar backup whose WAL, in base.tar or \
             pg_wal.tar.gz, is not opened, and not all of it in the archive)"
                .to_string()
        }
        None => "its WAL range unknown (no WAL-Ranges in the manifest)".to_string(),
    };
    let by = match (obs.verifier_major, obs.backup_major) {
        (Some(v), Some(b)) if v != b => format!("pg_verifybackup {v} (backup of PostgreSQL {b})"),
        (Some(v), _) => format!("pg_verifybackup {v}"),
        (None, _) => "pg_verifybackup".to_string(),
    };
    let format = match obs.backup_format.as_deref() {
        Some(f) if tar => format!(" ({f} format)"),
        _ => String::new(),
    };
    let newer = match obs.newer_incrementals {
        0 => String::new(),
        n => format!(
            "; {n} newer incremental backup{} not verified: {} only combined with {} \
             chain (pg_combinebackup)",
            if n == 1 { "" } else { "s" },
            if n == 1 {
                "it restores"
            } else {
                "they restore"
            },
            if n == 1 { "its" } else { "their" }
        ),
    };
    Verdict::new(
        Status::Ok,
        format!("base backup {path}{format} verified by {by} in {took}; {wal}{newer}"),
    )
}

/// "no full base backup under …: N incremental backups, …": restore readiness's and a drill's
/// words when only incremental backups (PostgreSQL 17 and later) are there.
#[must_use]
pub fn no_full_backup(root: &str, incrementals: u32) -> String {
    format!(
        "no full base backup under {root}: {incrementals} incremental backup{}, which restore \
         only combined with the full backup they build on (pg_combinebackup)",
        if incrementals == 1 { "" } else { "s" }
    )
}

/// pg_verifybackup's own words: the first line that says "error", else the first line.
fn first_error(messages: &[String]) -> Option<&str> {
    messages
        .iter()
        .find(|m| m.contains("error"))
        .or(messages.first())
        .map(|m| m.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::BaseBackup;

    #[test]
    fn newer_incrementals_are_named_and_a_chain_without_its_full_is_critical() {
        let mut obs = verified();
        obs.newer_incrementals = 2;
        let v = judge(&obs);
        assert_eq!(v.status, Status::Ok);
        assert!(
            v.summary
                .ends_with("; 2 newer incremental backups not verified: they restore only combined with their chain (pg_combinebackup)"),
            "{}",
            v.summary
        );
        obs.backup = None;
        let v = judge(&obs);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .starts_with("no full base backup under /backup/base: 2 incremental backups"),
            "{}",
            v.summary
        );
    }

    fn verified() -> RestoreObs {
        RestoreObs {
            backup_root: "/backup/base".into(),
            exists: true,
            backup: Some(BaseBackup {
                path: "/backup/base/b1".into(),
                ..BaseBackup::default()
            }),
            verifier: Some("/usr/lib/postgresql/17/bin/pg_verifybackup".into()),
            verify_exit_code: Some(0),
            verify_duration_ms: 2500,
            wal_source: Some(WalSource::Archive),
            archive_path: Some("/archive".into()),
            wal_segments_needed: 2,
            ..RestoreObs::default()
        }
    }

    #[test]
    fn verified_backup_with_its_wal_in_the_archive_is_ok() {
        let v = judge(&verified());
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(
            v.summary.contains("verified by pg_verifybackup in 2.5 s"),
            "{v:?}"
        );
        assert!(
            v.summary.contains("2 segments) present in the archive"),
            "{v:?}"
        );
        assert_eq!(v.procedure, None);
    }

    #[test]
    fn checksum_mismatch_is_critical_with_pg_verifybackups_words() {
        let mut o = verified();
        o.verify_exit_code = Some(1);
        o.verify_messages =
            vec!["pg_verifybackup: error: checksum mismatch for file \"base/5/1259\"".into()];
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .ends_with("fails verification: pg_verifybackup: error: checksum mismatch for file \"base/5/1259\""),
            "{v:?}"
        );
        assert_eq!(v.procedure, Some(procedure::RESTORE));
    }

    #[test]
    fn missing_wal_segment_is_critical_by_name() {
        let mut o = verified();
        o.wal_first_missing = Some("000000010000000000000003".into());
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("WAL segment 000000010000000000000003 it needs is not in its pg_wal and not in the archive /archive"),
            "{v:?}"
        );
    }

    #[test]
    fn no_backup_with_a_manifest_is_critical() {
        let mut o = verified();
        o.backup = None;
        assert_eq!(judge(&o).status, Status::Critical);
        o.exists = false;
        assert!(judge(&o).summary.contains("does not exist"));
    }

    #[test]
    fn verifier_that_cannot_start_is_unknown() {
        let mut o = verified();
        o.verify_exit_code = None;
        o.verify_error = Some("pg_verifybackup not found".into());
        assert_eq!(judge(&o).status, Status::Unknown);
    }
}
