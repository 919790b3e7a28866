//! The hardening of the systemd units in deploy/systemd, rated the way an auditor would:
//! `systemd-analyze security --offline=true` (no running systemd needed). The agent runs on
//! every database host and must be rated OK (exposure ≤ 2.0); the collector must stay at the
//! figure measured when its unit was written (README, "Hardening figures").

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

fn unit(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(name)
}

/// The overall exposure systemd-analyze prints, and whether `--threshold` (exposure × 10)
/// accepted it.
fn exposure(name: &str, threshold_tenths: u32) -> Result<(f64, bool)> {
    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            "--no-pager",
            &format!("--threshold={threshold_tenths}"),
        ])
        .arg(unit(name))
        .output()
        .context("running systemd-analyze (Debian package systemd; ./scripts/test installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .with_context(|| format!("no overall exposure in:\n{text}"))?;
    let figure = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .with_context(|| format!("unreadable: {line}"))?;
    let value: f64 = figure.parse()?;
    if text.contains("Failed to") || text.contains("Unknown key") {
        bail!("systemd-analyze complained about {name}:\n{text}");
    }
    Ok((value, out.status.success()))
}

#[test]
fn agent_unit_is_rated_ok() -> Result<()> {
    let (value, within) = exposure("backwatch-agent.service", 20)?;
    assert!(
        within && value <= 2.0,
        "agent exposure {value}, must be ≤ 2.0"
    );
    // The figure in the README and in the unit's header.
    assert_eq!(
        value, 1.2,
        "update README.md and the unit header when this changes"
    );
    Ok(())
}

#[test]
fn collector_unit_stays_at_its_measured_exposure() -> Result<()> {
    let (value, within) = exposure("backwatch-collector.service", 11)?;
    assert!(
        within && value <= 1.1,
        "collector exposure {value}, measured 1.1"
    );
    assert_eq!(
        value, 1.1,
        "update README.md and the unit header when this changes"
    );
    Ok(())
}

/// The check itself can fail: a unit with no hardening is rated far above the threshold.
#[test]
fn an_unhardened_unit_fails_the_threshold() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plain.service");
    std::fs::write(
        &path,
        "[Unit]\nDescription=plain\n[Service]\nExecStart=/usr/bin/true\n",
    )?;
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", "--threshold=20"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UNSAFE"), "{text}");
    Ok(())
}
