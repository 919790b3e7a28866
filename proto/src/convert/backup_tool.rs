//! Wire conversions of the backup tool observation (pgBackRest, Barman).
//!
//! Same contract as the parent module: model → wire is infallible and clips texts; wire →
//! model refuses oversized texts and lists, NUL characters and out-of-range times.

use super::{
    ConvertError, MAX_PROBLEMS, clip, clip_opt, from_opt_ts, list, opt_text, opt_ts, text,
};
use crate::generated as pb;
use crate::model::*;

// === model -> wire ===

fn backup_to_wire(b: &ToolBackup) -> pb::ToolBackup {
    pb::ToolBackup {
        label: clip(&b.label),
        r#type: clip(&b.kind),
        start_time: opt_ts(b.start_time),
        stop_time: opt_ts(b.stop_time),
        duration_secs: b.duration_secs,
        size_bytes: b.size_bytes,
        stored_bytes: b.stored_bytes,
        wal_start: clip_opt(&b.wal_start),
        wal_stop: clip_opt(&b.wal_stop),
        age_secs: b.age_secs,
        page_checksum_errors: b.page_checksum_errors,
    }
}

impl From<&BackupToolObs> for pb::BackupToolObservation {
    fn from(o: &BackupToolObs) -> Self {
        pb::BackupToolObservation {
            commands: o
                .commands
                .iter()
                .take(MAX_PROBLEMS)
                .map(|c| clip(c))
                .collect(),
            error: clip_opt(&o.error),
            sets: o
                .sets
                .iter()
                .take(MAX_PROBLEMS)
                .map(|b| pb::BackupSet {
                    name: clip(&b.name),
                    status_code: b.status_code,
                    status_message: clip_opt(&b.status_message),
                    failing_checks: b
                        .failing_checks
                        .iter()
                        .take(MAX_PROBLEMS)
                        .map(|c| clip(c))
                        .collect(),
                    backup_running: b.backup_running,
                    backup_count: b.backup_count,
                    newest: b.newest.as_ref().map(backup_to_wire),
                    newest_full: b.newest_full.as_ref().map(backup_to_wire),
                    newest_failed: b.newest_failed.as_ref().map(backup_to_wire),
                    archive_min: clip_opt(&b.archive_min),
                    archive_max: clip_opt(&b.archive_max),
                    oldest: b.oldest.as_ref().map(backup_to_wire),
                    archive_max_time: opt_ts(b.archive_max_time),
                    previous_full: b.previous_full.as_ref().map(backup_to_wire),
                    full_count: b.full_count,
                    backup_running_secs: b.backup_running_secs,
                    system_identifier: clip_opt(&b.system_identifier),
                    repository: b.repository.unwrap_or(0),
                })
                .collect(),
            expected_max_age_secs: o.expected_max_age_secs.unwrap_or(0),
            expected_max_full_age_secs: o.expected_max_full_age_secs.unwrap_or(0),
            expected_max_duration_secs: o.expected_max_duration_secs.unwrap_or(0),
            expected_min_size_ratio: o.expected_min_size_ratio.unwrap_or(0.0),
            expected_min_full_backups: o.expected_min_full_backups.unwrap_or(0),
            on_standby: o.on_standby,
            role_error: clip_opt(&o.role_error),
            tool_version: clip_opt(&o.tool_version),
            server_major: o.server_major.unwrap_or(0),
        }
    }
}

// === wire -> model ===

fn backup_from_wire(b: Option<pb::ToolBackup>) -> Result<Option<ToolBackup>, ConvertError> {
    let Some(b) = b else { return Ok(None) };
    Ok(Some(ToolBackup {
        label: text("backup.label", b.label)?,
        kind: text("backup.type", b.r#type)?,
        start_time: from_opt_ts(&b.start_time)?,
        stop_time: from_opt_ts(&b.stop_time)?,
        duration_secs: b.duration_secs,
        size_bytes: b.size_bytes,
        stored_bytes: b.stored_bytes,
        wal_start: opt_text("backup.wal_start", b.wal_start)?,
        wal_stop: opt_text("backup.wal_stop", b.wal_stop)?,
        age_secs: b.age_secs,
        page_checksum_errors: b.page_checksum_errors,
    }))
}

pub(super) fn from_wire(o: pb::BackupToolObservation) -> Result<BackupToolObs, ConvertError> {
    Ok(BackupToolObs {
        commands: list("commands", o.commands, |c| text("commands", c))?,
        error: opt_text("error", o.error)?,
        sets: list("sets", o.sets, |b| {
            Ok(BackupSet {
                name: text("sets.name", b.name)?,
                status_code: b.status_code,
                status_message: opt_text("sets.status_message", b.status_message)?,
                failing_checks: list("failing_checks", b.failing_checks, |c| {
                    text("failing_checks", c)
                })?,
                backup_running: b.backup_running,
                backup_count: b.backup_count,
                newest: backup_from_wire(b.newest)?,
                newest_full: backup_from_wire(b.newest_full)?,
                newest_failed: backup_from_wire(b.newest_failed)?,
                archive_min: opt_text("sets.archive_min", b.archive_min)?,
                archive_max: opt_text("sets.archive_max", b.archive_max)?,
                oldest: backup_from_wire(b.oldest)?,
                archive_max_time: from_opt_ts(&b.archive_max_time)?,
                previous_full: backup_from_wire(b.previous_full)?,
                full_count: b.full_count,
                backup_running_secs: b.backup_running_secs.filter(|s| *s >= 0),
                system_identifier: opt_text("sets.system_identifier", b.system_identifier)?,
                repository: (b.repository > 0).then_some(b.repository),
            })
        })?,
        expected_max_age_secs: (o.expected_max_age_secs > 0).then_some(o.expected_max_age_secs),
        expected_max_full_age_secs: (o.expected_max_full_age_secs > 0)
            .then_some(o.expected_max_full_age_secs),
        expected_max_duration_secs: (o.expected_max_duration_secs > 0)
            .then_some(o.expected_max_duration_secs),
        // A ratio outside (0, 1] or not a number is not a limit anyone set: the default.
        expected_min_size_ratio: (o.expected_min_size_ratio > 0.0
            && o.expected_min_size_ratio <= 1.0)
            .then_some(o.expected_min_size_ratio),
        expected_min_full_backups: (o.expected_min_full_backups > 0)
            .then_some(o.expected_min_full_backups),
        on_standby: o.on_standby,
        role_error: opt_text("role_error", o.role_error)?,
        tool_version: opt_text("tool_version", o.tool_version)?,
        server_major: (o.server_major > 0).then_some(o.server_major),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn backup_tool_observation_survives_a_round_trip_through_the_wire() {
        let at = |s| DateTime::from_timestamp(s, 0);
        let full = ToolBackup {
            label: "20240601-100000F".into(),
            kind: "full".into(),
            start_time: at(1_717_236_000),
            stop_time: at(1_717_236_750),
            duration_secs: Some(750),
            size_bytes: 23 << 20,
            stored_bytes: 3 << 20,
            wal_start: Some("000000010000000000000002".into()),
            wal_stop: Some("000000010000000000000002".into()),
            age_secs: Some(60),
            page_checksum_errors: true,
        };
        let obs = BackupToolObs {
            commands: vec!["pgbackrest info --output=json".into()],
            sets: vec![BackupSet {
                name: "main".into(),
                status_message: Some("ok".into()),
                failing_checks: vec!["wal_archive: please make sure WAL shipping is setup".into()],
                backup_count: 1,
                newest: Some(full.clone()),
                newest_full: Some(full),
                archive_min: Some("000000010000000000000001".into()),
                ..BackupSet::default()
            }],
            expected_max_age_secs: Some(86_400),
            ..BackupToolObs::default()
        };
        let wire = pb::BackupToolObservation::from(&obs);
        assert_eq!(from_wire(wire), Ok(obs));
    }
}
