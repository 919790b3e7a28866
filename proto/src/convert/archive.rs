//! Wire conversions of the archive directory observation.
//!
//! Same contract as the parent module: model → wire is infallible and clips texts; wire →
//! model refuses oversized texts and lists, NUL characters and out-of-range times, so a hostile
//! agent cannot make the collector store megabytes or choke on a value.

use super::{
    ConvertError, MAX_PROBLEMS, clip, from_opt_ts, from_ts, list, opt_text, opt_ts, text, to_ts,
};
use crate::generated as pb;
use crate::model::*;

// === model -> wire ===

impl From<&ArchiveDirObs> for pb::ArchiveDirObservation {
    fn from(a: &ArchiveDirObs) -> Self {
        pb::ArchiveDirObservation {
            path: clip(&a.path),
            exists: a.exists,
            read_error: a.read_error.as_deref().map(clip).unwrap_or_default(),
            access: a.access.as_ref().map(|d| pb::DirAccess {
                uid: d.uid,
                owner: d.owner.clone().unwrap_or_default(),
                gid: d.gid,
                group: d.group.clone().unwrap_or_default(),
                mode: d.mode,
            }),
            expected_owner: a.expected_owner.clone().unwrap_or_default(),
            expected_group: a.expected_group.clone().unwrap_or_default(),
            expected_mode: a.expected_mode,
            expected_min_retention_secs: a.expected_min_retention_secs.unwrap_or(0),
            asynchronous: a.asynchronous,
            entries_scanned: a.entries_scanned,
            truncated: a.truncated,
            newer_than_scan: a.newer_than_scan,
            segments: a.segments,
            segment_bytes: a.segment_bytes,
            compressed_segments: a.compressed_segments,
            history_files: a.history_files,
            backup_files: a.backup_files,
            partial_files: a.partial_files,
            other_files: a.other_files,
            other_names: a
                .other_names
                .iter()
                .take(MAX_PROBLEMS)
                .map(|n| clip(n))
                .collect(),
            files_open_to_others: a.files_open_to_others,
            first_open_to_others: a
                .first_open_to_others
                .as_deref()
                .map(clip)
                .unwrap_or_default(),
            oldest_segment: a.oldest_segment.as_ref().map(file_to_wire),
            newest_segment: a.newest_segment.as_ref().map(file_to_wire),
            daily: a
                .daily
                .iter()
                .take(MAX_PROBLEMS)
                .map(|d| pb::DayVolume {
                    day: d.day.clone(),
                    bytes: d.bytes,
                    segments: d.segments,
                })
                .collect(),
            wal_segment_size_bytes: a.wal_segment_size_bytes,
            segment_size_source: a.segment_size_source.as_str().into(),
            timeline: a.timeline,
            timeline_source: a.timeline_source.clone().unwrap_or_default(),
            timeline_note: a.timeline_note.as_deref().map(clip).unwrap_or_default(),
            missing_history: a.missing_history.clone().unwrap_or_default(),
            continuity: a.continuity.as_ref().map(continuity_to_wire),
            continuity_note: a.continuity_note.as_deref().map(clip).unwrap_or_default(),
            postgres: a.postgres.as_ref().map(view_to_wire),
            newest_backup: a.newest_backup.as_ref().map(|b| pb::BackupHistory {
                name: clip(&b.name),
                error: b.error.as_deref().map(clip).unwrap_or_default(),
                label: b.label.as_deref().map(clip).unwrap_or_default(),
                start_time: b.start_time.as_deref().map(clip).unwrap_or_default(),
                stop_time: b.stop_time.as_deref().map(clip).unwrap_or_default(),
                duration_secs: b.duration_secs,
                stop_segment: b.stop_segment.clone().unwrap_or_default(),
            }),
            window: a.window.as_ref().map(|w| pb::RecoveryWindow {
                earliest_backup: clip(&w.earliest_backup),
                start: Some(to_ts(w.start)),
                start_exact: w.start_exact,
                latest_backup: clip(&w.latest_backup),
                end_segment: clip(&w.end_segment),
                end: Some(to_ts(w.end)),
                cut_at: w.cut_at.as_deref().map(clip).unwrap_or_default(),
                segments_after_cut: w.segments_after_cut,
                backups: w.backups,
            }),
            window_note: a.window_note.as_deref().map(clip).unwrap_or_default(),
            encryption: a.encryption.as_ref().map(|e| pb::EncryptionAudit {
                sampled: e.sampled,
                readable: e.readable,
                first_readable: e.first_readable.as_deref().map(clip).unwrap_or_default(),
                first_readable_kind: e
                    .first_readable_kind
                    .as_deref()
                    .map(clip)
                    .unwrap_or_default(),
                unreadable: e.unreadable,
                first_error: e.first_error.as_deref().map(clip).unwrap_or_default(),
            }),
        }
    }
}

fn file_to_wire(f: &ArchivedFile) -> pb::ArchivedFile {
    pb::ArchivedFile {
        name: clip(&f.name),
        mtime: Some(to_ts(f.mtime)),
        size_bytes: f.size_bytes,
        age_secs: f.age_secs,
    }
}

fn continuity_to_wire(c: &Continuity) -> pb::Continuity {
    pb::Continuity {
        newest_backup: c.newest_backup.clone().unwrap_or_default(),
        range_start: c.range_start.clone(),
        range_end: c.range_end.clone(),
        range_segments: c.range_segments,
        gap_count: c.gap_count,
        missing_segments: c.missing_segments,
        gaps: c
            .gaps
            .iter()
            .take(MAX_PROBLEMS)
            .map(|g| pb::ArchiveGap {
                first_missing: g.first_missing.clone(),
                missing: g.missing,
                segments_after: g.segments_after,
            })
            .collect(),
        missing_before_range: c.missing_before_range,
        first_missing_before_range: c.first_missing_before_range.clone().unwrap_or_default(),
        short_segments: c.short_segments,
        short: c
            .short
            .iter()
            .take(MAX_PROBLEMS)
            .map(|s| pb::ShortSegment {
                name: s.name.clone(),
                size_bytes: s.size_bytes,
                segments_after: s.segments_after,
            })
            .collect(),
    }
}

fn view_to_wire(v: &ArchiverView) -> pb::ArchiverView {
    pb::ArchiverView {
        wal_probe: v.wal_probe.clone(),
        error: v.error.as_deref().map(clip).unwrap_or_default(),
        in_recovery: v.in_recovery,
        archive_mode: v.archive_mode.clone(),
        archive_command: clip(&v.archive_command),
        archive_library: clip(&v.archive_library),
        archived_count: v.archived_count,
        last_archived_wal: v.last_archived_wal.clone().unwrap_or_default(),
        last_archived_time: opt_ts(v.last_archived_time),
        last_archived_file: v.last_archived_file.as_ref().map(file_to_wire),
        last_archived_uncompressed_bytes: v.last_archived_uncompressed_bytes,
        cluster_created_at: opt_ts(v.cluster_created_at),
        cluster_age_secs: v.cluster_age_secs,
    }
}

// === wire -> model ===

fn file_from_wire(
    field: &'static str,
    f: Option<pb::ArchivedFile>,
) -> Result<Option<ArchivedFile>, ConvertError> {
    let Some(f) = f else { return Ok(None) };
    let Some(mtime) = f.mtime.as_ref() else {
        return Ok(None); // a file without a time says nothing usable
    };
    let mtime = from_ts(mtime)?;
    Ok(Some(ArchivedFile {
        name: text(field, f.name)?,
        mtime,
        size_bytes: f.size_bytes,
        age_secs: f.age_secs,
    }))
}

pub(super) fn from_wire(a: pb::ArchiveDirObservation) -> Result<ArchiveDirObs, ConvertError> {
    let continuity = match a.continuity {
        None => None,
        Some(c) => Some(Continuity {
            newest_backup: opt_text("newest_backup", c.newest_backup)?,
            range_start: text("range_start", c.range_start)?,
            range_end: text("range_end", c.range_end)?,
            range_segments: c.range_segments,
            gap_count: c.gap_count,
            missing_segments: c.missing_segments,
            gaps: list("gaps", c.gaps, |g| {
                Ok(ArchiveGap {
                    first_missing: text("gaps", g.first_missing)?,
                    missing: g.missing,
                    segments_after: g.segments_after,
                })
            })?,
            missing_before_range: c.missing_before_range,
            first_missing_before_range: opt_text(
                "first_missing_before_range",
                c.first_missing_before_range,
            )?,
            short_segments: c.short_segments,
            short: list("short", c.short, |s| {
                Ok(ShortSegment {
                    name: text("short", s.name)?,
                    size_bytes: s.size_bytes,
                    segments_after: s.segments_after,
                })
            })?,
        }),
    };
    let postgres = match a.postgres {
        None => None,
        Some(v) => Some(ArchiverView {
            wal_probe: text("wal_probe", v.wal_probe)?,
            error: opt_text("postgres.error", v.error)?,
            in_recovery: v.in_recovery,
            archive_mode: text("archive_mode", v.archive_mode)?,
            archive_command: text("archive_command", v.archive_command)?,
            archive_library: text("archive_library", v.archive_library)?,
            archived_count: v.archived_count,
            last_archived_wal: opt_text("last_archived_wal", v.last_archived_wal)?,
            last_archived_time: from_opt_ts(&v.last_archived_time)?,
            last_archived_file: file_from_wire("last_archived_file", v.last_archived_file)?,
            last_archived_uncompressed_bytes: v.last_archived_uncompressed_bytes,
            cluster_created_at: from_opt_ts(&v.cluster_created_at)?,
            cluster_age_secs: v.cluster_age_secs,
        }),
    };
    Ok(ArchiveDirObs {
        path: text("path", a.path)?,
        exists: a.exists,
        read_error: opt_text("read_error", a.read_error)?,
        access: match a.access {
            None => None,
            Some(d) => Some(DirAccess {
                uid: d.uid,
                owner: opt_text("owner", d.owner)?,
                gid: d.gid,
                group: opt_text("group", d.group)?,
                mode: d.mode,
            }),
        },
        expected_owner: opt_text("expected_owner", a.expected_owner)?,
        expected_group: opt_text("expected_group", a.expected_group)?,
        expected_mode: a.expected_mode,
        expected_min_retention_secs: (a.expected_min_retention_secs > 0)
            .then_some(a.expected_min_retention_secs),
        asynchronous: a.asynchronous,
        entries_scanned: a.entries_scanned,
        truncated: a.truncated,
        newer_than_scan: a.newer_than_scan,
        segments: a.segments,
        segment_bytes: a.segment_bytes,
        compressed_segments: a.compressed_segments,
        history_files: a.history_files,
        backup_files: a.backup_files,
        partial_files: a.partial_files,
        other_files: a.other_files,
        other_names: list("other_names", a.other_names, |n| text("other_names", n))?,
        files_open_to_others: a.files_open_to_others,
        first_open_to_others: opt_text("first_open_to_others", a.first_open_to_others)?,
        oldest_segment: file_from_wire("oldest_segment", a.oldest_segment)?,
        newest_segment: file_from_wire("newest_segment", a.newest_segment)?,
        daily: list("daily", a.daily, |d| {
            Ok(DayVolume {
                day: text("daily", d.day)?,
                bytes: d.bytes,
                segments: d.segments,
            })
        })?,
        wal_segment_size_bytes: a.wal_segment_size_bytes,
        segment_size_source: SizeSource::parse(&a.segment_size_source),
        timeline: a.timeline,
        timeline_source: opt_text("timeline_source", a.timeline_source)?,
        timeline_note: opt_text("timeline_note", a.timeline_note)?,
        missing_history: opt_text("missing_history", a.missing_history)?,
        continuity,
        continuity_note: opt_text("continuity_note", a.continuity_note)?,
        postgres,
        newest_backup: match a.newest_backup {
            None => None,
            Some(b) => Some(BackupHistory {
                name: text("newest_backup.name", b.name)?,
                error: opt_text("newest_backup.error", b.error)?,
                label: opt_text("newest_backup.label", b.label)?,
                start_time: opt_text("newest_backup.start_time", b.start_time)?,
                stop_time: opt_text("newest_backup.stop_time", b.stop_time)?,
                duration_secs: b.duration_secs,
                stop_segment: opt_text("newest_backup.stop_segment", b.stop_segment)?,
            }),
        },
        window: match a.window {
            None => None,
            Some(w) => Some(RecoveryWindow {
                earliest_backup: text("window.earliest_backup", w.earliest_backup)?,
                start: from_ts(w.start.as_ref().ok_or(ConvertError::MissingTime)?)?,
                start_exact: w.start_exact,
                latest_backup: text("window.latest_backup", w.latest_backup)?,
                end_segment: text("window.end_segment", w.end_segment)?,
                end: from_ts(w.end.as_ref().ok_or(ConvertError::MissingTime)?)?,
                cut_at: opt_text("window.cut_at", w.cut_at)?,
                segments_after_cut: w.segments_after_cut,
                backups: w.backups,
            }),
        },
        window_note: opt_text("window_note", a.window_note)?,
        encryption: match a.encryption {
            None => None,
            Some(e) => Some(EncryptionAudit {
                sampled: e.sampled,
                readable: e.readable,
                first_readable: opt_text("encryption.first_readable", e.first_readable)?,
                first_readable_kind: opt_text(
                    "encryption.first_readable_kind",
                    e.first_readable_kind,
                )?,
                unreadable: e.unreadable,
                first_error: opt_text("encryption.first_error", e.first_error)?,
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid time")
    }

    fn sample() -> ArchiveDirObs {
        ArchiveDirObs {
            path: "/archive_path".into(),
            exists: true,
            access: Some(DirAccess {
                uid: 117,
                owner: Some("postgres".into()),
                gid: 123,
                group: Some("postgres".into()),
                mode: 0o700,
            }),
            expected_owner: Some("postgres".into()),
            expected_mode: Some(0o700),
            expected_min_retention_secs: Some(7 * 86_400),
            asynchronous: true,
            segments: 3,
            oldest_segment: Some(ArchivedFile {
                name: FIRST_SEGMENT.into(),
                mtime: at(1_700_000_000),
                size_bytes: 16 << 20,
                age_secs: 3600,
            }),
            daily: vec![DayVolume {
                day: "2023-11-14".into(),
                bytes: 48 << 20,
                segments: 3,
            }],
            wal_segment_size_bytes: 16 << 20,
            segment_size_source: SizeSource::Postgresql,
            timeline: 1,
            continuity: Some(Continuity {
                range_start: FIRST_SEGMENT.into(),
                range_end: "000000010000000000000003".into(),
                range_segments: 3,
                gaps: vec![ArchiveGap {
                    first_missing: "000000010000000000000002".into(),
                    missing: 1,
                    segments_after: 1,
                }],
                gap_count: 1,
                missing_segments: 1,
                ..Continuity::default()
            }),
            postgres: Some(ArchiverView {
                wal_probe: "main".into(),
                archive_mode: "on".into(),
                archived_count: 3,
                last_archived_wal: Some("000000010000000000000003".into()),
                last_archived_time: Some(at(1_700_003_000)),
                last_archived_uncompressed_bytes: Some(16 << 20),
                cluster_created_at: Some(at(1_699_000_000)),
                cluster_age_secs: Some(1_003_600),
                ..ArchiverView::default()
            }),
            newest_backup: Some(BackupHistory {
                name: "000000010000000000000002.00000028.backup".into(),
                label: Some("nightly".into()),
                start_time: Some("2023-11-14 21:00:00 UTC".into()),
                stop_time: Some("2023-11-14 21:12:00 UTC".into()),
                duration_secs: Some(720),
                stop_segment: Some("000000010000000000000002".into()),
                ..BackupHistory::default()
            }),
            ..ArchiveDirObs::default()
        }
    }

    #[test]
    fn archive_observation_survives_a_round_trip_through_the_wire() {
        let a = sample();
        let back = from_wire(pb::ArchiveDirObservation::from(&a));
        assert_eq!(back, Ok(a));
    }

    #[test]
    fn too_many_gaps_are_refused() {
        let mut w = pb::ArchiveDirObservation::from(&sample());
        if let Some(c) = &mut w.continuity {
            c.gaps = vec![pb::ArchiveGap::default(); MAX_PROBLEMS + 1];
        }
        assert!(matches!(
            from_wire(w),
            Err(ConvertError::TooMany { field: "gaps", .. })
        ));
    }
}
