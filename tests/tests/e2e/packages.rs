//! The Debian packages as an operator uses them: `scripts/package-deb` builds them from the
//! debug binaries, `dpkg -i` installs both, the collector and an agent run from /usr/bin as
//! the packaged system user and a result shows in the API, then `dpkg --purge` leaves no
//! file, directory or user behind.
//!
//! Needs root (it installs packages on this machine). In CI a non-root run fails; elsewhere
//! it is skipped with a message. Whatever happens, [`Installed`]'s Drop purges both packages.

use anyhow::{Context, Result, bail};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{eventually, free_port};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PACKAGES: [&str; 2] = ["backwatch-agent", "backwatch-collector"];

fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Purges both packages and stops what was started from them, also when the test fails.
struct Installed {
    children: Vec<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("dpkg")
            .arg("--purge")
            .args(PACKAGES)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn owner(path: &Path) -> Result<(u32, u32, u32)> {
    let m = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok((m.uid(), m.gid(), m.permissions().mode() & 0o7777))
}

#[tokio::test]
async fn packages_install_run_and_purge_cleanly() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        if std::env::var_os("CI").is_some() {
            bail!("the package test needs root (it runs dpkg -i) and CI must run it");
        }
        eprintln!("SKIPPED packages: not root (dpkg -i needs root; CI runs this test)");
        return Ok(());
    }
    let installed_before = Command::new("dpkg-query")
        .args(["-W", "backwatch-agent", "backwatch-collector"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if installed_before || user_exists("backwatch") {
        bail!(
            "a backwatch package or user already exists on this machine; the test would remove it"
        );
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let debs = tempfile::tempdir()?;
    let built = sh(Command::new(root.join("scripts/package-deb"))
        .args(["--profile", "debug", "--no-build", "--out"])
        .arg(debs.path()))?;
    let arch = sh(Command::new("dpkg").arg("--print-architecture"))?;
    let version = env!("CARGO_PKG_VERSION");
    let files: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|p| {
            debs.path()
                .join(format!("{p}_{version}_{}.deb", arch.trim()))
        })
        .collect();
    for f in &files {
        assert!(
            f.exists(),
            "{} not built; script said:\n{built}",
            f.display()
        );
    }
    let listing = sh(Command::new("dpkg-deb").arg("-c").arg(&files[0]))?;
    for path in [
        "./usr/bin/backwatch-agent",
        "./etc/backwatch/agent.toml",
        "./lib/systemd/system/backwatch-agent.service",
        "./usr/share/man/man1/backwatch-agent.1.gz",
        "./usr/share/man/man1/backwatch-agent-config-check.1.gz",
        "./usr/share/bash-completion/completions/backwatch-agent",
    ] {
        assert!(listing.contains(path), "{path} missing from:\n{listing}");
    }
    let name = sh(Command::new("dpkg-deb")
        .arg("-f")
        .arg(&files[1])
        .arg("Package"))?;
    assert_eq!(name.trim(), "backwatch-collector");

    let mut guard = Installed {
        children: Vec::new(),
    };
    sh(Command::new("dpkg").arg("-i").args(&files))?;

    // Installed as the package says: user, directories, owners, modes.
    assert!(user_exists("backwatch"));
    let user = nix::unistd::User::from_name("backwatch")?.context("user backwatch")?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    assert_eq!(user.shell, PathBuf::from("/usr/sbin/nologin"));
    assert_eq!(owner(Path::new("/etc/backwatch"))?, (0, gid, 0o750));
    assert_eq!(
        owner(Path::new("/etc/backwatch/agent.toml"))?,
        (0, gid, 0o640)
    );
    assert_eq!(
        owner(Path::new("/etc/backwatch/collector.toml"))?,
        (0, gid, 0o640)
    );
    assert_eq!(owner(Path::new("/var/lib/backwatch"))?, (uid, gid, 0o700));
    assert_eq!(
        owner(Path::new("/var/lib/backwatch-agent/spool"))?,
        (uid, gid, 0o700)
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/backwatch-agent.service")?;
    assert!(
        unit.contains(
            "\nExecStart=/usr/bin/backwatch-agent run --config /etc/backwatch/agent.toml\n"
        ),
        "{unit}"
    );
    // The installed units keep the hardening rating of deploy/systemd (units.rs).
    for (unit, tenths) in [("backwatch-agent", 20), ("backwatch-collector", 11)] {
        sh(Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={tenths}"))
            .arg(format!("/lib/systemd/system/{unit}.service")))?;
    }
    let conf = sh(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "backwatch-agent"]))?;
    assert!(conf.contains("/etc/backwatch/agent.toml"), "{conf}");
    let version_line = sh(Command::new("/usr/bin/backwatch-agent").arg("--version"))?;
    assert!(version_line.starts_with(&format!("backwatch-agent {version} (commit ")));
    let man = sh(Command::new("man").args(["-w", "backwatch-collector-status"]));
    if let Ok(m) = man {
        assert!(
            m.contains("/usr/share/man/man1/backwatch-collector-status.1.gz"),
            "{m}"
        );
    }

    // Run both from /usr/bin as user backwatch, with certificates from the packaged binary.
    let run = tempfile::tempdir()?;
    let dir = run.path();
    sh(Command::new("/usr/bin/backwatch-collector")
        .args(["certs", "--dir"])
        .arg(dir.join("pki"))
        .args(["--agent", "db1"]))?;
    let data = dir.join("backup");
    std::fs::create_dir(&data)?;
    let (grpc, http) = (free_port(), free_port());
    let pki = dir.join("pki");
    std::fs::write(
        dir.join("collector.toml"),
        format!(
            "[grpc]\nlisten = \"127.0.0.1:{grpc}\"\nca = \"{p}/ca.pem\"\ncert = \"{p}/collector.pem\"\nkey = \"{p}/collector-key.pem\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[store]\nurl = \"sqlite://{}/collector.db\"\n",
            dir.display(),
            p = pki.display()
        ),
    )?;
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "backup_dir = []\n[collector]\nurl = \"https://localhost:{grpc}\"\nca = \"{p}/ca.pem\"\n\
             cert = \"{p}/agents/db1.pem\"\nkey = \"{p}/agents/db1-key.pem\"\n[spool]\ndir = \"{}/spool\"\n\
             [schedule]\nstart_jitter = \"0s\"\n[[disk]]\nname = \"backup\"\npath = \"{}\"\ninterval = \"1h\"\n",
            dir.display(),
            data.display(),
            p = pki.display()
        ),
    )?;
    sh(Command::new("chown")
        .args(["-R", "backwatch:backwatch"])
        .arg(dir))?;
    let spawn = |bin: &str, config: &str| -> Result<Child> {
        let log = std::fs::File::create(dir.join(format!("{config}.log")))?;
        // setpriv execs the program itself (no fork as with runuser), so killing the child
        // stops the service, and it drops root's supplementary groups.
        Ok(Command::new("setpriv")
            .args([
                "--reuid=backwatch",
                "--regid=backwatch",
                "--init-groups",
                bin,
            ])
            .args(["run", "--config"])
            .arg(dir.join(format!("{config}.toml")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    };
    guard
        .children
        .push(spawn("/usr/bin/backwatch-collector", "collector")?);
    guard
        .children
        .push(spawn("/usr/bin/backwatch-agent", "agent")?);
    let client = http_client();
    let url = format!("http://127.0.0.1:{http}/api/v1/hosts/db1");
    let logs = || {
        format!(
            "collector:\n{}\nagent:\n{}",
            std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
        )
    };
    let host: serde_json::Value =
        eventually(Duration::from_secs(60), "db1 in the API", async || {
            let r = client.get(&url).send().await?;
            if !r.status().is_success() {
                bail!("{}: {}", r.status(), logs());
            }
            let v: serde_json::Value = r.json().await?;
            let has_backup = v["checks"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == "disk.backup"));
            if !has_backup {
                bail!("no disk.backup yet: {v}");
            }
            Ok(v)
        })
        .await;
    let backup = host["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "disk.backup"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(backup["status"], "ok", "{host}");
    assert!(
        host["agent_version"]
            .as_str()
            .is_some_and(|v| v.starts_with(version)),
        "{host}"
    );
    // The database file belongs to the service user, not to root.
    assert_eq!(owner(&dir.join("collector.db"))?.0, uid);

    for c in &mut guard.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    guard.children.clear();

    // Purging the agent keeps the user the collector still runs as, and the collector's
    // configuration and store.
    sh(Command::new("dpkg").args(["--purge", "backwatch-agent"]))?;
    assert!(
        user_exists("backwatch"),
        "user removed while the collector is installed"
    );
    assert!(Path::new("/etc/backwatch/collector.toml").exists());
    assert!(!Path::new("/etc/backwatch/agent.toml").exists());
    assert!(!Path::new("/var/lib/backwatch-agent").exists());
    assert!(Path::new("/var/lib/backwatch").exists());

    // Purging the last one: nothing of either package is left, the shared user included.
    sh(Command::new("dpkg").args(["--purge", "backwatch-collector"]))?;
    for gone in [
        "/usr/bin/backwatch-agent",
        "/usr/bin/backwatch-collector",
        "/etc/backwatch",
        "/lib/systemd/system/backwatch-agent.service",
        "/lib/systemd/system/backwatch-collector.service",
        "/usr/share/man/man1/backwatch-agent.1.gz",
        "/var/lib/backwatch",
        "/var/lib/backwatch-agent",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert!(!user_exists("backwatch"), "user backwatch left after purge");
    let group = Command::new("getent")
        .args(["group", "backwatch"])
        .stdout(Stdio::null())
        .status()?;
    assert!(!group.success(), "group backwatch left after purge");
    Ok(())
}
