//! Misbehaving file systems, for real: a FUSE mount that never answers (a dead NFS server)
//! and a tiny tmpfs (a full disk). Both need root, as the end-to-end tests run.
//!
//! Invariant: dropping the handle always unmounts (lazily, so nothing still blocked on the
//! mount can stop it), also when the test failed half-way.

use super::wait::eventually_sync;
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const HUNG_MOUNT_PY: &str = include_str!("hung_mount.py");

/// `umount -l path`, ignoring errors (already unmounted).
fn lazy_umount(path: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stderr(Stdio::null())
        .status();
}

/// A FUSE mount whose server answers nothing: `statvfs` and `readdir` on it block forever.
pub struct HungMount {
    dir: TempDir,
    server: Child,
}

impl HungMount {
    pub fn start() -> anyhow::Result<HungMount> {
        let dir = tempfile::tempdir()?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt)?;
        let mut server = Command::new("python3")
            .arg("-c")
            .arg(HUNG_MOUNT_PY)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting python3 for the FUSE server")?;
        let mut line = String::new();
        if let Some(out) = server.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim() != "mounted" {
            let _ = server.kill();
            let out = server.wait_with_output()?;
            bail!(
                "the FUSE server did not mount {}: {}",
                mnt.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(HungMount { dir, server })
    }

    /// The mount point: anything that looks at it hangs.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        // Closing /dev/fuse aborts the connection: whatever is blocked fails with ENOTCONN.
        let _ = self.server.kill();
        let _ = self.server.wait();
        lazy_umount(&self.path());
    }
}

/// A tmpfs of a few hundred KiB: a disk that fills up on demand.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> anyhow::Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()?;
        if !out.status.success() {
            bail!("mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill the file system to the last byte with `filler`.
    pub fn fill(&self) -> anyhow::Result<()> {
        let filler = self.path().join("filler");
        // dd stops with ENOSPC, which is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", filler.display()))
            .stderr(Stdio::null())
            .status()?;
        eventually_sync(Duration::from_secs(5), "the tmpfs to be full", || {
            let vfs = nix::sys::statvfs::statvfs(self.path())?;
            if vfs.blocks_available() > 0 {
                bail!("{} blocks still free", vfs.blocks_available());
            }
            Ok(())
        });
        Ok(())
    }

    /// Give the space back.
    pub fn free(&self) -> anyhow::Result<()> {
        std::fs::remove_file(self.path().join("filler"))?;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazy_umount(self.path());
    }
}
