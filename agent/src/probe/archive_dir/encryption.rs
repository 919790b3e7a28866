//! Encryption policy: in an archive declared encrypted, no segment may be readable without a
//! key. The newest [`SAMPLE`] segments are opened and their first 40 bytes read (the only file
//! contents this probe reads besides history files), bounded whatever the archive's size.
//!
//! Readable means either:
//! - a plain WAL segment: its first page has a long header (`XLP_LONG_HEADER` in `xlp_info`)
//!   whose timeline and page address are the ones the file name implies and whose
//!   `xlp_seg_size` is a size `initdb` allows. No `XLOG_PAGE_MAGIC` table is needed, so this
//!   holds across PostgreSQL versions; random (encrypted) bytes match it with negligible odds;
//! - a plain compression container (gzip, zstd, lz4 frame, bzip2, xz, and lzma by its
//!   header's uncompressed size): compressed is not encrypted. Brotli has no magic number and
//!   is not recognised.

use super::names::{self, SegName, valid_segment_size};
use super::scan::SegEntry;
use backwatch_proto::model::EncryptionAudit;
use std::io::Read;
use std::path::Path;

/// Newest segments examined per run.
pub const SAMPLE: usize = 8;
const XLP_LONG_HEADER: u16 = 0x0002;

/// What makes `head` (a segment's first bytes) readable without a key, if anything.
pub fn readable_kind(head: &[u8], seg: SegName, seg_size: u64) -> Option<&'static str> {
    const CONTAINERS: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip container"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd container"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4 container"),
        (b"BZh", "bzip2 container"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz container"),
    ];
    if let Some((_, kind)) = CONTAINERS.iter().find(|(m, _)| head.starts_with(m)) {
        return Some(kind);
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    let plain = || -> Option<bool> {
        let info = u16_at(2)?;
        let tli = u32_at(4)?;
        let pageaddr = u64_at(8)?;
        let size = u64::from(u32_at(32)?);
        Some(
            info & XLP_LONG_HEADER != 0
                && tli == seg.tli
                && valid_segment_size(size)
                && seg.segno(size).is_some_and(|n| n * size == pageaddr)
                && (seg_size == 0 || size == seg_size),
        )
    };
    if plain().unwrap_or(false) {
        return Some("plain WAL page header");
    }
    // LZMA "alone" (`.lzma`, as WAL-G writes it) has no magic number, but its header is the
    // coder's properties (at most 224), the dictionary size and the uncompressed size: this
    // segment's, or all ones when the writer did not know it.
    let lzma = || -> Option<bool> {
        let size = u64_at(5)?;
        Some(
            *head.first()? <= 224
                && (size == u64::MAX
                    || (valid_segment_size(size) && (seg_size == 0 || size == seg_size))),
        )
    };
    lzma().unwrap_or(false).then_some("lzma container")
}

/// Reads the newest [`SAMPLE`] segments of `segments` in `dir`.
pub fn audit(dir: &Path, segments: &[SegEntry], seg_size: u64) -> EncryptionAudit {
    let mut newest: Vec<&SegEntry> = segments.iter().collect();
    newest.sort_by_key(|s| std::cmp::Reverse(s.name.position_key()));
    let mut audit = EncryptionAudit::default();
    for s in newest.into_iter().take(SAMPLE) {
        let base = s.name.name();
        let candidates: Vec<String> = if s.compressed {
            names::stored_names(&base)
                .into_iter()
                .skip(1)
                .map(|(name, _)| name)
                .collect()
        } else {
            vec![base]
        };
        let Some((name, file)) = candidates
            .into_iter()
            .find_map(|n| std::fs::File::open(dir.join(&n)).ok().map(|f| (n, f)))
        else {
            audit.unreadable += 1;
            audit
                .first_error
                .get_or_insert_with(|| format!("{}: cannot be opened", s.name.name()));
            continue;
        };
        let mut head = Vec::with_capacity(40);
        if let Err(e) = file.take(40).read_to_end(&mut head) {
            audit.unreadable += 1;
            audit
                .first_error
                .get_or_insert_with(|| format!("{name}: {}", super::os_text(&e)));
            continue;
        }
        audit.sampled += 1;
        if let Some(kind) = readable_kind(&head, s.name, seg_size) {
            audit.readable += 1;
            if audit.first_readable.is_none() {
                audit.first_readable = Some(name);
                audit.first_readable_kind = Some(kind.to_string());
            }
        }
    }
    audit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_header(tli: u32, pageaddr: u64, seg_size: u32) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        h[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        h[4..8].copy_from_slice(&tli.to_le_bytes());
        h[8..16].copy_from_slice(&pageaddr.to_le_bytes());
        h[32..36].copy_from_slice(&seg_size.to_le_bytes());
        h
    }

    #[test]
    fn plain_segment_is_recognised_by_its_long_page_header() {
        let seg = SegName {
            tli: 1,
            log: 0,
            seg: 3,
        };
        let size = 16u64 << 20;
        let head = long_header(1, 3 * size, size as u32);
        assert_eq!(
            readable_kind(&head, seg, size),
            Some("plain WAL page header")
        );
        // The same bytes under another segment's name do not match, nor do random bytes.
        let other = SegName {
            tli: 1,
            log: 0,
            seg: 4,
        };
        assert_eq!(readable_kind(&head, other, size), None);
        let noise: Vec<u8> = (0..40u32).map(|i| (i * 97 + 13) as u8).collect();
        assert_eq!(readable_kind(&noise, seg, size), None);
    }

    #[test]
    fn compression_containers_are_readable_too() {
        let seg = SegName {
            tli: 1,
            log: 0,
            seg: 3,
        };
        assert_eq!(
            readable_kind(&[0x1f, 0x8b, 8, 0], seg, 0),
            Some("gzip container")
        );
        assert_eq!(
            readable_kind(&[0x28, 0xb5, 0x2f, 0xfd, 0], seg, 0),
            Some("zstd container")
        );
        // LZMA alone, as `xz --format=lzma` writes it (size unknown), and with the size.
        let lzma = |size: u64| {
            let mut h = vec![0x5d, 0, 0, 0x80, 0];
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&[0x00, 0x3f, 0x91]);
            h
        };
        let size = 16u64 << 20;
        assert_eq!(
            readable_kind(&lzma(u64::MAX), seg, size),
            Some("lzma container")
        );
        assert_eq!(
            readable_kind(&lzma(size), seg, size),
            Some("lzma container")
        );
        assert_eq!(readable_kind(&lzma(size + 1), seg, size), None);
    }
}
