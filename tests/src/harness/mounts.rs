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

    /// Fill the file system to the last byte with `filler`: full means a further small write
    /// fails with ENOSPC. Whatever else uses the file system (an agent deleting acknowledged
    /// spool files) may free space meanwhile, so the filler grows until that write fails,
    /// rather than asserting zero free blocks once (which raced with those deletions).
    pub fn fill(&self) -> anyhow::Result<()> {
        let filler = self.path().join("filler");
        let probe = self.path().join("fill-probe");
        eventually_sync(Duration::from_secs(10), "the tmpfs to be full", || {
            // dd stops with ENOSPC, which is the point; appending keeps what earlier rounds wrote.
            let _ = Command::new("dd")
                .args(["if=/dev/zero", "bs=4k", "oflag=append", "conv=notrunc"])
                .arg(format!("of={}", filler.display()))
                .stderr(Stdio::null())
                .status()?;
            let written = std::fs::write(&probe, [0u8; 4096]);
            // A failed write may leave an empty file; it takes no block, but leave nothing.
            let _ = std::fs::remove_file(&probe);
            match written {
                Ok(()) => bail!("a 4 KiB write still succeeds (space was freed meanwhile)"),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => Ok(()),
                Err(e) => {
                    Err(anyhow::Error::new(e).context(format!("writing {}", probe.display())))
                }
            }
        });
        Ok(())
    }

    /// Give the space back.
    pub fn free(&self) -> anyhow::Result<()> {
        std::fs::remove_file(self.path().join("filler"))?;
        Ok(())
    }

    /// Mount it read-only (`true`), as the kernel does after I/O errors, or writable again.
    pub fn read_only(&self, on: bool) -> anyhow::Result<()> {
        let opts = if on { "remount,ro" } else { "remount,rw" };
        let out = Command::new("mount")
            .args(["-o", opts])
            .arg(self.path())
            .output()?;
        if !out.status.success() {
            bail!("mount -o {opts}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Unmount it: its mount point is a plain directory on the parent's filesystem again.
    pub fn unmount(&self) -> anyhow::Result<()> {
        let out = Command::new("umount").arg(self.path()).output()?;
        if !out.status.success() {
            bail!("umount: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazy_umount(self.path());
    }
}
