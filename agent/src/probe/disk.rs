//! Disk probe: capacity and inodes of the filesystem holding a path, as `df` sees them (A11).
//!
//! Invariants:
//! - Raw kernel numbers only (`statvfs`), in bytes and inodes; the collector computes used% the
//!   way GNU df does from `total`, `free` and `avail`, so the kernel's `total >= free >= avail`
//!   (root-reserved blocks are free but not available) reaches it unchanged.
//! - Never fails: a path that cannot be measured gives `error` naming the call and the path,
//!   with every number left at zero, so no partial measurement is mistaken for a real one.
//! - `device_id` is the path's `st_dev`, which lets the collector treat paths on one filesystem
//!   as one measurement. Mount point and filesystem type are best effort, from
//!   /proc/self/mountinfo; `None` when it cannot be read or parsed.
//! - `read_only` is statvfs's `ST_RDONLY`, and `expected_mount_point` the configured
//!   `mount_point` passed through: the rule judges both (a probe measures, never decides).

use super::{Outcome, Probe};
use backwatch_proto::model::{DiskObs, Observation, ProbeKind};
use nix::errno::Errno;
use nix::sys::statvfs::{FsFlags, statvfs};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Clone, PartialEq)]
pub struct DiskProbe {
    pub name: String,
    pub path: PathBuf,
    /// Where the path's filesystem must be mounted (`mount_point`), when configured.
    pub mount_point: Option<PathBuf>,
    /// `allow_read_only`.
    pub allow_read_only: bool,
}

#[async_trait::async_trait]
impl Probe for DiskProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Disk
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let path = self.path.clone();
        let expected = self.mount_point.clone();
        let read_only_allowed = self.allow_read_only;
        // statvfs on a hung NFS mount blocks in the kernel: on a thread we can walk away from.
        let what = format!("measuring {}", self.path.display());
        crate::blocking::run(&what, move || {
            let mut obs = measure(&path);
            obs.read_only_allowed = read_only_allowed;
            if let Some(m) = expected {
                // Compared with mountinfo's mount point, which is canonical: a configured
                // `/backup` that is a link to `/mnt/backup` is mounted when the latter is.
                let canonical = fs::canonicalize(&m).unwrap_or(m);
                // A path under a volume that is not mounted does not exist (statvfs failed):
                // where the expected mount point lies instead says why.
                if obs.error.is_some() && obs.mount_point.is_none() {
                    obs.mount_point =
                        mount_of(&canonical).map(|found| found.mount_point.display().to_string());
                }
                obs.expected_mount_point = Some(canonical.display().to_string());
            }
            obs
        })
        .await
        .map(Observation::Disk)
    }
}

/// Measures the filesystem holding `path`.
pub fn measure(path: &Path) -> DiskObs {
    let shown = path.display().to_string();
    let failed = |call: &str, text: &str| DiskObs {
        path: shown.clone(),
        error: Some(format!("{call} {shown}: {text}")),
        ..DiskObs::default()
    };
    let vfs = match statvfs(path) {
        Ok(vfs) => vfs,
        Err(e) => return failed("statvfs", e.desc()),
    };
    let device_id = match fs::metadata(path) {
        Ok(meta) => meta.dev(),
        // Only a race (removed right after statvfs) gets here.
        Err(e) => return failed("stat", &os_text(&e)),
    };
    // Counts are in units of the fragment size; GNU df falls back to the block size when a
    // filesystem reports 0 there, and so do we, to keep agreeing with it.
    let unit = match vfs.fragment_size() {
        0 => vfs.block_size(),
        f => f,
    } as u64;
    let bytes = |count: u64| count.saturating_mul(unit);
    let mount = fs::canonicalize(path)
        .ok()
        .and_then(|canonical| mount_of(&canonical));
    let (mount_point, fs_type) = match mount {
        Some(m) => (Some(m.mount_point.display().to_string()), Some(m.fs_type)),
        None => (None, None),
    };
    DiskObs {
        path: shown,
        error: None,
        total_bytes: bytes(vfs.blocks() as u64),
        free_bytes: bytes(vfs.blocks_free() as u64),
        avail_bytes: bytes(vfs.blocks_available() as u64),
        inodes_total: vfs.files() as u64,
        inodes_free: vfs.files_free() as u64,
        inodes_avail: vfs.files_available() as u64,
        device_id,
        mount_point,
        fs_type,
        read_only: vfs.flags().contains(FsFlags::ST_RDONLY),
        expected_mount_point: None,
        read_only_allowed: false,
    }
}

/// The OS's text for an error ("Permission denied"), without Rust's "(os error 13)" suffix.
fn os_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

// === /proc/self/mountinfo ===

#[derive(Debug, Clone, PartialEq)]
struct Mount {
    mount_point: PathBuf,
    fs_type: String,
}

/// The mount holding canonical path `path`, per this process's mount table.
fn mount_of(path: &Path) -> Option<Mount> {
    find_mount(&fs::read_to_string(MOUNTINFO).ok()?, path)
}

/// The mount whose mount point is the longest prefix (by path components) of `path`, which
/// must be canonical. Among equal mount points the last line wins: it is mounted over the others.
fn find_mount(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for mount in mountinfo.lines().filter_map(parse_mountinfo_line) {
        let longer = best
            .as_ref()
            .is_none_or(|b| mount.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if path.starts_with(&mount.mount_point) && longer {
            best = Some(mount);
        }
    }
    best
}

/// One line of proc(5) mountinfo:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// the mount point is the fifth field; after a variable number of optional fields, a lone `-`
/// separates the filesystem type.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let mount_point = fields.get(4)?;
    let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let fs_type = fields.get(separator + 1)?;
    Some(Mount {
        mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
        fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as octal `\040`, `\011`,
/// `\012`, `\134`; anything else after a backslash is kept as it is.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tempdir_numbers_are_consistent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let probe = DiskProbe {
            name: "backup".into(),
            path: tmp.path().to_path_buf(),
            mount_point: Some("/".into()),
            allow_read_only: false,
        };
        let Ok(Observation::Disk(obs)) = probe.observe().await else {
            panic!("expected an observation");
        };
        assert_eq!(obs.error, None);
        assert_eq!(obs.path, tmp.path().display().to_string());
        assert_eq!(obs.expected_mount_point.as_deref(), Some("/"));
        assert!(!obs.read_only, "{obs:?}");
        assert!(obs.total_bytes > 0);
        assert!(obs.total_bytes >= obs.free_bytes, "{obs:?}");
        assert!(obs.free_bytes >= obs.avail_bytes, "{obs:?}");
        assert!(obs.inodes_total >= obs.inodes_free, "{obs:?}");
        assert!(obs.inodes_free >= obs.inodes_avail, "{obs:?}");
        let meta = fs::metadata(tmp.path()).expect("stat");
        assert_eq!(obs.device_id, meta.dev());
        let mount_point = obs.mount_point.expect("mount point");
        let canonical = fs::canonicalize(tmp.path()).expect("canonicalize");
        assert!(canonical.starts_with(&mount_point), "{mount_point}");
        assert!(obs.fs_type.is_some_and(|t| !t.is_empty()));
    }

    #[test]
    fn missing_path_gives_error_with_the_path() {
        let obs = measure(Path::new("/nonexistent/backwatch"));
        assert_eq!(
            obs,
            DiskObs {
                path: "/nonexistent/backwatch".into(),
                error: Some("statvfs /nonexistent/backwatch: No such file or directory".into()),
                ..DiskObs::default()
            }
        );
    }

    #[test]
    fn mountinfo_line_with_escaped_space() {
        let line = concat!(
            r"36 35 98:0 /mnt1 /mnt/nightly\040backups rw,noatime master:1",
            " - ext4 /dev/sda1 rw,errors=continue"
        );
        assert_eq!(
            parse_mountinfo_line(line),
            Some(Mount {
                mount_point: PathBuf::from("/mnt/nightly backups"),
                fs_type: "ext4".into(),
            })
        );
    }

    #[test]
    fn mountinfo_line_without_optional_fields() {
        let line = "22 1 0:21 / /proc rw,nosuid - proc proc rw";
        let mount = parse_mountinfo_line(line).expect("parsed");
        assert_eq!(mount.mount_point, PathBuf::from("/proc"));
        assert_eq!(mount.fs_type, "proc");
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        assert_eq!(parse_mountinfo_line(""), None);
        assert_eq!(parse_mountinfo_line("22 1 0:21 / /proc rw"), None);
        assert_eq!(parse_mountinfo_line("22 1 0:21 / /proc rw -"), None);
    }

    #[test]
    fn unescape_octal_and_leaves_the_rest() {
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(r"a\0b\x\999"), br"a\0b\x\999");
        assert_eq!(unescape(r"trailing\04"), br"trailing\04");
    }

    #[test]
    fn longest_mount_point_prefix_wins() {
        let info = "\
1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 8:2 / /backup rw shared:3 - xfs /dev/sdb1 rw
3 1 8:3 / /backup2 rw - btrfs /dev/sdc1 rw
4 2 0:50 / /backup rw - nfs4 nas:/export rw
";
        let at = |p: &str| find_mount(info, Path::new(p)).map(|m| m.fs_type);
        assert_eq!(at("/backup/daily").as_deref(), Some("nfs4")); // mounted over xfs
        assert_eq!(at("/backup2/x").as_deref(), Some("btrfs"));
        assert_eq!(at("/backupx").as_deref(), Some("ext4")); // not a component prefix
        assert_eq!(at("/").as_deref(), Some("ext4"));
        assert_eq!(find_mount("", Path::new("/x")), None);
    }
}
