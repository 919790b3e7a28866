//! Wire conversions of the restore-drill observation.
//!
//! Same contract as the parent module: model → wire is infallible and clips texts; wire →
//! model refuses oversized texts and lists, NUL characters and out-of-range times.

use super::{ConvertError, clip, clip_opt, from_opt_ts, list, opt_text, opt_ts, text};
use crate::generated as pb;
use crate::model::*;

/// Most server log lines and smoke checks one observation carries.
pub const MAX_DRILL_LINES: usize = 20;

impl From<&DrillObs> for pb::DrillObservation {
    fn from(d: &DrillObs) -> Self {
        pb::DrillObservation {
            source_kind: clip(&d.source_kind),
            backup_root: clip(&d.backup_root),
            backup_path: clip_opt(&d.backup_path),
            backup_format: clip_opt(&d.backup_format),
            archive_path: clip_opt(&d.archive_path),
            scratch_dir: clip(&d.scratch_dir),
            error: clip_opt(&d.error),
            refused: clip_opt(&d.refused),
            backup_bytes: d.backup_bytes,
            scratch_free_bytes: d.scratch_free_bytes,
            space_factor: d.space_factor,
            pg_version: clip_opt(&d.pg_version),
            bindir: clip_opt(&d.bindir),
            io_limit: clip_opt(&d.io_limit),
            started_at: opt_ts(d.started_at),
            restore_ms: d.restore_ms,
            recovery_ms: d.recovery_ms,
            rto_ms: d.rto_ms,
            smoke_ms: d.smoke_ms,
            bytes_restored: d.bytes_restored,
            wal_segments_restored: d.wal_segments_restored,
            target: clip(&d.target),
            target_time: opt_ts(d.target_time),
            recovered_at: opt_ts(d.recovered_at),
            replay_lsn: clip_opt(&d.replay_lsn),
            archive_newest_segment: clip_opt(&d.archive_newest_segment),
            archive_end_reached: d.archive_end_reached,
            shortfall_secs: d.shortfall_secs,
            target_distance_secs: d.target_distance_secs,
            missing_segment: clip_opt(&d.missing_segment),
            server_log: d
                .server_log
                .iter()
                .take(MAX_DRILL_LINES)
                .map(|l| clip(l))
                .collect(),
            smoke: d
                .smoke
                .iter()
                .take(MAX_DRILL_LINES)
                .map(|s| pb::DrillSmokeCheck {
                    sql: clip(&s.sql),
                    expect: clip_opt(&s.expect),
                    got: clip_opt(&s.got),
                    error: clip_opt(&s.error),
                    passed: s.passed,
                })
                .collect(),
            max_rto_secs: d.max_rto_secs.unwrap_or(0),
            max_shortfall_secs: d.max_shortfall_secs,
            timed_out: d.timed_out,
            cleanup_error: clip_opt(&d.cleanup_error),
            system_identifier: clip_opt(&d.system_identifier),
        }
    }
}

pub(super) fn from_wire(d: pb::DrillObservation) -> Result<DrillObs, ConvertError> {
    Ok(DrillObs {
        source_kind: text("source_kind", d.source_kind)?,
        backup_root: text("backup_root", d.backup_root)?,
        backup_path: opt_text("backup_path", d.backup_path)?,
        backup_format: opt_text("backup_format", d.backup_format)?,
        archive_path: opt_text("archive_path", d.archive_path)?,
        scratch_dir: text("scratch_dir", d.scratch_dir)?,
        error: opt_text("error", d.error)?,
        refused: opt_text("refused", d.refused)?,
        backup_bytes: d.backup_bytes,
        scratch_free_bytes: d.scratch_free_bytes,
        space_factor: d.space_factor,
        pg_version: opt_text("pg_version", d.pg_version)?,
        bindir: opt_text("bindir", d.bindir)?,
        io_limit: opt_text("io_limit", d.io_limit)?,
        started_at: from_opt_ts(&d.started_at)?,
        restore_ms: d.restore_ms,
        recovery_ms: d.recovery_ms,
        rto_ms: d.rto_ms,
        smoke_ms: d.smoke_ms,
        bytes_restored: d.bytes_restored,
        wal_segments_restored: d.wal_segments_restored,
        target: text("target", d.target)?,
        target_time: from_opt_ts(&d.target_time)?,
        recovered_at: from_opt_ts(&d.recovered_at)?,
        replay_lsn: opt_text("replay_lsn", d.replay_lsn)?,
        archive_newest_segment: opt_text("archive_newest_segment", d.archive_newest_segment)?,
        archive_end_reached: d.archive_end_reached,
        shortfall_secs: d.shortfall_secs,
        target_distance_secs: d.target_distance_secs,
        missing_segment: opt_text("missing_segment", d.missing_segment)?,
        server_log: list("server_log", d.server_log, |l| text("server_log", l))?,
        smoke: list("smoke", d.smoke, |s| {
            Ok(SmokeCheck {
                sql: text("smoke.sql", s.sql)?,
                expect: opt_text("smoke.expect", s.expect)?,
                got: opt_text("smoke.got", s.got)?,
                error: opt_text("smoke.error", s.error)?,
                passed: s.passed,
            })
        })?,
        max_rto_secs: (d.max_rto_secs > 0).then_some(d.max_rto_secs),
        max_shortfall_secs: d.max_shortfall_secs,
        timed_out: d.timed_out,
        cleanup_error: opt_text("cleanup_error", d.cleanup_error)?,
        system_identifier: opt_text("system_identifier", d.system_identifier)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn drill_observation_survives_a_round_trip_through_the_wire() {
        let obs = DrillObs {
            source_kind: "plain".into(),
            backup_root: "/backup/base".into(),
            backup_path: Some("/backup/base/b1".into()),
            backup_format: Some("tar".into()),
            archive_path: Some("/archive".into()),
            scratch_dir: "/scratch".into(),
            backup_bytes: 1 << 30,
            scratch_free_bytes: 1 << 34,
            space_factor: 1.2,
            pg_version: Some("15".into()),
            started_at: DateTime::from_timestamp(1_700_000_000, 0),
            restore_ms: 1500,
            recovery_ms: 2500,
            rto_ms: Some(4000),
            wal_segments_restored: 7,
            target: "latest".into(),
            recovered_at: DateTime::from_timestamp(1_699_999_000, 0),
            missing_segment: Some("000000010000000000000005".into()),
            shortfall_secs: Some(900),
            smoke: vec![SmokeCheck {
                sql: "select 1".into(),
                expect: Some("1".into()),
                got: Some("1".into()),
                error: None,
                passed: true,
            }],
            max_rto_secs: Some(3600),
            max_shortfall_secs: 300,
            ..DrillObs::default()
        };
        let wire = pb::DrillObservation::from(&obs);
        assert_eq!(from_wire(wire).unwrap(), obs);
    }
}
