//! The sample configurations in `deploy/` stay valid: both binaries accept them (with the
//! certificate paths pointed at real files) and exit 0.

use anyhow::Result;
use backwatch_tests::harness::{Certs, bin};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sample(name: &str) -> Result<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    Ok(std::fs::read_to_string(root)?)
}

fn with_certs(text: &str, certs: &Certs, agent_cert: &Path, agent_key: &Path) -> String {
    let d = certs.dir();
    text.replace(
        "/etc/backwatch/ca.pem",
        &d.join("ca.pem").display().to_string(),
    )
    .replace(
        "/etc/backwatch/collector.pem",
        &d.join("collector.pem").display().to_string(),
    )
    .replace(
        "/etc/backwatch/collector-key.pem",
        &d.join("collector-key.pem").display().to_string(),
    )
    .replace(
        "/etc/backwatch/agent.pem",
        &agent_cert.display().to_string(),
    )
    .replace(
        "/etc/backwatch/agent-key.pem",
        &agent_key.display().to_string(),
    )
}

fn run(binary: &str, args: &[&str], config: &PathBuf) -> Result<(i32, String)> {
    let out = Command::new(bin(binary))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn sample_configurations_are_accepted() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (certs.agent_cert("db1"), certs.agent_key("db1"));

    let collector = dir.path().join("collector.toml");
    std::fs::write(
        &collector,
        with_certs(&sample("collector.toml")?, &certs, &cert, &key),
    )?;
    let (code, out) = run("backwatch-collector", &["check-config"], &collector)?;
    assert_eq!(code, 0, "{out}");

    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        with_certs(&sample("agent.toml")?, &certs, &cert, &key),
    )?;
    let (code, out) = run("backwatch-agent", &["print-config"], &agent)?;
    assert_eq!(code, 0, "{out}");
    for check in [
        "backup.daily",
        "backup.weekly",
        "disk.backup",
        "disk.archive",
        "wal.main",
        "settings.main",
    ] {
        assert!(
            out.contains(&format!("# check {check}")),
            "{check} missing:\n{out}"
        );
    }
    Ok(())
}

/// The commented `[[archive_dir]]` example (it has no default, the path differs per host) is a
/// valid configuration once uncommented.
#[test]
fn commented_archive_dir_example_is_valid() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (certs.agent_cert("db1"), certs.agent_key("db1"));
    let text = sample("agent.toml")?;
    let (before, example) = text
        .split_once("# [[archive_dir]]")
        .expect("an [[archive_dir]] example in deploy/agent.toml");
    let uncommented: Vec<&str> = example
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect();
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        with_certs(
            &format!("{before}[[archive_dir]]{}\n", uncommented.join("\n")),
            &certs,
            &cert,
            &key,
        ),
    )?;
    let (code, out) = run("backwatch-agent", &["print-config"], &agent)?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("# check archive.main"), "{out}");
    assert!(out.contains("wal = \"main\""), "{out}");
    Ok(())
}
