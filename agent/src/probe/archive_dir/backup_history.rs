//! The newest base backup's history file (`<start segment>.<offset>.backup`): its label, start
//! and stop times, the duration between them, and the segment holding its stop location.
//!
//! PostgreSQL writes `KEY: value` lines (`do_pg_backup_stop()`); times are formatted as
//! `%Y-%m-%d %H:%M:%S %Z` in the server's `log_timezone`. A zone abbreviation ("CEST") names
//! no offset, so the times are kept as written and the duration is taken on the wall clock,
//! only when both carry the same abbreviation (a daylight-saving change in between would make
//! it wrong by an hour). One file of a few hundred bytes is read, at most 64 KiB (through its
//! decompressor when a compressing archive_command compressed it).

use super::names::{self, WalFile};
use backwatch_proto::model::BackupHistory;
use chrono::NaiveDateTime;
use std::path::Path;

const MAX_BYTES: u64 = 64 << 10;

/// Reads `dir/name`; problems are the result's `error`, never a failure of the probe.
pub fn read(dir: &Path, name: &str) -> BackupHistory {
    let (_, compression) = names::parse(name);
    let text = super::compressed::read_text(&dir.join(name), compression, MAX_BYTES);
    match text {
        Ok(text) => parse(name, &text),
        Err(error) => BackupHistory {
            name: name.to_string(),
            error: Some(error),
            ..BackupHistory::default()
        },
    }
}

pub fn parse(name: &str, text: &str) -> BackupHistory {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let start_time = value("START TIME");
    let stop_time = value("STOP TIME");
    // "0/2000100 (file 000000010000000000000002)"
    let stop_segment = value("STOP WAL LOCATION").and_then(|v| {
        let file = v.split_once("(file ")?.1.strip_suffix(')')?;
        matches!(names::parse(file), (WalFile::Segment(_), None)).then(|| file.to_string())
    });
    let duration_secs = match (start_time.as_deref(), stop_time.as_deref()) {
        (Some(a), Some(b)) => wall_clock_secs(a, b),
        _ => None,
    };
    let error = (start_time.is_none() && stop_segment.is_none())
        .then(|| "not a backup history file (no START TIME, no STOP WAL LOCATION)".to_string());
    BackupHistory {
        name: name.to_string(),
        error,
        label: value("LABEL"),
        start_time,
        stop_time,
        duration_secs,
        stop_segment,
    }
}

/// `b - a` for two `YYYY-MM-DD HH:MM:SS ZONE` times in the same zone.
fn wall_clock_secs(a: &str, b: &str) -> Option<i64> {
    let split = |t: &str| {
        let (at, zone) = (t.get(..19)?, t.get(19..)?.trim());
        Some((
            NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").ok()?,
            zone.to_string(),
        ))
    };
    let ((start, zone_a), (stop, zone_b)) = (split(a)?, split(b)?);
    (zone_a == zone_b).then(|| (stop - start).num_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
STOP WAL LOCATION: 0/3000100 (file 000000010000000000000003)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2024-06-01 10:00:00 UTC
LABEL: nightly base backup
START TIMELINE: 1
STOP TIME: 2024-06-01 10:12:30 UTC
STOP TIMELINE: 1
";

    #[test]
    fn a_postgresql_backup_history_file_is_read() {
        let b = parse("000000010000000000000002.00000028.backup", PG15);
        assert_eq!(b.error, None);
        assert_eq!(b.label.as_deref(), Some("nightly base backup"));
        assert_eq!(b.start_time.as_deref(), Some("2024-06-01 10:00:00 UTC"));
        assert_eq!(b.duration_secs, Some(750));
        assert_eq!(b.stop_segment.as_deref(), Some("000000010000000000000003"));
    }

    #[test]
    fn a_zone_change_during_the_backup_leaves_the_duration_unknown() {
        let text = PG15
            .replace("10:00:00 UTC", "01:50:00 CET")
            .replace("10:12:30 UTC", "03:10:00 CEST");
        let b = parse("x.backup", &text);
        assert_eq!(b.duration_secs, None);
        assert_eq!(b.stop_time.as_deref(), Some("2024-06-01 03:10:00 CEST"));
    }

    #[test]
    fn anything_else_is_an_error_not_a_panic() {
        assert!(parse("x.backup", "garbage\n").error.is_some());
        assert!(
            parse("x.backup", "START TIME: 2024\n")
                .duration_secs
                .is_none()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // Not there, or not gzip data: gzip's failure, never a panic.
        let b = read(dir.path(), "000000010000000000000002.00000028.backup.gz");
        assert!(
            b.error.as_deref().is_some_and(|e| e.starts_with("gzip")),
            "{b:?}"
        );
        std::fs::write(
            dir.path()
                .join("000000010000000000000003.00000028.backup.gz"),
            "plain text",
        )
        .expect("write");
        let b = read(dir.path(), "000000010000000000000003.00000028.backup.gz");
        assert!(
            b.error.as_deref().is_some_and(|e| e.starts_with("gzip")),
            "{b:?}"
        );
        let b = read(dir.path(), "000000010000000000000002.00000028.backup");
        assert_eq!(b.error.as_deref(), Some("No such file or directory"));
    }
}
