//! Plain `pg_basebackup` directories: what `backup_label` and `backup_manifest` say.
//!
//! Shared by the restore-readiness probe and the backup directory probe; not a probe itself.
//!
//! - The label of a tar backup is base.tar's first entry (compressed: the decompressor's first
//!   MiB, see [`base_entry`]).
//! - Start: `backup_label`'s `START TIME` (server `log_timezone`; read as an instant only when
//!   the zone is UTC/GMT or a numeric offset, since an abbreviation like "CEST" names no
//!   offset) and `START WAL LOCATION` with its segment.
//! - End: `backup_manifest`'s modification time: pg_basebackup writes the manifest after every
//!   data file and the WAL, so its mtime is when the backup finished (agent's filesystem clock).
//!   The manifest's last `WAL-Ranges` entry gives the end of the WAL the backup needs.
//! - Size: the sum of the manifest's file sizes (pg_wal is not listed there).
//! - Incremental (PostgreSQL 17 and later): `INCREMENTAL.*` files in the manifest, or
//!   `INCREMENTAL FROM LSN` in the label. Such a backup restores only combined with its chain.
//! - The WAL segment size is not written anywhere in either file; it is the one power of two
//!   from 1 MiB to 1 GiB that puts `START WAL LOCATION` in the segment `backup_label` names.
//! - Bounded: `backup_label` is read up to 64 KiB; the manifest is parsed streaming, keeping
//!   only sizes and WAL ranges (a manifest of a million files costs a few MB of memory).

use super::archive_dir::names::{self, SegName, WalFile};
use super::backup_dir::{os_text, to_utc};
use backwatch_proto::model::BaseBackup;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::Deserialize;
use std::io::{BufReader, Read};
use std::path::Path;

pub const LABEL: &str = "backup_label";
pub const MANIFEST: &str = "backup_manifest";
const MAX_LABEL_BYTES: u64 = 64 << 10;

/// One timeline's stretch of WAL the backup needs (manifest `WAL-Ranges`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub tli: u32,
    pub start: u64,
    pub end: u64,
}

/// A base backup as read, with the WAL ranges needed to restore it.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub backup: BaseBackup,
    pub wal_ranges: Vec<WalRange>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "Files", default)]
    files: Vec<ManifestFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<ManifestRange>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(rename = "Size", default)]
    size: u64,
    /// Only whether it names an incremental file is kept (`INCREMENTAL.<relation file>`).
    #[serde(rename = "Path", default, deserialize_with = "incremental_path")]
    incremental: bool,
}

/// Whether a manifest path is an incremental file: PostgreSQL 17's `pg_basebackup
/// --incremental` sends every relation file it may as `INCREMENTAL.<name>` (the changed blocks
/// only), even with none changed.
fn incremental_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let path = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let name = path.rsplit('/').next().unwrap_or(&path);
    Ok(name.starts_with("INCREMENTAL."))
}

#[derive(Deserialize)]
struct ManifestRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start_lsn: String,
    #[serde(rename = "End-LSN")]
    end_lsn: String,
}

/// Reads the backup in `dir`; problems go into `backup.error`, never a failure.
pub fn read(dir: &Path) -> Parsed {
    let mut out = Parsed {
        backup: BaseBackup {
            path: dir.display().to_string(),
            ..BaseBackup::default()
        },
        wal_ranges: Vec::new(),
    };
    let mut errors = Vec::new();
    match label_text(dir) {
        Ok(text) => apply_label(&mut out.backup, &text),
        Err(e) => errors.push(e),
    }
    if out.backup.wal_segment_size_bytes.is_none() && out.backup.start_segment.is_some() {
        out.backup.wal_segment_size_bytes = size_of_wal_files(dir);
    }
    let manifest = dir.join(MANIFEST);
    match std::fs::File::open(&manifest) {
        Err(e) => errors.push(format!("reading {MANIFEST}: {}", os_text(&e))),
        Ok(f) => {
            out.backup.end_time = f
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(to_utc);
            match serde_json::from_reader::<_, Manifest>(BufReader::new(f)) {
                Ok(m) => apply_manifest(&mut out, m),
                Err(e) => errors.push(format!("parsing {MANIFEST}: {e}")),
            }
        }
    }
    if let (Some(a), Some(b)) = (out.backup.start_time, out.backup.end_time) {
        out.backup.duration_secs = Some((b - a).num_seconds());
    }
    if !errors.is_empty() {
        out.backup.error = Some(errors.join("; "));
    }
    out
}

/// Candidates looked at for a full backup, newest first: beyond them a directory holds no
/// chain anyone restores from (incrementals are taken daily, a full one weekly or so).
const MAX_CANDIDATES: usize = 64;

/// The first full (not incremental) backup of `newest_first`, and how many incremental ones
/// come before it (at most [`MAX_CANDIDATES`] looked at). An incremental backup (PostgreSQL 17
/// and later) restores only combined with its chain (pg_combinebackup), and pg_verifybackup
/// passes it alone whatever became of the backups it builds on.
pub fn newest_full<T: AsRef<Path>>(newest_first: impl IntoIterator<Item = T>) -> (Option<T>, u32) {
    let mut incrementals = 0;
    for dir in newest_first.into_iter().take(MAX_CANDIDATES) {
        if !is_incremental(dir.as_ref()) {
            return (Some(dir), incrementals);
        }
        incrementals += 1;
    }
    (None, incrementals)
}

/// Whether the backup in `dir` is incremental: its label says `INCREMENTAL FROM LSN` (read
/// cheaply), else, when the label cannot be read, its manifest lists `INCREMENTAL.*` files.
pub fn is_incremental(dir: &Path) -> bool {
    match label_text(dir) {
        Ok(text) => text.lines().any(|l| l.starts_with("INCREMENTAL FROM LSN:")),
        Err(_) => read(dir).backup.incremental,
    }
}

/// The backup's `backup_label` (at most [`MAX_LABEL_BYTES`]): its own file, or a tar-format
/// backup's (`-Ft`) entry in base.tar, compressed or not; `Err` says why there is none.
fn label_text(dir: &Path) -> Result<String, String> {
    let mut label = String::new();
    match std::fs::File::open(dir.join(LABEL))
        .and_then(|f| f.take(MAX_LABEL_BYTES).read_to_string(&mut label))
    {
        Ok(_) => Ok(label),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && let Some(format @ Format::Tar(ext, _)) = format_of(dir) =>
        {
            base_entry(dir, format, LABEL, MAX_LABEL_BYTES)?
                .ok_or_else(|| format!("no {LABEL} in base.tar{ext}"))
        }
        Err(e) => Err(format!("reading {LABEL}: {}", os_text(&e))),
    }
}

/// How `pg_basebackup` wrote a backup: a plain directory (`-Fp`), or tar files (`-Ft`), with
/// `-Z gzip|lz4|zstd` compressed: the suffix after `.tar` (empty when not compressed) and the
/// program that decompresses it (GNU tar calls it with `-d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Tar(&'static str, Option<&'static str>),
}

/// The tar files `pg_basebackup -Ft` writes: uncompressed, or by its client- or server-side
/// compression methods.
const TAR_FORMATS: [(&str, Option<&str>); 4] = [
    ("", None),
    (".gz", Some("gzip")),
    (".lz4", Some("lz4")),
    (".zst", Some("zstd")),
];

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Tar("", _) => "tar",
            Format::Tar(".gz", _) => "tar.gz",
            Format::Tar(".lz4", _) => "tar.lz4",
            Format::Tar(_, _) => "tar.zst",
        }
    }
}

/// A plain backup has `PG_VERSION` at its top, a tar one `base.tar[.gz|.lz4|.zst]`.
pub fn format_of(dir: &Path) -> Option<Format> {
    if dir.join("PG_VERSION").is_file() {
        return Some(Format::Plain);
    }
    TAR_FORMATS
        .iter()
        .find(|(ext, _)| dir.join(format!("base.tar{ext}")).is_file())
        .map(|(ext, program)| Format::Tar(ext, *program))
}

/// Entries of an uncompressed tar file walked at most.
const MAX_TAR_ENTRIES: usize = 100_000;

/// Walks the entries of an uncompressed tar file in order: `visit` gets each one's name, size
/// and the file positioned at its content, and ends the walk by returning `Some`. `None` when
/// the file is missing or unreadable, or not a tar; `Some(None)` at the archive's end.
fn walk_tar<T>(
    path: &Path,
    mut visit: impl FnMut(&str, u64, &mut std::fs::File) -> Option<T>,
) -> Option<Option<T>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 512];
    for _ in 0..MAX_TAR_ENTRIES {
        f.read_exact(&mut header).ok()?;
        if header.iter().all(|b| *b == 0) {
            return Some(None); // end of archive
        }
        let (name, size) = tar_header(&header)?;
        let content = f.stream_position().ok()?;
        if let Some(found) = visit(&name, size, &mut f) {
            return Some(Some(found));
        }
        f.seek(SeekFrom::Start(content + size.div_ceil(512) * 512))
            .ok()?;
    }
    Some(None)
}

/// The content (at most `max` bytes) of entry `wanted` of an uncompressed tar file:
/// `pg_basebackup -Ft` writes `backup_label` and `PG_VERSION` near the start of base.tar.
pub fn tar_entry(path: &Path, wanted: &str, max: u64) -> Option<String> {
    walk_tar(path, |name, size, f| {
        let mut content = String::new();
        (name == wanted)
            .then(|| f.take(size.min(max)).read_to_string(&mut content).ok())
            .flatten()
            .map(|_| content)
    })
    .flatten()
}

/// How much of a compressed base.tar is unpacked to find an entry near its start.
const HEAD_BYTES: u64 = 1 << 20;

/// The content (at most `max` bytes) of entry `wanted` of a tar backup's base.tar, compressed
/// or not (`Ok(None)`: not there). The server sends `backup_label` first in the main
/// tablespace's archive (basebackup.c), so a compressed one is unpacked only for its first
/// [`HEAD_BYTES`], by its own decompressor, which is then stopped; other files (`PG_VERSION`)
/// are found only when they happen to be that early. `Err` when the decompressor cannot run.
pub fn base_entry(
    dir: &Path,
    format: Format,
    wanted: &str,
    max: u64,
) -> Result<Option<String>, String> {
    let Format::Tar(ext, program) = format else {
        return Ok(None);
    };
    let base = dir.join(format!("base.tar{ext}"));
    if program.is_none() {
        return Ok(tar_entry(&base, wanted, max));
    }
    let Some((_, compression)) = names::COMPRESSION_SUFFIXES.iter().find(|(s, _)| *s == ext) else {
        return Ok(None);
    };
    let head = super::archive_dir::compressed::decompressed_head(&base, *compression, HEAD_BYTES)?;
    Ok(entry_in(&head, wanted, max))
}

/// Entry `wanted` (at most `max` bytes) among the whole entries of the start of a tar stream.
fn entry_in(bytes: &[u8], wanted: &str, max: u64) -> Option<String> {
    let mut at = 0usize;
    for _ in 0..MAX_TAR_ENTRIES {
        let header: &[u8; 512] = bytes.get(at..at.checked_add(512)?)?.try_into().ok()?;
        if header.iter().all(|b| *b == 0) {
            return None;
        }
        let (name, size) = tar_header(header)?;
        let content = at + 512;
        if name == wanted {
            let end = content.checked_add(usize::try_from(size.min(max)).ok()?)?;
            return String::from_utf8(bytes.get(content..end)?.to_vec()).ok();
        }
        at = content.checked_add(usize::try_from(size.div_ceil(512) * 512).ok()?)?;
    }
    None
}

/// Every entry of an uncompressed tar file with its size (`None` when the file is missing or
/// not a tar): the segments in a `-Ft` backup's pg_wal.tar.
pub fn tar_sizes(path: &Path) -> Option<std::collections::HashMap<String, u64>> {
    let mut out = std::collections::HashMap::new();
    walk_tar(path, |name, size, _| {
        out.insert(name.to_string(), size);
        None::<()>
    })?;
    Some(out)
}

/// Name (without a leading `./`) and size of a ustar header.
fn tar_header(header: &[u8; 512]) -> Option<(String, u64)> {
    let field = |r: std::ops::Range<usize>| {
        let b = &header[r];
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).trim().to_string()
    };
    let size = u64::from_str_radix(&field(124..136), 8).ok()?;
    Some((field(0..100).trim_start_matches("./").to_string(), size))
}

fn apply_label(b: &mut BaseBackup, text: &str) {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    b.label = value("LABEL");
    b.start_time_text = value("START TIME");
    b.start_time = b.start_time_text.as_deref().and_then(parse_time);
    // "0/2000028 (file 000000010000000000000002)"
    if let Some(v) = value("START WAL LOCATION")
        && let Some((lsn, rest)) = v.split_once(" (file ")
    {
        let file = rest.strip_suffix(')').unwrap_or(rest);
        b.start_lsn = Some(lsn.trim().to_string());
        if let (WalFile::Segment(seg), None) = names::parse(file) {
            b.start_segment = Some(file.to_string());
            b.timeline = seg.tli;
            b.wal_segment_size_bytes =
                names::parse_lsn(lsn.trim()).and_then(|l| segment_size(l, seg));
        }
    }
    if let Some(tli) = value("START TIMELINE").and_then(|t| t.parse().ok()) {
        b.timeline = tli;
    }
    // PostgreSQL 17 and later: "INCREMENTAL FROM LSN: 0/5000028" names the backup this one is
    // incremental to.
    b.incremental |= value("INCREMENTAL FROM LSN").is_some();
}

fn apply_manifest(out: &mut Parsed, m: Manifest) {
    out.backup.file_count = m.files.len() as u64;
    out.backup.incremental |= m.files.iter().any(|f| f.incremental);
    out.backup.size_bytes = m.files.iter().map(|f| f.size).sum();
    out.wal_ranges = m
        .wal_ranges
        .iter()
        .filter_map(|r| {
            Some(WalRange {
                tli: r.timeline,
                start: names::parse_lsn(&r.start_lsn)?,
                end: names::parse_lsn(&r.end_lsn)?,
            })
        })
        .collect();
    // PostgreSQL lists the ranges newest timeline first (the backup's ending timeline, then
    // back through its history to the starting one): oldest first here, so that the last is
    // where the backup ends.
    out.wal_ranges.sort_by_key(|r| r.tli);
    let raw_end = m.wal_ranges.iter().max_by_key(|r| r.timeline);
    if let (Some(last), Some(raw)) = (out.wal_ranges.last().copied(), raw_end) {
        out.backup.end_lsn = Some(raw.end_lsn.clone());
        out.backup.timeline = last.tli;
        if let Some(size) = out.backup.wal_segment_size_bytes {
            out.backup.end_segment =
                Some(SegName::from_segno(last.tli, last_segno(last, size), size).name());
        }
    }
}

/// The segment holding the last byte of the range: an End-LSN exactly on a segment boundary
/// ends in the segment before it.
fn last_segno(r: WalRange, size: u64) -> u64 {
    if r.end > r.start {
        (r.end - 1) / size
    } else {
        r.end / size
    }
}

/// Segment names the ranges (oldest timeline first) cover, in order, at most `max` (the rest
/// is not needed to name the first missing one on any real backup). A range that a newer
/// timeline follows ends at the switch: the segment holding it is read from the newer
/// timeline, whose first segment is a copy up to the switch (the older timeline's own is
/// archived only as `.partial` after a promotion), so that range stops before it.
pub fn needed_segments(ranges: &[WalRange], size: u64, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        let mut segno = r.start / size;
        let last = if i + 1 < ranges.len() {
            match (r.end / size).checked_sub(1) {
                Some(l) => l,
                None => continue,
            }
        } else {
            last_segno(*r, size)
        };
        while segno <= last && out.len() < max {
            out.push(SegName::from_segno(r.tli, segno, size).name());
            segno += 1;
        }
    }
    out
}

/// The segment size that puts `lsn` into `seg`, if exactly one valid size does. A start early
/// in the first segment of a 4 GiB log fits several sizes (`5/00012345`, file `…0500000000`,
/// fits all of them); taking the smallest there named WAL segments that do not exist and
/// called the backup unrestorable (then the backup's own WAL files tell, see
/// [`size_of_wal_files`], or the restore check's archive).
fn segment_size(lsn: u64, seg: SegName) -> Option<u64> {
    let mut fits = (20..=30).map(|k| 1u64 << k).filter(|&size| {
        seg.segno(size) == Some(lsn / size) && SegName::from_segno(seg.tli, lsn / size, size) == seg
    });
    let size = fits.next()?;
    fits.next().is_none().then_some(size)
}

/// The size of the WAL segments the backup holds (`pg_wal/`, or `pg_wal.tar` of a tar backup),
/// when one is there with a size `initdb` allows.
fn size_of_wal_files(dir: &Path) -> Option<u64> {
    let is_segment = |name: &str| matches!(names::parse(name), (WalFile::Segment(_), None));
    let valid = names::valid_segment_size;
    if let Some(entries) = tar_sizes(&dir.join("pg_wal.tar")) {
        return entries
            .into_iter()
            .find(|(name, size)| is_segment(name) && valid(*size))
            .map(|(_, size)| size);
    }
    std::fs::read_dir(dir.join("pg_wal"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            (is_segment(&e.file_name().to_string_lossy()) && valid(meta.len()))
                .then_some(meta.len())
        })
}

/// "2024-06-01 10:00:00 UTC" (or GMT, or "+02") as an instant.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let (at, zone) = (text.get(..19)?, text.get(19..)?.trim());
    let naive = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset_secs = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z => {
            let (sign, digits) = match z.as_bytes().first()? {
                b'+' => (1, &z[1..]),
                b'-' => (-1, &z[1..]),
                _ => return None,
            };
            // "+02", "+05:45", or "+0545" (strftime's %z form).
            let (h, m) = match digits.split_once(':') {
                Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
                None if digits.len() == 4 => (
                    digits.get(..2)?.parse::<i32>().ok()?,
                    digits.get(2..)?.parse::<i32>().ok()?,
                ),
                None => (digits.parse::<i32>().ok()?, 0),
            };
            sign * (h * 3600 + m * 60)
        }
    };
    let offset = FixedOffset::east_opt(offset_secs)?;
    Some(
        naive
            .and_local_timezone(offset)
            .single()?
            .with_timezone(&Utc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_TEXT: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2024-06-01 10:00:00 UTC
LABEL: nightly
START TIMELINE: 1
";

    #[test]
    fn label_gives_start_lsn_segment_and_segment_size() {
        let mut b = BaseBackup::default();
        apply_label(&mut b, LABEL_TEXT);
        assert_eq!(b.label.as_deref(), Some("nightly"));
        assert_eq!(b.start_lsn.as_deref(), Some("0/2000028"));
        assert_eq!(b.start_segment.as_deref(), Some("000000010000000000000002"));
        assert_eq!(b.wal_segment_size_bytes, Some(16 << 20));
        assert_eq!(b.start_time, DateTime::from_timestamp(1_717_236_000, 0));
        // 1 MiB segments: the same LSN is segment 0x20.
        let mut small = BaseBackup::default();
        apply_label(
            &mut small,
            &LABEL_TEXT.replace("000000010000000000000002", "000000010000000000000020"),
        );
        assert_eq!(small.wal_segment_size_bytes, Some(1 << 20));
    }

    #[test]
    fn a_start_that_fits_every_segment_size_is_sized_by_the_backups_wal() {
        // 5/80028 is in the first MiB of log 5: segment 0 of that log whatever the size.
        let text = LABEL_TEXT.replace(
            "0/2000028 (file 000000010000000000000002)",
            "5/80028 (file 000000010000000500000000)",
        );
        let mut b = BaseBackup::default();
        apply_label(&mut b, &text);
        assert_eq!(b.start_segment.as_deref(), Some("000000010000000500000000"));
        assert_eq!(b.wal_segment_size_bytes, None, "1 MiB to 1 GiB all fit");

        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(LABEL), &text).expect("label");
        assert_eq!(read(tmp.path()).backup.wal_segment_size_bytes, None);
        std::fs::create_dir(tmp.path().join("pg_wal")).expect("mkdir");
        std::fs::File::create(tmp.path().join("pg_wal/000000010000000500000000"))
            .and_then(|f| f.set_len(16 << 20))
            .expect("segment");
        assert_eq!(
            read(tmp.path()).backup.wal_segment_size_bytes,
            Some(16 << 20)
        );
    }

    #[test]
    fn zone_abbreviations_are_not_instants_but_offsets_are() {
        assert_eq!(parse_time("2024-06-01 12:00:00 CEST"), None);
        assert_eq!(
            parse_time("2024-06-01 12:00:00 +02"),
            DateTime::from_timestamp(1_717_236_000, 0)
        );
        for zone in ["+05:45", "+0545"] {
            assert_eq!(
                parse_time(&format!("2024-06-01 12:00:00 {zone}")),
                DateTime::from_timestamp(1_717_222_500, 0),
                "{zone}"
            );
        }
    }

    #[test]
    fn needed_segments_end_before_a_boundary_end_lsn() {
        let size = 16 << 20;
        let r = [WalRange {
            tli: 1,
            start: 0x2000028,
            end: 0x3000000,
        }];
        assert_eq!(needed_segments(&r, size, 10), ["000000010000000000000002"]);
        let r = [WalRange {
            tli: 1,
            start: 0x2000028,
            end: 0x3000100,
        }];
        assert_eq!(needed_segments(&r, size, 10).len(), 2);
    }

    #[test]
    fn the_label_of_a_compressed_tar_backup_is_read_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = dir.path().join("content");
        std::fs::create_dir(&content).expect("content");
        std::fs::write(content.join(LABEL), LABEL_TEXT).expect("label");
        std::fs::write(content.join("PG_VERSION"), "18\n").expect("version");
        for (ext, flag) in [(".gz", "-z"), (".zst", "--zstd")] {
            let tar = dir.path().join(format!("base.tar{ext}"));
            let ok = std::process::Command::new("tar")
                .arg(flag)
                .arg("-cf")
                .arg(&tar)
                .arg("-C")
                .arg(&content)
                .args([LABEL, "PG_VERSION"])
                .status()
                .expect("tar")
                .success();
            assert!(ok, "tar {flag}");
            let format = format_of(dir.path()).expect("a tar backup");
            assert_eq!(
                base_entry(dir.path(), format, "PG_VERSION", 64)
                    .expect("decompressor runs")
                    .as_deref(),
                Some("18\n")
            );
            let r = read(dir.path());
            assert_eq!(
                r.backup.start_segment.as_deref(),
                Some("000000010000000000000002"),
                "{ext}: {r:?}"
            );
            std::fs::remove_file(&tar).expect("rm");
        }
    }

    #[test]
    fn a_backup_across_a_promotion_ends_on_the_newer_timeline() {
        // A standby's backup during which it was promoted at 0/3800000: PostgreSQL lists the
        // ending timeline first (backup_manifest.c, AddWALInfoToBackupManifest).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LABEL), LABEL_TEXT).expect("label");
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [], "WAL-Ranges": [
{ "Timeline": 2, "Start-LSN": "0/3800000", "End-LSN": "0/4000100" },
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3800000" }], "Manifest-Checksum": "x"}"#,
        )
        .expect("manifest");
        let r = read(dir.path());
        assert_eq!(r.backup.end_lsn.as_deref(), Some("0/4000100"));
        assert_eq!(r.backup.timeline, 2);
        assert_eq!(
            r.backup.end_segment.as_deref(),
            Some("000000020000000000000004")
        );
        // Segment 3 is read from timeline 2 (a copy up to the switch); timeline 1's own
        // segment 3 is archived only as `.partial`.
        assert_eq!(
            needed_segments(&r.wal_ranges, 16 << 20, 10),
            [
                "000000010000000000000002",
                "000000020000000000000003",
                "000000020000000000000004"
            ]
        );
    }

    #[test]
    fn a_directory_without_the_files_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = read(dir.path());
        assert!(
            r.backup.error.as_deref().is_some_and(|e| e.contains(LABEL)),
            "{r:?}"
        );
        std::fs::write(dir.path().join(LABEL), LABEL_TEXT).expect("label");
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [{"Path": "PG_VERSION", "Size": 3}, {"Path": "global/pg_control", "Size": 8192}], "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138"}], "Manifest-Checksum": "x"}"#,
        )
        .expect("manifest");
        let r = read(dir.path());
        assert_eq!(r.backup.error, None);
        assert_eq!((r.backup.file_count, r.backup.size_bytes), (2, 8195));
        assert_eq!(
            r.backup.end_segment.as_deref(),
            Some("000000010000000000000002")
        );
        assert!(r.backup.duration_secs.is_some());
    }
}
