//! The uncompressed size of one compressed archive file, from its container's own header or
//! trailer: the gzip trailer's ISIZE (size mod 2³², exact for a segment of at most 1 GiB), the
//! zstd frame header's content size, the lz4 frame header's content size. Reads at most 18
//! bytes at the start and 4 at the end; never decompresses. `None` when the format does not
//! record the size (brotli, xz, bzip2; zstd and lz4 frames written without it) or the file is
//! not what its suffix says.

use super::names::Compression;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub fn uncompressed_size(path: &Path, compression: Compression) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let mut head = [0u8; 18];
    let n = read_up_to(&mut file, &mut head)?;
    let head = &head[..n];
    match compression {
        Compression::Gzip => {
            if !head.starts_with(&[0x1f, 0x8b]) {
                return None;
            }
            file.seek(SeekFrom::End(-4)).ok()?;
            let mut isize = [0u8; 4];
            file.read_exact(&mut isize).ok()?;
            Some(u64::from(u32::from_le_bytes(isize)))
        }
        Compression::Zstd => zstd_content_size(head),
        Compression::Lz4 => lz4_content_size(head),
        Compression::Brotli
        | Compression::Xz
        | Compression::Lzma
        | Compression::Bzip2
        | Compression::Sealed(_) => None,
    }
}

/// The first `max` bytes of `path` decompressed by its own program
/// ([`Compression::decompress_command`]), which is then stopped: a history file (a few hundred
/// bytes) or the start of a compressed tar. `Err` when the program cannot run or fails.
pub fn decompressed_head(
    path: &Path,
    compression: Compression,
    max: u64,
) -> Result<Vec<u8>, String> {
    use std::process::{Command, Stdio};
    let Some(command) = compression.decompress_command() else {
        return Err(format!("{compression}: Backwatch holds no key to read it"));
    };
    let mut argv = command.split_whitespace();
    let program = argv.next().unwrap_or("gzip");
    let mut child = Command::new(program)
        .args(argv)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {}", super::os_text(&e)))?;
    let mut head = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|out| out.take(max).read_to_end(&mut head));
    // Stopped once `max` bytes are in, or reaped after it ended by itself.
    let _ = child.kill();
    let status = child.wait();
    match read {
        Some(Ok(_)) if !head.is_empty() => Ok(head),
        Some(Err(e)) => Err(format!("{program}: {}", super::os_text(&e))),
        _ => Err(match status {
            Ok(s) if !s.success() => format!("{program} failed ({s}): not {compression} data"),
            _ => format!("{program} gave nothing"),
        }),
    }
}

/// A small text file of the archive (a history file), at most `max` bytes: read directly, or
/// through its decompressor when a compressing archive_command compressed it (as it does every
/// file it archives). `Err` says why not, in the OS's or the decompressor's words.
pub fn read_text(
    path: &Path,
    compression: Option<Compression>,
    max: u64,
) -> Result<String, String> {
    match compression {
        Some(c) => decompressed_head(path, c, max)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        None => {
            let mut text = String::new();
            File::open(path)
                .and_then(|f| f.take(max).read_to_string(&mut text))
                .map(|_| text)
                .map_err(|e| super::os_text(&e))
        }
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// RFC 8878 §3.1.1.1: magic, Frame_Header_Descriptor, [Window_Descriptor], [Dictionary_ID],
/// [Frame_Content_Size].
fn zstd_content_size(head: &[u8]) -> Option<u64> {
    if !head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return None;
    }
    let fhd = *head.get(4)?;
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    let did_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => return None, // size not recorded
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let start = 5 + usize::from(!single_segment) + did_len;
    let field = head.get(start..start + fcs_len)?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let value = u64::from_le_bytes(bytes);
    // The two-byte form is stored minus 256.
    Some(if fcs_len == 2 { value + 256 } else { value })
}

/// LZ4 frame format: magic, FLG (bit 3 = content size present), BD, [Content Size].
fn lz4_content_size(head: &[u8]) -> Option<u64> {
    if !head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        return None;
    }
    let flg = *head.get(4)?;
    if flg & 0x08 == 0 {
        return None;
    }
    let field: [u8; 8] = head.get(6..14)?.try_into().ok()?;
    Some(u64::from_le_bytes(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_trailer_gives_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.gz");
        // A real `gzip -c` of 16 MiB of zeros ends in 00 00 00 01 (ISIZE = 16777216).
        let mut body = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        body.extend_from_slice(&[0; 20]);
        body.extend_from_slice(&(16u32 << 20).to_le_bytes());
        std::fs::write(&path, body).expect("write");
        assert_eq!(uncompressed_size(&path, Compression::Gzip), Some(16 << 20));
        std::fs::write(&path, b"not gzip at all").expect("write");
        assert_eq!(uncompressed_size(&path, Compression::Gzip), None);
    }

    #[test]
    fn zstd_frame_content_size_in_each_width() {
        // single segment, 4-byte size
        let four = [0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x00, 0x00, 0x01];
        assert_eq!(zstd_content_size(&four), Some(16 << 20));
        // window descriptor, 2-byte size (stored minus 256)
        let two = [0x28, 0xb5, 0x2f, 0xfd, 0x40, 0x58, 0x00, 0x01];
        assert_eq!(zstd_content_size(&two), Some(512));
        // no size recorded
        assert_eq!(
            zstd_content_size(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]),
            None
        );
    }

    #[test]
    fn lz4_frame_content_size_when_recorded() {
        let mut head = vec![0x04, 0x22, 0x4d, 0x18, 0x68, 0x40];
        head.extend_from_slice(&(16u64 << 20).to_le_bytes());
        assert_eq!(lz4_content_size(&head), Some(16 << 20));
        head[4] = 0x60;
        assert_eq!(lz4_content_size(&head), None);
    }
}
