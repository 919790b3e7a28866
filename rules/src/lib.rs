//! Check rules: pure functions from (observation, previous state, limits) to a verdict.
//!
//! No I/O and no clock reads in here: the previous observation is an argument and ages were
//! computed where the timestamps were taken, so every rule is tested as a table of scenarios.
//! Thresholds are plain structs ([`Limits`]), already merged with per-host overrides by the
//! caller.
//!
//! A crate of its own because both binaries judge: the collector for the fleet, and
//! `backwatch-agent check`, whose exit code follows the worst status before anything is deployed.

pub mod archive;
pub mod backup;
pub mod backup_tool;
pub mod disk;
pub mod drill;
pub mod human;
pub mod nagios;
pub mod restore;
pub mod settings;
pub mod status;
pub mod wal;

use crate::status::{Status, Verdict};
use backwatch_proto::model::{DiskObs, Observation, ProbeResult};
use serde::Serialize;

pub use archive::ArchiveDirLimits;
pub use backup::BackupLimits;
pub use disk::DiskLimits;
pub use settings::SettingsLimits;
pub use wal::{RecoveredFailurePolicy, WalLimits};

/// Response procedures from the operations procedure; every non-ok verdict carries one.
pub mod procedure {
    use backwatch_proto::model::ProbeKind;

    /// The built-in procedure of a check kind (what an operator's `[procedures]` replaces).
    pub fn of(kind: ProbeKind) -> &'static str {
        match kind {
            ProbeKind::Disk => DISK,
            ProbeKind::Backup => BACKUP,
            ProbeKind::Wal => WAL,
            ProbeKind::Archive => ARCHIVE,
            ProbeKind::Restore => RESTORE,
            ProbeKind::Drill => DRILL,
            // The backup tools' catalogues answer the same question as a backup directory.
            ProbeKind::PgBackRest | ProbeKind::Barman => BACKUP,
            ProbeKind::Settings => SETTINGS,
        }
    }

    pub const DISK: &str = "Review backup retention; clean old backups if that is safe; \
                            plan a capacity increase if needed. A filesystem not mounted or \
                            mounted read-only: mount it again (findmnt, /etc/fstab; the kernel \
                            log says which I/O errors made it read-only), then move what was \
                            written under the mount point meanwhile.";
    pub const BACKUP: &str = "Check the backup logs; verify the backup service status; \
                              start a backup manually if needed.";
    pub const WAL: &str = "Check the archive directory's permissions; verify that the archive \
                           command works; make sure the archive storage has space.";
    pub const ARCHIVE: &str = "Compare the segment named with the archive directory and with \
                               pg_stat_archiver's last_archived_wal; make sure archive_command \
                               really copies into this directory (run it by hand for one \
                               segment); copy a missing segment from pg_wal while it is still \
                               there, otherwise take a new base backup now (recovery cannot \
                               pass a gap); set the directory's owner to postgres and its mode \
                               to 0700; keep at least 7 days of WAL when cleaning up.";
    pub const RESTORE: &str = "Read pg_verifybackup's message (it names the damaged or \
                               missing file); do not rely on this base backup: take a new one \
                               now and verify it (pg_verifybackup <backup directory>); find \
                               what damaged it (storage errors, a process writing into the \
                               backup directory); copy a missing WAL segment into the archive \
                               from pg_wal while it is there; rehearse a restore.";
    pub const DRILL: &str = "Read the drill's summary and server log lines: a refused drill \
                             needs space in scratch_dir (or a smaller space_factor); a missing \
                             WAL segment cannot be recovered past: copy it into the archive \
                             from the primary's pg_wal while it is there, otherwise take a new \
                             base backup now; a failed recovery or smoke check means this backup \
                             does not restore: take a new one and drill it (run the drill now \
                             from the agent); an RTO above max_rto means the promised recovery \
                             time is not met: plan faster storage, more frequent base backups \
                             (less WAL to replay) or revise the promise.";
    pub const SETTINGS: &str = "Set wal_level = replica, archive_mode = on, an archive_command \
                                that copies each segment to the archive, and archive_timeout \
                                = 300 (or the group's limit) in postgresql.conf; wal_level and \
                                archive_mode need a restart, the others a reload \
                                (SELECT pg_reload_conf()); then take a new base backup if \
                                wal_level was minimal.";
}

/// Every threshold a host is judged by (global defaults merged with its overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Limits {
    pub disk: DiskLimits,
    /// Per backup directory name ("daily", "weekly", ...).
    pub backup: std::collections::BTreeMap<String, BackupLimits>,
    pub backup_default: BackupLimits,
    pub wal: WalLimits,
    pub archive: ArchiveDirLimits,
    pub settings: SettingsLimits,
    pub drill: drill::DrillLimits,
}

impl Limits {
    pub fn backup_for(&self, name: &str) -> &BackupLimits {
        self.backup.get(name).unwrap_or(&self.backup_default)
    }
}

fn prev_disk(prev: Option<&Observation>) -> Option<&DiskObs> {
    match prev {
        Some(Observation::Disk(d)) => Some(d),
        _ => None,
    }
}

/// Judge one result. `prev` is the check's previous state (status and result), if any.
pub fn evaluate(
    result: &ProbeResult,
    prev_status: Option<Status>,
    prev: Option<&ProbeResult>,
    limits: &Limits,
) -> Verdict {
    if let Some(error) = &result.error {
        // A probe that could not observe is never "ok" (docs/checks.md R1).
        return Verdict::new(Status::Unknown, format!("probe could not observe: {error}"))
            .with_details(serde_json::json!({ "error": error }));
    }
    let prev_obs = prev.and_then(|p| p.observation.as_ref());
    match &result.observation {
        Some(Observation::Backup(obs)) => backup::freshness(
            obs,
            limits.backup_for(&result.name),
            backup::default_max_age(&result.name),
        ),
        // The agent's own spool: the procedure's limits, not the backup filesystems' overrides
        // (a host whose backup disk is allowed 95 % still needs room for its spool).
        Some(Observation::Disk(obs))
            if result.name == backwatch_proto::model::AGENT_SPOOL_PROBE =>
        {
            disk::usage(
                obs,
                prev_status,
                prev_disk(prev_obs),
                &DiskLimits::default(),
            )
        }
        Some(Observation::Disk(obs)) => {
            disk::usage(obs, prev_status, prev_disk(prev_obs), &limits.disk)
        }
        Some(Observation::Wal(obs)) => {
            let prev_wal = match prev_obs {
                Some(Observation::Wal(p)) => Some(p),
                _ => None,
            };
            wal::archiving(obs, prev_wal, &limits.wal)
        }
        Some(Observation::Archive(obs)) => archive::judge(obs, &limits.archive),
        Some(Observation::Restore(obs)) => restore::judge(obs),
        Some(Observation::PgBackRest(obs)) => backup_tool::judge("pgBackRest", obs),
        Some(Observation::Barman(obs)) => backup_tool::judge("Barman", obs),
        Some(Observation::Drill(obs)) => drill::judge_with(obs, &limits.drill),
        Some(Observation::Settings(obs)) => settings::judge(obs, &limits.settings),
        None => Verdict::new(Status::Unknown, "result carries no observation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::{DiskObs, ProbeKind};
    use chrono::Utc;

    fn disk(name: &str, used_pct: u64) -> ProbeResult {
        ProbeResult {
            result_id: "r".into(),
            kind: ProbeKind::Disk,
            name: name.into(),
            measured_at: Utc::now(),
            duration_ms: 1,
            interval_secs: 60,
            error: None,
            observation: Some(Observation::Disk(DiskObs {
                path: "/".into(),
                total_bytes: 100,
                free_bytes: 100 - used_pct,
                avail_bytes: 100 - used_pct,
                inodes_total: 100,
                inodes_free: 100,
                inodes_avail: 100,
                ..DiskObs::default()
            })),
        }
    }

    #[test]
    fn the_agents_spool_is_judged_by_the_procedure_not_the_hosts_disk_overrides() {
        let strict = Limits {
            disk: DiskLimits {
                warning_pct: 10,
                critical_pct: 20,
                ..DiskLimits::default()
            },
            ..Limits::default()
        };
        let backup = evaluate(&disk("backup", 50), None, None, &strict);
        assert_eq!(backup.status, Status::Critical, "{}", backup.summary);
        let spool = evaluate(
            &disk(backwatch_proto::model::AGENT_SPOOL_PROBE, 50),
            None,
            None,
            &strict,
        );
        assert_eq!(spool.status, Status::Ok, "{}", spool.summary);
        let full = evaluate(
            &disk(backwatch_proto::model::AGENT_SPOOL_PROBE, 90),
            None,
            None,
            &strict,
        );
        assert_eq!(full.status, Status::Critical, "{}", full.summary);
    }
}
