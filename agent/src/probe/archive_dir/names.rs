//! PostgreSQL's WAL file names and segment arithmetic.
//!
//! A segment name is `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log, segment; 8 upper-case hex
//! digits each), the segment number being `log × (2³² / wal_segment_size) + segment`. Other
//! files an archive holds: `<segment>.partial` (the last, unfinished segment of a timeline a
//! standby was promoted away from), `<segment>.<offset>.backup` (backup history file, written
//! when a base backup ends; its name is the backup's start location) and `<timeline>.history`.
//! Any of them may carry a compression suffix. Parsing is strict (exact lengths, upper-case
//! hex), so a stray file never passes for WAL.

/// Suffixes archive commands add: compression (gzip, lz4, zstd, brotli, xz, lzma as WAL-G
/// writes it, bzip2) and encryption Backwatch cannot open (gpg and PGP, ASCII-armoured or not,
/// age, an `openssl enc` convention). A segment under any of them is in the archive; only a
/// compressed one can be read here.
pub const COMPRESSION_SUFFIXES: [(&str, Compression); 12] = [
    (".gz", Compression::Gzip),
    (".lz4", Compression::Lz4),
    (".zst", Compression::Zstd),
    (".br", Compression::Brotli),
    (".xz", Compression::Xz),
    (".lzma", Compression::Lzma),
    (".bz2", Compression::Bzip2),
    (".gpg", Compression::Sealed(".gpg")),
    (".pgp", Compression::Sealed(".pgp")),
    (".asc", Compression::Sealed(".asc")),
    (".age", Compression::Sealed(".age")),
    (".enc", Compression::Sealed(".enc")),
];

impl Compression {
    /// The smallest file of this format that holds anything (its fixed header and trailer): a
    /// compressed segment shorter is empty or cut off, e.g. `gzip < %p > %f.gz` creates the
    /// file before gzip runs, so a full disk or a kill leaves it empty; a real segment, even
    /// all zeros, compresses to kilobytes. Of an encrypted one only emptiness is known.
    pub fn min_bytes(self) -> u64 {
        match self {
            Compression::Gzip => 18,
            Compression::Lz4 => 11,
            Compression::Zstd => 9,
            Compression::Brotli => 1,
            Compression::Xz => 32,
            Compression::Lzma => 13,
            Compression::Bzip2 => 14,
            Compression::Sealed(_) => 1,
        }
    }

    /// The command that writes the file named after it, decompressed, to standard output;
    /// `None` for an encrypted one (the key is not Backwatch's).
    pub fn decompress_command(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip -dc"),
            Compression::Lz4 => Some("lz4 -dc"),
            Compression::Zstd => Some("zstd -dcq"),
            Compression::Brotli => Some("brotli -dc"),
            Compression::Xz => Some("xz -dc"),
            Compression::Lzma => Some("xz --format=lzma -dc"),
            Compression::Bzip2 => Some("bzip2 -dc"),
            Compression::Sealed(_) => None,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::Sealed(suffix) => write!(f, "encrypted ({suffix})"),
            other => f.write_str(&format!("{other:?}").to_lowercase()),
        }
    }
}

/// PostgreSQL's default `wal_segment_size`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The container an archive file is in, as its suffix names it.
pub enum Compression {
    Gzip,
    Lz4,
    Zstd,
    Brotli,
    Xz,
    Lzma,
    Bzip2,
    /// Encrypted, under this suffix: present, not readable here.
    Sealed(&'static str),
}

/// Timeline, log and segment parts of a segment name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegName {
    pub tli: u32,
    pub log: u32,
    pub seg: u32,
}

impl SegName {
    /// Order by WAL position, timeline last; independent of the segment size because the
    /// segment part is always below the segments per log.
    pub fn position_key(self) -> (u32, u32, u32) {
        (self.log, self.seg, self.tli)
    }

    /// The segment number, or `None` when the name does not fit `seg_size` (its segment part
    /// is too large: the archive was written with a smaller segment size).
    pub fn segno(self, seg_size: u64) -> Option<u64> {
        let per = segs_per_log(seg_size);
        (u64::from(self.seg) < per).then(|| u64::from(self.log) * per + u64::from(self.seg))
    }

    pub fn from_segno(tli: u32, segno: u64, seg_size: u64) -> SegName {
        let per = segs_per_log(seg_size);
        SegName {
            tli,
            // A segment number from a u64 LSN divided by the segment size: log fits in u32.
            log: u32::try_from(segno / per).unwrap_or(u32::MAX),
            seg: u32::try_from(segno % per).unwrap_or(u32::MAX),
        }
    }

    pub fn name(self) -> String {
        format!("{:08X}{:08X}{:08X}", self.tli, self.log, self.seg)
    }
}

/// Segments per 4 GiB "log file": 256 for 16 MiB segments.
pub fn segs_per_log(seg_size: u64) -> u64 {
    (1u64 << 32) / seg_size.max(1)
}

/// What `initdb --wal-segsize` accepts: a power of two from 1 MiB to 1 GiB.
pub fn valid_segment_size(size: u64) -> bool {
    size.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&size)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFile {
    Segment(SegName),
    Partial(SegName),
    /// Backup history file: the backup started at `offset` bytes into `start`.
    Backup {
        start: SegName,
        offset: u32,
    },
    History(u32),
    Other,
}

/// Classifies a file name of the archive directory. An encrypted file may have been
/// compressed first (`%f.gz.gpg`): the outer container is what counts, as it is all that can
/// be opened here.
pub fn parse(name: &str) -> (WalFile, Option<Compression>) {
    let (base, compression) = strip_suffix(name);
    let base = match compression {
        Some(Compression::Sealed(_)) => match strip_suffix(base) {
            (inner, Some(c)) if !matches!(c, Compression::Sealed(_)) => inner,
            _ => base,
        },
        _ => base,
    };
    (classify(base), compression)
}

fn strip_suffix(name: &str) -> (&str, Option<Compression>) {
    COMPRESSION_SUFFIXES
        .iter()
        .find_map(|(suffix, c)| name.strip_suffix(suffix).map(|b| (b, Some(*c))))
        .unwrap_or((name, None))
}

/// Every name an archive command may have stored the file `base` under, with its container:
/// as it is, under one suffix, or compressed and then encrypted (`.gz.gpg`). For lookups by
/// exact name (a `stat` each), which do not depend on where a listing stopped.
pub fn stored_names(base: &str) -> Vec<(String, Option<Compression>)> {
    let mut names = vec![(base.to_string(), None)];
    names.extend(
        COMPRESSION_SUFFIXES
            .iter()
            .map(|(suffix, c)| (format!("{base}{suffix}"), Some(*c))),
    );
    let sealed = COMPRESSION_SUFFIXES
        .iter()
        .filter(|(_, c)| matches!(c, Compression::Sealed(_)));
    for (outer, c) in sealed {
        for (inner, _) in COMPRESSION_SUFFIXES
            .iter()
            .filter(|(_, c)| c.decompress_command().is_some())
        {
            names.push((format!("{base}{inner}{outer}"), Some(*c)));
        }
    }
    names
}

fn classify(base: &str) -> WalFile {
    if let Some(seg) = seg_name(base) {
        return WalFile::Segment(seg);
    }
    if let Some(seg) = base.strip_suffix(".partial").and_then(seg_name) {
        return WalFile::Partial(seg);
    }
    if let Some(rest) = base.strip_suffix(".backup")
        && let Some((seg, offset)) = rest.split_once('.')
        && let (Some(start), Some(offset)) = (seg_name(seg), hex8(offset))
    {
        return WalFile::Backup { start, offset };
    }
    if let Some(tli) = base.strip_suffix(".history").and_then(hex8) {
        return WalFile::History(tli);
    }
    WalFile::Other
}

fn seg_name(s: &str) -> Option<SegName> {
    if s.len() != 24 {
        return None;
    }
    Some(SegName {
        tli: hex8(s.get(0..8)?)?,
        log: hex8(s.get(8..16)?)?,
        seg: hex8(s.get(16..24)?)?,
    })
}

/// Exactly 8 upper-case hex digits, as PostgreSQL writes them.
fn hex8(s: &str) -> Option<u32> {
    let upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if s.len() != 8 || !s.bytes().all(upper_hex) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

pub fn history_name(tli: u32) -> String {
    format!("{tli:08X}.history")
}

pub use backwatch_proto::model::parse_lsn;

/// Entries of a timeline history file, oldest first: the parent timeline and the WAL location
/// where it was left. PostgreSQL writes `<tli>\t<X/X>\t<reason>` lines; blank and `#` lines
/// are skipped, as `readTimeLineHistory()` does.
pub fn parse_history(text: &str) -> Result<Vec<(u32, u64)>, String> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let tli = fields.next().and_then(|t| t.parse::<u32>().ok());
        let lsn = fields.next().and_then(parse_lsn);
        match (tli, lsn) {
            (Some(tli), Some(lsn)) => entries.push((tli, lsn)),
            _ => return Err(format!("line {}: not \"<timeline> <X/X> <reason>\"", i + 1)),
        }
    }
    if entries.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err("timelines are not in increasing order".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG16: u64 = 16 << 20;

    #[test]
    fn names_are_classified_strictly() {
        let seg = SegName {
            tli: 1,
            log: 0,
            seg: 3,
        };
        assert_eq!(
            parse("000000010000000000000003"),
            (WalFile::Segment(seg), None)
        );
        assert_eq!(
            parse("000000010000000000000003.zst"),
            (WalFile::Segment(seg), Some(Compression::Zstd))
        );
        assert_eq!(
            parse("000000010000000000000003.partial.gz"),
            (WalFile::Partial(seg), Some(Compression::Gzip))
        );
        assert_eq!(
            parse("000000010000000000000003.00000028.backup"),
            (
                WalFile::Backup {
                    start: seg,
                    offset: 0x28
                },
                None
            )
        );
        assert_eq!(parse("00000002.history"), (WalFile::History(2), None));
        assert_eq!(
            parse("000000010000000000000003.gpg"),
            (WalFile::Segment(seg), Some(Compression::Sealed(".gpg")))
        );
        assert_eq!(
            parse("00000002.history.age"),
            (WalFile::History(2), Some(Compression::Sealed(".age")))
        );
        assert_eq!(
            parse("000000010000000000000003.lzma"),
            (WalFile::Segment(seg), Some(Compression::Lzma))
        );
        assert_eq!(
            parse("000000010000000000000003.zst.gpg"),
            (WalFile::Segment(seg), Some(Compression::Sealed(".gpg")))
        );
        assert_eq!(parse("000000010000000000000003.gpg.gz").0, WalFile::Other);
        let stored = stored_names("000000010000000000000003");
        assert!(
            stored
                .iter()
                .all(|(n, c)| parse(n) == (WalFile::Segment(seg), *c))
        );
        assert!(stored.iter().any(|(n, _)| n.ends_with(".gz.age")));
        for other in [
            "00000001000000000000000a",
            "0000000100000000000000003",
            "000000010000000000000003.tmp",
            ".000000010000000000000003.XyZ12",
            "00000002.history.tmp",
            "archive_status",
        ] {
            assert_eq!(parse(other).0, WalFile::Other, "{other}");
        }
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        let n = SegName {
            tli: 1,
            log: 2,
            seg: 0xCB,
        };
        assert_eq!(n.segno(SEG16), Some(2 * 256 + 0xCB));
        assert_eq!(SegName::from_segno(1, 2 * 256 + 0xCB, SEG16), n);
        let one_mib = SegName {
            tli: 1,
            log: 0,
            seg: 0x100,
        };
        assert_eq!(one_mib.segno(1 << 20), Some(0x100));
        assert_eq!(
            one_mib.segno(SEG16),
            None,
            "0x100 does not fit 16 MiB segments"
        );
        assert_eq!(
            SegName::from_segno(3, 0x1000, 1 << 20).name(),
            "000000030000000100000000"
        );
    }

    #[test]
    fn history_files_parse_like_postgresql() {
        let text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000028\tat restore point\n";
        assert_eq!(
            parse_history(text),
            Ok(vec![(1, 0x300_0000), (2, 0x500_0028)])
        );
        assert!(parse_history("1 junk\n").is_err());
        assert!(parse_history("2\t0/1\tx\n1\t0/2\tx\n").is_err());
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    #[test]
    fn segment_sizes_are_those_initdb_accepts() {
        assert!(valid_segment_size(1 << 20));
        assert!(valid_segment_size(SEG16));
        assert!(!valid_segment_size(3 << 20));
        assert!(!valid_segment_size(2 << 30));
    }
}
