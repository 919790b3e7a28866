//! Build script shared by `backwatch-agent` and `backwatch-collector`: records the git commit
//! the binary is built from, for `--version` and `backwatch_build_info`.
//!
//! Sets `BACKWATCH_GIT_COMMIT` to `git rev-parse --short HEAD`, with `-dirty` when tracked
//! files differ from it, or `unknown` outside a git checkout (a source tarball, no git).
//! It re-runs only when HEAD moves (`.git/HEAD`, the branch's ref, `packed-refs`), not on
//! every build: the dirty flag is therefore as of the last commit or checkout, which is
//! what matters for a released binary (built from a clean tree).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_string())
}

fn main() {
    // Paths git reports are relative to the current directory (the crate's).
    // Only files that exist: cargo re-runs a script on every build while a watched path is
    // missing (packed-refs often is).
    let watch = |p: String| {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    for what in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", what]) {
            watch(p);
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &head_ref])
    {
        watch(p);
    }
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=BACKWATCH_GIT_COMMIT={commit}");
}
