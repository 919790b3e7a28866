//! The probe against real directories in temp dirs (PostgreSQL's answer is given, not asked).

use super::postgres::Facts;
use super::*;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::time::UNIX_EPOCH;

const MIB: u64 = 1 << 20;
const HOUR: Duration = Duration::from_secs(3600);

fn probe(dir: &Path) -> ArchiveDirProbe {
    ArchiveDirProbe {
        name: "main".into(),
        path: dir.to_path_buf(),
        expected_owner: Some("postgres".into()),
        expected_group: Some("postgres".into()),
        expected_mode: Some(0o700),
        min_retention: Some(Duration::from_secs(7 * 86_400)),
        max_entries: DEFAULT_MAX_ENTRIES,
        wal: None,
        encrypted: false,
        asynchronous: false,
        memo: Default::default(),
    }
}

/// A sparse file of `size` bytes dated `mtime` (sparse: a 16 MiB segment costs no disk).
fn put(dir: &Path, name: &str, size: u64, mtime: SystemTime) {
    let f = File::create(dir.join(name)).expect("create");
    f.set_len(size).expect("size");
    f.set_modified(mtime).expect("mtime");
}

fn seg(tli: u32, segno: u64) -> String {
    names::SegName::from_segno(tli, segno, 16 * MIB).name()
}

fn facts(last: &str) -> Facts {
    Facts {
        archive_mode: "on".into(),
        archive_command: "cp %p /a/%f".into(),
        wal_segment_size: 16 * MIB,
        archived_count: 9,
        last_archived_wal: Some(last.into()),
        timeline: Some(1),
        cluster_created_at: chrono::DateTime::from_timestamp(1_600_000_000, 0),
        ..Facts::default()
    }
}

#[test]
fn missing_directory_is_an_observation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let obs = probe(&tmp.path().join("nope")).scan(SystemTime::now(), None);
    assert!(!obs.exists);
    assert_eq!(obs.read_error, None);
    assert_eq!(obs.expected_min_retention_secs, Some(7 * 86_400));
}

#[test]
fn contents_are_counted_by_kind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let now = SystemTime::now();
    for n in 1..=4 {
        put(d, &seg(1, n), 16 * MIB, now - HOUR * (10 - n as u32));
    }
    put(d, &format!("{}.gz", seg(1, 5)), MIB, now - HOUR);
    put(d, &format!("{}.00000028.backup", seg(1, 2)), 300, now);
    put(d, &format!("{}.partial", seg(1, 6)), 16 * MIB, now);
    put(d, "00000002.history", 40, now);
    put(d, &format!("{}.tmp", seg(1, 7)), 10, now);
    put(d, &seg(1, 8), 16 * MIB, now + HOUR); // dated after the scan started
    fs::create_dir(d.join("old")).expect("mkdir");
    let obs = probe(d).scan(now, None);
    assert_eq!(obs.entries_scanned, 11);
    assert_eq!(
        (obs.segments, obs.compressed_segments, obs.newer_than_scan),
        (5, 1, 1)
    );
    assert_eq!(obs.segment_bytes, 4 * 16 * MIB + MIB);
    assert_eq!(
        (obs.history_files, obs.backup_files, obs.partial_files),
        (1, 1, 1)
    );
    assert_eq!(obs.other_files, 2);
    let oldest = obs.oldest_segment.expect("oldest");
    assert_eq!(oldest.name, seg(1, 1));
    assert_eq!(oldest.age_secs, 9 * 3600);
    assert_eq!(
        obs.newest_segment.expect("newest").name,
        format!("{}.gz", seg(1, 5))
    );
    assert_eq!(obs.wal_segment_size_bytes, 16 * MIB);
    assert_eq!(obs.segment_size_source, SizeSource::Archive);
}

#[test]
fn per_day_volume_covers_recent_days() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86_400);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14 22:13:20
    put(tmp.path(), &seg(1, 1), 16 * MIB, now - day * 40);
    put(tmp.path(), &seg(1, 2), 16 * MIB, now - day);
    put(tmp.path(), &seg(1, 3), 16 * MIB, now - day);
    put(tmp.path(), &seg(1, 4), 16 * MIB, now);
    let obs = probe(tmp.path()).scan(now, None);
    let days: Vec<(&str, u64, u64)> = obs
        .daily
        .iter()
        .map(|d| (d.day.as_str(), d.bytes, d.segments))
        .collect();
    assert_eq!(
        days,
        [("2023-11-13", 32 * MIB, 2), ("2023-11-14", 16 * MIB, 1)]
    );
}

#[test]
fn gap_is_found_from_the_newest_backup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for n in [1, 2, 3, 5, 6, 7, 8, 9, 10] {
        put(tmp.path(), &seg(1, n), 16 * MIB, now - HOUR);
    }
    put(
        tmp.path(),
        &format!("{}.00000028.backup", seg(1, 3)),
        300,
        now - HOUR,
    );
    let obs = probe(tmp.path()).scan(now, None);
    let c = obs.continuity.expect("continuity");
    assert_eq!(
        c.newest_backup.as_deref(),
        Some("000000010000000000000003.00000028.backup")
    );
    assert_eq!(c.gaps.len(), 1);
    assert_eq!(c.gaps[0].first_missing, seg(1, 4));
    assert_eq!(c.gaps[0].segments_after, 6);
}

/// Names of 64 MiB segments around the boundary of log 0 and log 1 (a log holds 64 of them):
/// `…0000003E`, `…0000003F`, then `…0000000100000000`, … Read as 16 MiB segments they would
/// leave segments 0x40–0xFF of log 0 missing.
fn around_a_log_boundary() -> Vec<String> {
    (0x3c..0x44)
        .map(|n| names::SegName::from_segno(1, n, 64 * MIB).name())
        .collect()
}

/// A gzip file as far as the probe reads one: the magic bytes and the trailer's ISIZE.
fn put_gzip(dir: &Path, name: &str, uncompressed: u64, mtime: SystemTime) {
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend_from_slice(&[0; 30]);
    bytes.extend_from_slice(&[0; 4]); // CRC-32, not read
    bytes.extend_from_slice(&u32::try_from(uncompressed).expect("fits").to_le_bytes());
    fs::write(dir.join(name), bytes).expect("write");
    File::options()
        .write(true)
        .open(dir.join(name))
        .and_then(|f| f.set_modified(mtime))
        .expect("mtime");
}

#[test]
fn a_compressed_archive_of_larger_segments_shows_no_false_gap_without_a_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for name in around_a_log_boundary() {
        put_gzip(tmp.path(), &format!("{name}.gz"), 64 * MIB, now - HOUR);
    }
    let obs = probe(tmp.path()).scan(now, None);
    assert_eq!(
        (obs.wal_segment_size_bytes, obs.segment_size_source),
        (64 * MIB, SizeSource::Archive)
    );
    let c = obs.continuity.expect("continuity");
    assert!(c.gaps.is_empty(), "no gap: {:?}", c.gaps);
}

#[test]
fn without_a_recorded_size_the_names_crossing_a_log_give_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for name in around_a_log_boundary() {
        // bzip2 records no uncompressed size.
        put(tmp.path(), &format!("{name}.bz2"), MIB, now - HOUR);
    }
    let obs = probe(tmp.path()).scan(now, None);
    assert_eq!(
        (obs.wal_segment_size_bytes, obs.segment_size_source),
        (64 * MIB, SizeSource::Archive)
    );
    assert!(obs.continuity.expect("continuity").gaps.is_empty());

    // 16 MiB segments crossing a log show their highest part, FF: 16 MiB, and a real gap
    // is still one.
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in [0xfd, 0xfe, 0xff, 0x101, 0x102] {
        put(tmp.path(), &format!("{}.bz2", seg(1, n)), MIB, now - HOUR);
    }
    let obs = probe(tmp.path()).scan(now, None);
    assert_eq!(obs.wal_segment_size_bytes, 16 * MIB);
    let gaps = obs.continuity.expect("continuity").gaps;
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].first_missing, seg(1, 0x100));

    // Within one log nothing can be told from the names: the default, said as such.
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in 1..=3 {
        put(tmp.path(), &format!("{}.bz2", seg(1, n)), MIB, now - HOUR);
    }
    let obs = probe(tmp.path()).scan(now, None);
    assert_eq!(
        (obs.wal_segment_size_bytes, obs.segment_size_source),
        (16 * MIB, SizeSource::Default)
    );
}

#[test]
fn timeline_path_is_read_from_the_history_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for n in [3, 4, 5] {
        put(tmp.path(), &seg(1, n), 16 * MIB, now - HOUR);
    }
    for n in [5, 6] {
        put(tmp.path(), &seg(2, n), 16 * MIB, now - HOUR);
    }
    let history = tmp.path().join("00000002.history");
    fs::write(&history, "1\t0/5000000\tno recovery target specified\n").expect("history");
    // Dated explicitly: files dated after the scan start are left out, and a file system's
    // timestamp granularity must not decide whether this one counts.
    fs::File::options()
        .write(true)
        .open(&history)
        .and_then(|f| f.set_modified(now - HOUR))
        .expect("history mtime");
    let obs = probe(tmp.path()).scan(SystemTime::now(), None);
    assert_eq!(obs.timeline, 2);
    assert_eq!(obs.timeline_source.as_deref(), Some("archive"));
    assert_eq!(obs.timeline_note, None);
    let c = obs.continuity.expect("continuity");
    assert_eq!(
        (c.range_start.as_str(), c.gap_count),
        ("000000010000000000000003", 0)
    );
    assert_eq!(c.range_end, seg(2, 6));
}

/// A test point-in-time restore pointed at production's archive leaves `00000003.history`
/// and nothing else of timeline 3: without a server to ask, production's timeline 2 stays the
/// one judged, and its later gaps are still found.
#[test]
fn a_history_file_without_segments_does_not_take_over_the_timeline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for n in [5, 6, 8] {
        put(tmp.path(), &seg(2, n), 16 * MIB, now - HOUR);
    }
    for (name, text) in [
        (
            "00000002.history",
            "1\t0/5000000\tno recovery target specified\n",
        ),
        (
            "00000003.history",
            "1\t0/5000000\tno recovery target specified\n2\t0/6000000\tbefore 2026-12-01\n",
        ),
    ] {
        fs::write(tmp.path().join(name), text).expect("history");
        fs::File::options()
            .write(true)
            .open(tmp.path().join(name))
            .and_then(|f| f.set_modified(now - HOUR))
            .expect("history mtime");
    }
    let obs = probe(tmp.path()).scan(SystemTime::now(), None);
    assert_eq!(obs.timeline, 2);
    let c = obs.continuity.expect("continuity");
    assert_eq!(c.gap_count, 1, "{c:?}");
    assert_eq!(c.gaps[0].first_missing, seg(2, 7));
}

/// A compressing archive_command (`gzip < %p > /archive/%f.gz`) compresses the timeline and
/// backup history files too: they are read through gzip, not given up on.
#[test]
fn compressed_history_files_are_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for n in [3, 4, 5] {
        put_gzip(
            tmp.path(),
            &format!("{}.gz", seg(1, n)),
            16 * MIB,
            now - HOUR,
        );
    }
    for n in [5, 6] {
        put_gzip(
            tmp.path(),
            &format!("{}.gz", seg(2, n)),
            16 * MIB,
            now - HOUR,
        );
    }
    let backup = format!("{}.00000028.backup", seg(1, 3));
    for (name, text) in [
        (
            "00000002.history",
            "1\t0/5000000\tno recovery target specified\n".to_string(),
        ),
        (
            backup.as_str(),
            format!(
                "START WAL LOCATION: 0/3000028 (file {})\nSTOP WAL LOCATION: 0/3000100 (file {})\n\
                 START TIME: 2026-12-05 10:00:00 UTC\nSTOP TIME: 2026-12-05 10:00:05 UTC\n",
                seg(1, 3),
                seg(1, 3)
            ),
        ),
    ] {
        fs::write(tmp.path().join(name), text).expect("write");
        let ok = std::process::Command::new("gzip")
            .arg(tmp.path().join(name))
            .status()
            .expect("gzip")
            .success();
        assert!(ok);
        fs::File::options()
            .write(true)
            .open(tmp.path().join(format!("{name}.gz")))
            .and_then(|f| f.set_modified(now - HOUR))
            .expect("mtime");
    }
    let obs = probe(tmp.path()).scan(SystemTime::now(), None);
    assert_eq!(obs.timeline, 2);
    assert_eq!(obs.timeline_note, None, "read, not given up on");
    let b = obs.newest_backup.expect("backup history");
    assert_eq!(b.error, None);
    assert_eq!(b.stop_segment.as_deref(), Some(seg(1, 3).as_str()));
}

#[test]
fn missing_history_is_named_and_any_earlier_timeline_accepted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    put(tmp.path(), &seg(1, 3), 16 * MIB, now - HOUR);
    put(tmp.path(), &seg(2, 4), 16 * MIB, now - HOUR);
    let obs = probe(tmp.path()).scan(now, None);
    assert_eq!(obs.missing_history.as_deref(), Some("00000002.history"));
    assert!(
        obs.timeline_note
            .as_deref()
            .is_some_and(|n| n.starts_with("00000002.history is not in the archive")),
        "{:?}",
        obs.timeline_note
    );
    assert_eq!(obs.continuity.expect("continuity").gap_count, 0);
}

/// `gzip < %p > %f.gz` creates the file before gzip writes: a full disk or a kill leaves it
/// empty. Such a copy holds nothing: a short copy in the range, and a truncated last archived
/// segment, never "present".
#[test]
fn an_empty_compressed_segment_is_a_short_copy_not_a_present_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    for n in [1, 2, 4] {
        put_gzip(
            tmp.path(),
            &format!("{}.gz", seg(1, n)),
            16 * MIB,
            now - HOUR,
        );
    }
    put(tmp.path(), &format!("{}.gz", seg(1, 3)), 0, now - HOUR);
    let p = probe(tmp.path());
    let obs = p.scan(now, Some(("main".into(), Ok(facts(&seg(1, 3))))));
    let c = obs.continuity.as_ref().expect("continuity");
    assert_eq!((c.gap_count, c.short_segments), (0, 1), "{c:?}");
    assert_eq!(c.short[0].name, seg(1, 3));
    assert_eq!(c.short[0].size_bytes, 0);
    let view = obs.postgres.expect("view");
    assert_eq!(view.last_archived_uncompressed_bytes, Some(0));
}

#[test]
fn last_archived_segment_is_looked_up_plain_or_compressed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    put(tmp.path(), &seg(1, 1), 16 * MIB, now - HOUR);
    let mut gz = vec![0x1f, 0x8b, 8, 0];
    gz.extend_from_slice(&[0; 16]);
    gz.extend_from_slice(&(16u32 << 20).to_le_bytes());
    fs::write(tmp.path().join(format!("{}.gz", seg(1, 2))), gz).expect("gz");
    let p = probe(tmp.path());

    let obs = p.scan(now, Some(("main".into(), Ok(facts(&seg(1, 2))))));
    let view = obs.postgres.expect("view");
    assert_eq!(
        view.last_archived_file.map(|f| f.name),
        Some(format!("{}.gz", seg(1, 2)))
    );
    assert_eq!(view.last_archived_uncompressed_bytes, Some(16 * MIB));
    assert_eq!(
        view.cluster_created_at.map(|t| t.timestamp()),
        Some(1_600_000_000)
    );
    assert!(view.cluster_age_secs.is_some_and(|a| a > 0));
    assert_eq!(obs.segment_size_source, SizeSource::Postgresql);

    let obs = p.scan(now, Some(("main".into(), Ok(facts(&seg(1, 3))))));
    assert_eq!(obs.postgres.expect("view").last_archived_file, None);
}

#[test]
fn unreachable_server_is_kept_as_its_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let obs = probe(tmp.path()).scan(
        SystemTime::now(),
        Some(("main".into(), Err("cannot connect: refused".into()))),
    );
    let view = obs.postgres.expect("view");
    assert_eq!(view.error.as_deref(), Some("cannot connect: refused"));
    assert_eq!(view.wal_probe, "main");
}

#[test]
fn directory_access_and_files_open_to_others_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    put(d, &seg(1, 1), 16 * MIB, SystemTime::now());
    fs::set_permissions(d.join(seg(1, 1)), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    let obs = probe(d).scan(SystemTime::now(), None);
    let access = obs.access.expect("access");
    assert_eq!(access.mode, 0o755);
    assert_eq!(access.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(obs.files_open_to_others, 1);
    assert_eq!(obs.first_open_to_others, Some(seg(1, 1)));
}

#[test]
fn entry_bound_sets_truncated_and_skips_continuity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in 1..=10 {
        put(tmp.path(), &seg(1, n), 16 * MIB, SystemTime::now() - HOUR);
    }
    let mut p = probe(tmp.path());
    p.max_entries = 4;
    let obs = p.scan(SystemTime::now(), None);
    assert!(obs.truncated);
    assert_eq!(obs.entries_scanned, 4);
    assert_eq!(obs.continuity, None);
    assert!(obs.continuity_note.is_some());
}

#[test]
fn hundreds_of_thousands_of_files_are_one_quick_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Empty files: the scan never opens them, so their size does not matter to it.
    for n in 1..=200_000u64 {
        if n != 150_000 {
            File::create(tmp.path().join(seg(1, n))).expect("create");
        }
    }
    let started = std::time::Instant::now();
    let obs = probe(tmp.path()).scan(SystemTime::now(), None);
    let took = started.elapsed();
    assert_eq!(obs.segments, 199_999);
    let c = obs.continuity.expect("continuity");
    assert_eq!(c.gaps[0].first_missing, seg(1, 150_000));
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn unlistable_directory_says_what_to_grant() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: permissions do not stop root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let locked = tmp.path().join("archive");
    fs::create_dir(&locked).expect("mkdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    let obs = probe(&locked).scan(SystemTime::now(), None);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert!(obs.exists);
    let err = obs.read_error.expect("read error");
    assert!(
        err.starts_with("permission denied for the agent's user "),
        "{err}"
    );
    assert!(err.contains("setfacl -m u:"), "{err}");
}

#[test]
fn permission_denied_text_names_the_grant() {
    let p = probe(Path::new("/archive_path"));
    let text = p.unreadable(&io::Error::from(io::ErrorKind::PermissionDenied));
    assert!(text.contains("rx /archive_path`"), "{text}");
    assert_eq!(
        p.unreadable(&io::Error::from_raw_os_error(nix::libc::EIO)),
        "I/O error"
    );
}
