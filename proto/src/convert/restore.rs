//! Wire conversions of plain base backups and the restore-readiness observation.
//!
//! Same contract as the parent module: model → wire is infallible and clips texts; wire →
//! model refuses oversized texts and lists, NUL characters and out-of-range times.

use super::{ConvertError, clip, clip_opt, from_opt_ts, list, opt_text, opt_ts, text};
use crate::generated as pb;
use crate::model::*;

/// Most pg_verifybackup message lines one observation carries.
pub const MAX_VERIFY_MESSAGES: usize = 20;

// === model -> wire ===

impl From<&BaseBackup> for pb::BaseBackup {
    fn from(b: &BaseBackup) -> Self {
        pb::BaseBackup {
            path: clip(&b.path),
            error: clip_opt(&b.error),
            label: clip_opt(&b.label),
            start_time_text: clip_opt(&b.start_time_text),
            start_time: opt_ts(b.start_time),
            end_time: opt_ts(b.end_time),
            duration_secs: b.duration_secs,
            start_lsn: clip_opt(&b.start_lsn),
            start_segment: clip_opt(&b.start_segment),
            end_lsn: clip_opt(&b.end_lsn),
            end_segment: clip_opt(&b.end_segment),
            timeline: b.timeline,
            file_count: b.file_count,
            size_bytes: b.size_bytes,
            wal_segment_size_bytes: b.wal_segment_size_bytes.unwrap_or(0),
            incremental: b.incremental,
        }
    }
}

impl From<&RestoreObs> for pb::RestoreObservation {
    fn from(r: &RestoreObs) -> Self {
        pb::RestoreObservation {
            backup_root: clip(&r.backup_root),
            exists: r.exists,
            error: clip_opt(&r.error),
            backup: r.backup.as_ref().map(Into::into),
            verifier: clip_opt(&r.verifier),
            verify_error: clip_opt(&r.verify_error),
            io_limit: clip_opt(&r.io_limit),
            verify_started_at: opt_ts(r.verify_started_at),
            verify_duration_ms: r.verify_duration_ms,
            verify_exit_code: r.verify_exit_code,
            verify_messages: r
                .verify_messages
                .iter()
                .take(MAX_VERIFY_MESSAGES)
                .map(|m| clip(m))
                .collect(),
            wal_parsed: r.wal_parsed,
            wal_source: r.wal_source.map(|w| w.as_str()).unwrap_or_default().into(),
            archive_path: clip_opt(&r.archive_path),
            wal_segments_needed: r.wal_segments_needed,
            wal_first_missing: clip_opt(&r.wal_first_missing),
            backup_format: clip_opt(&r.backup_format),
            backup_major: r.backup_major.unwrap_or(0),
            verifier_major: r.verifier_major.unwrap_or(0),
            newer_incrementals: r.newer_incrementals,
        }
    }
}

// === wire -> model ===

pub(super) fn base_backup_from_wire(b: pb::BaseBackup) -> Result<BaseBackup, ConvertError> {
    Ok(BaseBackup {
        path: text("backup.path", b.path)?,
        error: opt_text("backup.error", b.error)?,
        label: opt_text("backup.label", b.label)?,
        start_time_text: opt_text("backup.start_time_text", b.start_time_text)?,
        start_time: from_opt_ts(&b.start_time)?,
        end_time: from_opt_ts(&b.end_time)?,
        duration_secs: b.duration_secs,
        start_lsn: opt_text("backup.start_lsn", b.start_lsn)?,
        start_segment: opt_text("backup.start_segment", b.start_segment)?,
        end_lsn: opt_text("backup.end_lsn", b.end_lsn)?,
        end_segment: opt_text("backup.end_segment", b.end_segment)?,
        timeline: b.timeline,
        file_count: b.file_count,
        size_bytes: b.size_bytes,
        wal_segment_size_bytes: (b.wal_segment_size_bytes > 0).then_some(b.wal_segment_size_bytes),
        incremental: b.incremental,
    })
}

pub(super) fn from_wire(r: pb::RestoreObservation) -> Result<RestoreObs, ConvertError> {
    Ok(RestoreObs {
        backup_root: text("backup_root", r.backup_root)?,
        exists: r.exists,
        error: opt_text("error", r.error)?,
        backup: r.backup.map(base_backup_from_wire).transpose()?,
        verifier: opt_text("verifier", r.verifier)?,
        verify_error: opt_text("verify_error", r.verify_error)?,
        io_limit: opt_text("io_limit", r.io_limit)?,
        verify_started_at: from_opt_ts(&r.verify_started_at)?,
        verify_duration_ms: r.verify_duration_ms,
        verify_exit_code: r.verify_exit_code,
        verify_messages: list("verify_messages", r.verify_messages, |m| {
            text("verify_messages", m)
        })?,
        wal_parsed: r.wal_parsed,
        wal_source: WalSource::parse(&r.wal_source),
        archive_path: opt_text("archive_path", r.archive_path)?,
        wal_segments_needed: r.wal_segments_needed,
        wal_first_missing: opt_text("wal_first_missing", r.wal_first_missing)?,
        backup_format: opt_text("backup_format", r.backup_format)?,
        backup_major: (r.backup_major > 0).then_some(r.backup_major),
        verifier_major: (r.verifier_major > 0).then_some(r.verifier_major),
        newer_incrementals: r.newer_incrementals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn restore_observation_survives_a_round_trip_through_the_wire() {
        let at = |s| DateTime::from_timestamp(s, 0).expect("time");
        let obs = RestoreObs {
            backup_root: "/backup/base".into(),
            exists: true,
            backup: Some(BaseBackup {
                path: "/backup/base/2024-06-01".into(),
                label: Some("nightly".into()),
                start_time_text: Some("2024-06-01 10:00:00 UTC".into()),
                start_time: Some(at(1_717_236_000)),
                end_time: Some(at(1_717_236_750)),
                duration_secs: Some(750),
                start_lsn: Some("0/2000028".into()),
                start_segment: Some("000000010000000000000002".into()),
                end_lsn: Some("0/2000100".into()),
                end_segment: Some("000000010000000000000002".into()),
                timeline: 1,
                file_count: 970,
                size_bytes: 23 << 20,
                wal_segment_size_bytes: Some(16 << 20),
                ..BaseBackup::default()
            }),
            verifier: Some("/usr/lib/postgresql/17/bin/pg_verifybackup".into()),
            io_limit: Some("nice -n 19 ionice -c 3".into()),
            verify_started_at: Some(at(1_717_300_000)),
            verify_duration_ms: 1234,
            verify_exit_code: Some(1),
            verify_messages: vec![
                "pg_verifybackup: error: checksum mismatch for file \"base/5/1259\"".into(),
            ],
            wal_source: Some(WalSource::Archive),
            archive_path: Some("/archive".into()),
            wal_segments_needed: 1,
            ..RestoreObs::default()
        };
        let wire = pb::RestoreObservation::from(&obs);
        assert_eq!(from_wire(wire), Ok(obs));
    }
}
