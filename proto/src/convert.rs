//! Conversions between the generated wire types and [`crate::model`].
//!
//! Agent side: model -> wire, infallible. Collector side: wire -> model, checked: a result
//! that cannot be understood is rejected by id with a reason rather than stored half-read.

use crate::generated as pb;
use crate::model::*;
use chrono::{DateTime, Utc};

mod archive;
mod backup_tool;
mod drill;
mod restore;
mod settings;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("result has no result_id")]
    MissingId,
    #[error("result_id longer than {max} characters")]
    IdTooLong { max: usize },
    #[error("unknown probe kind {0}")]
    UnknownKind(i32),
    #[error("result has no measured_at")]
    MissingTime,
    #[error("timestamp out of range")]
    BadTime,
    #[error("probe name {0:?} is not a valid name (1-64 of a-z, 0-9, '_', '-')")]
    BadName(String),
    #[error("result has neither an observation nor an error")]
    Empty,
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains a NUL character")]
    Nul { field: &'static str },
    #[error("result_id may contain only letters, digits and '-'")]
    BadId,
    #[error("{field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("observation of kind {observed:?} in a result of kind {declared:?}")]
    KindMismatch {
        declared: ProbeKind,
        observed: ProbeKind,
    },
}

const MAX_ID_LEN: usize = 64;
/// Longest text accepted in any observation field (paths, commands, errors): generous for
/// real values, small enough that a hostile agent cannot make the collector store megabytes.
pub const MAX_TEXT: usize = 4096;
/// Most `problems` entries one backup-directory observation may carry.
pub const MAX_PROBLEMS: usize = 100;

fn text(field: &'static str, s: String) -> Result<String, ConvertError> {
    if s.len() > MAX_TEXT {
        Err(ConvertError::TooLong {
            field,
            max: MAX_TEXT,
        })
    } else if s.contains('\0') {
        // PostgreSQL text cannot hold NUL: refuse it here, per result, rather than fail the
        // whole batch's transaction and have the agent replay it forever.
        Err(ConvertError::Nul { field })
    } else {
        Ok(s)
    }
}

/// The agent truncates long texts before sending (see [`clip`]) so that an honest result is
/// never refused for length.
pub fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Probe names end up in check ids, URLs and file names: keep them plain.
pub fn valid_probe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

// === time ===

pub fn to_ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_ts(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, ConvertError> {
    let nanos = u32::try_from(t.nanos).map_err(|_| ConvertError::BadTime)?;
    DateTime::from_timestamp(t.seconds, nanos).ok_or(ConvertError::BadTime)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(to_ts)
}

fn from_opt_ts(t: &Option<prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, ConvertError> {
    t.as_ref().map(from_ts).transpose()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Checked text where empty means absent.
fn opt_text(field: &'static str, s: String) -> Result<Option<String>, ConvertError> {
    Ok(non_empty(text(field, s)?))
}

/// An optional text for the wire: clipped, absent as empty.
fn clip_opt(s: &Option<String>) -> String {
    s.as_deref().map(clip).unwrap_or_default()
}

/// A list from the wire, refused beyond [`MAX_PROBLEMS`] entries, each converted by `f`.
fn list<T, U>(
    field: &'static str,
    items: Vec<T>,
    f: impl Fn(T) -> Result<U, ConvertError>,
) -> Result<Vec<U>, ConvertError> {
    if items.len() > MAX_PROBLEMS {
        return Err(ConvertError::TooMany {
            field,
            max: MAX_PROBLEMS,
        });
    }
    items.into_iter().map(f).collect()
}

// === kind ===

impl From<ProbeKind> for pb::ProbeKind {
    fn from(k: ProbeKind) -> Self {
        match k {
            ProbeKind::Backup => pb::ProbeKind::BackupDir,
            ProbeKind::Disk => pb::ProbeKind::Disk,
            ProbeKind::Wal => pb::ProbeKind::WalArchive,
            ProbeKind::Archive => pb::ProbeKind::ArchiveDir,
            ProbeKind::Restore => pb::ProbeKind::Restore,
            ProbeKind::PgBackRest => pb::ProbeKind::Pgbackrest,
            ProbeKind::Barman => pb::ProbeKind::Barman,
            ProbeKind::Drill => pb::ProbeKind::Drill,
            ProbeKind::Settings => pb::ProbeKind::Settings,
        }
    }
}

fn kind_from_wire(k: i32) -> Result<ProbeKind, ConvertError> {
    match pb::ProbeKind::try_from(k) {
        Ok(pb::ProbeKind::BackupDir) => Ok(ProbeKind::Backup),
        Ok(pb::ProbeKind::Disk) => Ok(ProbeKind::Disk),
        Ok(pb::ProbeKind::WalArchive) => Ok(ProbeKind::Wal),
        Ok(pb::ProbeKind::ArchiveDir) => Ok(ProbeKind::Archive),
        Ok(pb::ProbeKind::Restore) => Ok(ProbeKind::Restore),
        Ok(pb::ProbeKind::Pgbackrest) => Ok(ProbeKind::PgBackRest),
        Ok(pb::ProbeKind::Barman) => Ok(ProbeKind::Barman),
        Ok(pb::ProbeKind::Drill) => Ok(ProbeKind::Drill),
        Ok(pb::ProbeKind::Settings) => Ok(ProbeKind::Settings),
        _ => Err(ConvertError::UnknownKind(k)),
    }
}

// === result: model -> wire ===

impl From<&ProbeResult> for pb::ProbeResult {
    fn from(r: &ProbeResult) -> Self {
        pb::ProbeResult {
            result_id: r.result_id.clone(),
            kind: pb::ProbeKind::from(r.kind) as i32,
            name: r.name.clone(),
            measured_at: Some(to_ts(r.measured_at)),
            duration_ms: r.duration_ms,
            interval_secs: r.interval_secs,
            error: r.error.as_deref().map(clip).unwrap_or_default(),
            observation: r.observation.as_ref().map(|o| match o {
                Observation::Backup(b) => pb::probe_result::Observation::BackupDir(b.into()),
                Observation::Disk(d) => pb::probe_result::Observation::Disk(d.into()),
                Observation::Wal(w) => pb::probe_result::Observation::WalArchive(w.into()),
                Observation::Archive(a) => {
                    pb::probe_result::Observation::ArchiveDir(a.as_ref().into())
                }
                Observation::Restore(r) => {
                    pb::probe_result::Observation::Restore(r.as_ref().into())
                }
                Observation::PgBackRest(t) => {
                    pb::probe_result::Observation::Pgbackrest(t.as_ref().into())
                }
                Observation::Barman(t) => pb::probe_result::Observation::Barman(t.as_ref().into()),
                Observation::Drill(d) => pb::probe_result::Observation::Drill(d.as_ref().into()),
                Observation::Settings(o) => pb::probe_result::Observation::Settings(o.into()),
            }),
        }
    }
}

impl From<&BackupDirObs> for pb::BackupDirObservation {
    fn from(b: &BackupDirObs) -> Self {
        pb::BackupDirObservation {
            path: b.path.clone(),
            exists: b.exists,
            read_error: b.read_error.as_deref().map(clip).unwrap_or_default(),
            file_count: b.file_count,
            total_bytes: b.total_bytes,
            newest_path: b
                .newest
                .as_ref()
                .map(|n| n.path.clone())
                .unwrap_or_default(),
            newest_mtime: b.newest.as_ref().map(|n| to_ts(n.mtime)),
            newest_size: b.newest.as_ref().map_or(0, |n| n.size_bytes),
            newest_age_secs: b.newest.as_ref().map(|n| n.age_secs),
            ignored_files: b.ignored_files,
            entries_scanned: b.entries_scanned,
            truncated: b.truncated,
            problem_count: b.problem_count,
            problems: b
                .problems
                .iter()
                .take(MAX_PROBLEMS)
                .map(|p| clip(p))
                .collect(),
            expected_max_age_secs: b.expected_max_age_secs.unwrap_or(0),
            future_files: b.future_files,
            newest_future_path: b
                .newest_future
                .as_ref()
                .map(|n| n.path.clone())
                .unwrap_or_default(),
            newest_future_mtime: b.newest_future.as_ref().map(|n| to_ts(n.mtime)),
            newest_base_backup: b.newest_base_backup.as_ref().map(Into::into),
        }
    }
}

impl From<&DiskObs> for pb::DiskObservation {
    fn from(d: &DiskObs) -> Self {
        pb::DiskObservation {
            path: d.path.clone(),
            error: d.error.as_deref().map(clip).unwrap_or_default(),
            total_bytes: d.total_bytes,
            free_bytes: d.free_bytes,
            avail_bytes: d.avail_bytes,
            inodes_total: d.inodes_total,
            inodes_free: d.inodes_free,
            inodes_avail: d.inodes_avail,
            device_id: d.device_id,
            mount_point: d.mount_point.clone().unwrap_or_default(),
            fs_type: d.fs_type.clone().unwrap_or_default(),
            read_only: d.read_only,
            expected_mount_point: d.expected_mount_point.clone().unwrap_or_default(),
            read_only_allowed: d.read_only_allowed,
        }
    }
}

impl From<&WalObs> for pb::WalArchiveObservation {
    fn from(w: &WalObs) -> Self {
        pb::WalArchiveObservation {
            server_version_num: w.server_version_num,
            in_recovery: w.in_recovery,
            archive_mode: w.archive_mode.clone(),
            archive_command: clip(&w.archive_command),
            archive_library: w.archive_library.clone(),
            archive_timeout_secs: w.archive_timeout_secs,
            wal_segment_size_bytes: w.wal_segment_size_bytes,
            archived_count: w.archived_count,
            last_archived_wal: w.last_archived_wal.clone().unwrap_or_default(),
            last_archived_time: opt_ts(w.last_archived_time),
            failed_count: w.failed_count,
            last_failed_wal: w.last_failed_wal.clone().unwrap_or_default(),
            last_failed_time: opt_ts(w.last_failed_time),
            stats_reset: opt_ts(w.stats_reset),
            db_now: opt_ts(w.db_now),
            current_lsn: w.current_lsn.clone().unwrap_or_default(),
            current_wal_file: w.current_wal_file.clone().unwrap_or_default(),
            pending_source: match w.pending_source {
                PendingSource::ArchiveStatusdir => pb::PendingSource::ArchiveStatusdir,
                PendingSource::Unavailable => pb::PendingSource::Unavailable,
                PendingSource::WalPositions => pb::PendingSource::WalPositions,
            } as i32,
            ready_segments: w.ready_segments,
            ready_history: w.ready_history,
            ready_other: w.ready_other,
            oldest_ready_name: w.oldest_ready_name.clone().unwrap_or_default(),
            oldest_ready_age_secs: w.oldest_ready_age_secs,
            pending_note: w.pending_note.as_deref().map(clip).unwrap_or_default(),
            exposure_advisory: w.exposure_advisory,
            last_archive_latency_ms: w.last_archive_latency_ms,
            next_xid: w.next_xid,
            unswitched_writes_since: opt_ts(w.unswitched_writes_since),
            unswitched_writes_note: w
                .unswitched_writes_note
                .as_deref()
                .map(clip)
                .unwrap_or_default(),
            system_identifier: w.system_identifier.as_deref().map(clip).unwrap_or_default(),
            base_backups_running: w
                .base_backups_running
                .iter()
                .take(MAX_PROBLEMS)
                .map(|b| pb::RunningBaseBackup {
                    pid: b.pid,
                    application_name: clip_opt(&b.application_name),
                    phase: clip(&b.phase),
                    running_secs: b.running_secs,
                })
                .collect(),
        }
    }
}

// === result: wire -> model ===

impl TryFrom<pb::ProbeResult> for ProbeResult {
    type Error = ConvertError;

    fn try_from(r: pb::ProbeResult) -> Result<Self, ConvertError> {
        if r.result_id.is_empty() {
            return Err(ConvertError::MissingId);
        }
        if r.result_id.len() > MAX_ID_LEN {
            return Err(ConvertError::IdTooLong { max: MAX_ID_LEN });
        }
        if !r
            .result_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConvertError::BadId);
        }
        if !valid_probe_name(&r.name) {
            return Err(ConvertError::BadName(r.name.chars().take(80).collect()));
        }
        let kind = kind_from_wire(r.kind)?;
        let measured_at = from_ts(r.measured_at.as_ref().ok_or(ConvertError::MissingTime)?)?;
        let observation = r
            .observation
            .map(|o| observation_from_wire(o, measured_at))
            .transpose()?;
        if let Some(o) = &observation
            && o.kind() != kind
        {
            return Err(ConvertError::KindMismatch {
                declared: kind,
                observed: o.kind(),
            });
        }
        let error = non_empty(text("error", r.error)?);
        if observation.is_none() && error.is_none() {
            return Err(ConvertError::Empty);
        }
        Ok(ProbeResult {
            result_id: r.result_id,
            kind,
            name: r.name,
            measured_at,
            duration_ms: r.duration_ms,
            interval_secs: r.interval_secs,
            error,
            observation,
        })
    }
}

fn observation_from_wire(
    o: pb::probe_result::Observation,
    measured_at: DateTime<Utc>,
) -> Result<Observation, ConvertError> {
    use pb::probe_result::Observation as W;
    Ok(match o {
        W::BackupDir(b) => {
            if b.problems.len() > MAX_PROBLEMS {
                return Err(ConvertError::TooMany {
                    field: "problems",
                    max: MAX_PROBLEMS,
                });
            }
            let problems = b
                .problems
                .into_iter()
                .map(|p| text("problems", p))
                .collect::<Result<_, _>>()?;
            Observation::Backup(BackupDirObs {
                newest: match (
                    non_empty(text("newest_path", b.newest_path)?),
                    &b.newest_mtime,
                ) {
                    (Some(path), Some(mtime)) => {
                        let mtime = from_ts(mtime)?;
                        Some(NewestFile {
                            path,
                            mtime,
                            size_bytes: b.newest_size,
                            // An absent age is not "brand new": compute it the agent's way.
                            age_secs: b
                                .newest_age_secs
                                .unwrap_or_else(|| (measured_at - mtime).num_seconds()),
                        })
                    }
                    _ => None,
                },
                future_files: b.future_files,
                newest_future: match (
                    non_empty(text("newest_future_path", b.newest_future_path)?),
                    &b.newest_future_mtime,
                ) {
                    (Some(path), Some(mtime)) => {
                        let mtime = from_ts(mtime)?;
                        Some(NewestFile {
                            path,
                            mtime,
                            size_bytes: 0,
                            age_secs: (measured_at - mtime).num_seconds(),
                        })
                    }
                    _ => None,
                },
                newest_base_backup: b
                    .newest_base_backup
                    .map(restore::base_backup_from_wire)
                    .transpose()?,
                path: text("path", b.path)?,
                exists: b.exists,
                read_error: non_empty(text("read_error", b.read_error)?),
                file_count: b.file_count,
                total_bytes: b.total_bytes,
                ignored_files: b.ignored_files,
                entries_scanned: b.entries_scanned,
                truncated: b.truncated,
                problem_count: b.problem_count,
                problems,
                expected_max_age_secs: (b.expected_max_age_secs > 0)
                    .then_some(b.expected_max_age_secs),
            })
        }
        W::Disk(d) => Observation::Disk(DiskObs {
            path: text("path", d.path)?,
            error: non_empty(text("error", d.error)?),
            total_bytes: d.total_bytes,
            free_bytes: d.free_bytes,
            avail_bytes: d.avail_bytes,
            inodes_total: d.inodes_total,
            inodes_free: d.inodes_free,
            inodes_avail: d.inodes_avail,
            device_id: d.device_id,
            mount_point: non_empty(text("mount_point", d.mount_point)?),
            fs_type: non_empty(text("fs_type", d.fs_type)?),
            read_only: d.read_only,
            expected_mount_point: non_empty(text("expected_mount_point", d.expected_mount_point)?),
            read_only_allowed: d.read_only_allowed,
        }),
        W::WalArchive(w) => Observation::Wal(WalObs {
            server_version_num: w.server_version_num,
            in_recovery: w.in_recovery,
            archive_timeout_secs: w.archive_timeout_secs,
            wal_segment_size_bytes: w.wal_segment_size_bytes,
            archived_count: w.archived_count,
            last_archived_wal: non_empty(text("last_archived_wal", w.last_archived_wal)?),
            last_archived_time: from_opt_ts(&w.last_archived_time)?,
            failed_count: w.failed_count,
            last_failed_wal: non_empty(text("last_failed_wal", w.last_failed_wal)?),
            last_failed_time: from_opt_ts(&w.last_failed_time)?,
            stats_reset: from_opt_ts(&w.stats_reset)?,
            db_now: from_opt_ts(&w.db_now)?,
            current_lsn: non_empty(text("current_lsn", w.current_lsn)?),
            current_wal_file: non_empty(text("current_wal_file", w.current_wal_file)?),
            pending_source: match pb::PendingSource::try_from(w.pending_source) {
                Ok(pb::PendingSource::ArchiveStatusdir) => PendingSource::ArchiveStatusdir,
                Ok(pb::PendingSource::WalPositions) => PendingSource::WalPositions,
                _ => PendingSource::Unavailable,
            },
            ready_segments: w.ready_segments,
            ready_history: w.ready_history,
            ready_other: w.ready_other,
            oldest_ready_name: non_empty(text("oldest_ready_name", w.oldest_ready_name)?),
            oldest_ready_age_secs: w.oldest_ready_age_secs,
            pending_note: non_empty(text("pending_note", w.pending_note)?),
            exposure_advisory: w.exposure_advisory,
            last_archive_latency_ms: w.last_archive_latency_ms,
            next_xid: w.next_xid,
            unswitched_writes_since: from_opt_ts(&w.unswitched_writes_since)?,
            unswitched_writes_note: non_empty(text(
                "unswitched_writes_note",
                w.unswitched_writes_note,
            )?),
            system_identifier: non_empty(text("system_identifier", w.system_identifier)?),
            base_backups_running: list("base_backups_running", w.base_backups_running, |b| {
                Ok(RunningBaseBackup {
                    pid: b.pid,
                    application_name: non_empty(text(
                        "base_backups_running.application_name",
                        b.application_name,
                    )?),
                    phase: text("base_backups_running.phase", b.phase)?,
                    running_secs: b.running_secs,
                })
            })?,
            archive_mode: text("archive_mode", w.archive_mode)?,
            archive_command: text("archive_command", w.archive_command)?,
            archive_library: text("archive_library", w.archive_library)?,
        }),
        W::ArchiveDir(a) => Observation::Archive(Box::new(archive::from_wire(a)?)),
        W::Restore(r) => Observation::Restore(Box::new(restore::from_wire(r)?)),
        W::Pgbackrest(t) => Observation::PgBackRest(Box::new(backup_tool::from_wire(t)?)),
        W::Barman(t) => Observation::Barman(Box::new(backup_tool::from_wire(t)?)),
        W::Drill(d) => Observation::Drill(Box::new(drill::from_wire(d)?)),
        W::Settings(o) => Observation::Settings(settings::from_wire(o)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProbeResult {
        ProbeResult {
            result_id: "0b4a7f1e-0000-4000-8000-000000000001".into(),
            kind: ProbeKind::Backup,
            name: "daily".into(),
            measured_at: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            duration_ms: 3,
            interval_secs: 21600,
            error: None,
            observation: Some(Observation::Backup(BackupDirObs {
                path: "/backup/daily".into(),
                exists: true,
                file_count: 2,
                newest: Some(NewestFile {
                    path: "/backup/daily/base.tar".into(),
                    mtime: DateTime::from_timestamp(1_699_990_000, 0).unwrap(),
                    size_bytes: 42,
                    age_secs: 10_000,
                }),
                expected_max_age_secs: Some(86400),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn result_survives_a_round_trip_through_the_wire() {
        let r = sample();
        let back = ProbeResult::try_from(pb::ProbeResult::from(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn result_without_id_is_rejected() {
        let mut w = pb::ProbeResult::from(&sample());
        w.result_id.clear();
        assert_eq!(ProbeResult::try_from(w), Err(ConvertError::MissingId));
    }

    #[test]
    fn observation_of_another_kind_is_rejected() {
        let mut w = pb::ProbeResult::from(&sample());
        w.kind = pb::ProbeKind::Disk as i32;
        assert!(matches!(
            ProbeResult::try_from(w),
            Err(ConvertError::KindMismatch { .. })
        ));
    }

    #[test]
    fn agent_side_clips_long_texts_so_honest_results_pass() {
        let mut r = sample();
        r.observation = None;
        r.error = Some("é".repeat(MAX_TEXT));
        let back = ProbeResult::try_from(pb::ProbeResult::from(&r)).unwrap();
        let e = back.error.unwrap();
        assert!(e.len() <= MAX_TEXT && e.ends_with("..."));
    }

    #[test]
    fn nul_and_odd_ids_are_rejected() {
        let mut w = pb::ProbeResult::from(&sample());
        w.error = "a\0b".into();
        assert_eq!(
            ProbeResult::try_from(w),
            Err(ConvertError::Nul { field: "error" })
        );
        let mut w = pb::ProbeResult::from(&sample());
        w.result_id = "id with spaces".into();
        assert_eq!(ProbeResult::try_from(w), Err(ConvertError::BadId));
    }

    #[test]
    fn missing_age_is_computed_from_the_measurement_time() {
        let mut w = pb::ProbeResult::from(&sample());
        if let Some(pb::probe_result::Observation::BackupDir(b)) = &mut w.observation {
            b.newest_age_secs = None;
        }
        let r = ProbeResult::try_from(w).unwrap();
        let Some(Observation::Backup(b)) = r.observation else {
            panic!()
        };
        assert_eq!(b.newest.unwrap().age_secs, 10_000);
    }

    #[test]
    fn oversized_text_is_rejected_not_stored() {
        let mut w = pb::ProbeResult::from(&sample());
        if let Some(pb::probe_result::Observation::BackupDir(b)) = &mut w.observation {
            b.path = "x".repeat(MAX_TEXT + 1);
        }
        assert_eq!(
            ProbeResult::try_from(w),
            Err(ConvertError::TooLong {
                field: "path",
                max: MAX_TEXT
            })
        );
        let mut w = pb::ProbeResult::from(&sample());
        if let Some(pb::probe_result::Observation::BackupDir(b)) = &mut w.observation {
            b.problems = vec!["p".into(); MAX_PROBLEMS + 1];
        }
        assert!(matches!(
            ProbeResult::try_from(w),
            Err(ConvertError::TooMany { .. })
        ));
    }

    #[test]
    fn probe_names_that_would_break_check_ids_are_rejected() {
        let mut w = pb::ProbeResult::from(&sample());
        w.name = "../etc".into();
        assert!(matches!(
            ProbeResult::try_from(w),
            Err(ConvertError::BadName(_))
        ));
    }
}
