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
    exposure_with(name, None, threshold_tenths)
}

/// As [`exposure`], with `drop_in` (a file of deploy/systemd) installed as the unit's drop-in
/// under a private root, the way an operator installs it.
fn exposure_with(name: &str, drop_in: Option<&str>, threshold_tenths: u32) -> Result<(f64, bool)> {
    let mut cmd = Command::new("systemd-analyze");
    cmd.args([
        "security",
        "--offline=true",
        "--no-pager",
        &format!("--threshold={threshold_tenths}"),
    ]);
    let root = tempfile::tempdir()?;
    if let Some(d) = drop_in {
        let units = root.path().join("etc/systemd/system");
        std::fs::create_dir_all(units.join(format!("{name}.d")))?;
        std::fs::copy(unit(name), units.join(name))?;
        std::fs::copy(unit(d), units.join(format!("{name}.d/{d}")))?;
        cmd.arg(format!("--root={}", root.path().display()))
            .arg(name);
    } else {
        cmd.arg(unit(name));
    }
    let out = cmd
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

/// The drop-in for hosts that run restore drills opens a scratch directory and memory, not
/// privileges: the agent stays rated as without it.
#[test]
fn the_drill_host_drop_in_keeps_the_agent_rated_ok() -> Result<()> {
    let (value, within) = exposure_with("backwatch-agent.service", Some("drill-host.conf"), 20)?;
    assert!(
        within && value == 1.2,
        "agent with the drill drop-in: {value}"
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
