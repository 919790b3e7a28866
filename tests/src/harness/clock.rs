//! A wall clock that runs behind (or ahead) for one process tree: `clock_shim.c`, compiled
//! once per test process with the system C compiler and loaded with `LD_PRELOAD`.
//!
//! Why not libfaketime: a server's archiver must see the shifted clock too (its
//! `last_archived_time` is what the tests age), and libfaketime's environment-driven setup
//! does not reliably reach every process PostgreSQL forks. The shim is 40 lines and has no
//! state: the offset is read from the environment at every call.

use anyhow::{Context as _, ensure};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SOURCE: &str = include_str!("clock_shim.c");
pub const OFFSET_VAR: &str = "BACKWATCH_CLOCK_OFFSET_SECS";

/// The shared object, built on first use into a directory any user may read (servers run as
/// `postgres`).
pub fn shim() -> anyhow::Result<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}")));
    match built {
        Ok(path) => Ok(path.as_path()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// `LD_PRELOAD` and offset variables for a process whose clock is `offset_secs` off.
pub fn env(offset_secs: i64) -> anyhow::Result<Vec<(String, String)>> {
    Ok(vec![
        ("LD_PRELOAD".into(), shim()?.display().to_string()),
        (OFFSET_VAR.into(), offset_secs.to_string()),
    ])
}

fn build() -> anyhow::Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("bw-clock-")
        .tempdir()
        .context("creating the clock shim's directory")?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let source = dir.join("clock_shim.c");
    std::fs::write(&source, SOURCE)?;
    let lib = dir.join("libbwclock.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .output()
        .context("running cc (the C compiler) for the clock shim")?;
    ensure!(
        out.status.success(),
        "cc failed building the clock shim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755))?;
    Ok(lib)
}
