//! The command lines as an operator uses them: `check` output and exit codes, configuration
//! mistakes named with file, line and key, exit code 64.

use anyhow::Result;
use backwatch_tests::harness::bin;
use std::process::Command;

fn agent(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin("backwatch-agent")).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn write_config(dir: &std::path::Path, text: &str) -> Result<String> {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

#[test]
fn check_prints_each_probe_and_exits_with_the_worst_status() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let daily = dir.path().join("daily");
    std::fs::create_dir(&daily)?;
    std::fs::write(daily.join("base.tar"), b"x")?;
    let cfg = write_config(
        dir.path(),
        &format!(
            "disk = []\n[[backup_dir]]\nname = \"daily\"\npath = \"{}\"\n",
            daily.display()
        ),
    )?;
    let (code, out, _) = agent(&["check", "--config", &cfg])?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("OK       backup.daily     newest backup base.tar is"),
        "{out}"
    );

    let touched = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(daily.join("base.tar"))
        .status()?;
    assert!(touched.success());
    let (code, out, _) = agent(&["check", "--config", &cfg])?;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(
            "CRITICAL backup.daily     newest backup base.tar is 48 h old (limit 24 h)"
        ),
        "{out}"
    );

    let (code, out, _) = agent(&["check", "--config", &cfg, "--format", "json"])?;
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v[0]["check"], "backup.daily");
    assert_eq!(v[0]["status"], "critical");
    Ok(())
}

#[test]
fn unreachable_database_in_check_is_unknown_not_a_hang() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = backwatch_tests::harness::free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "backup_dir = []\ndisk = []\n[[wal]]\nname = \"main\"\ndsn = \"host=127.0.0.1 port={port} user=backwatch password=hunter2 dbname=postgres\"\nconnect_timeout = \"2s\"\n"
        ),
    )?;
    let started = std::time::Instant::now();
    let (code, out, err) = agent(&["check", "--config", &cfg])?;
    assert!(
        started.elapsed().as_secs() < 10,
        "check took {:?}",
        started.elapsed()
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("UNKNOWN  wal.main         probe could not observe: cannot connect: "),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "password leaked:\n{out}\n{err}"
    );
    Ok(())
}

#[test]
fn config_mistakes_name_file_line_and_key_and_exit_64() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = write_config(
        dir.path(),
        "[[disk]]\nname = \"backup\"\npath = \"/backup\"\ninterval = \"fifteen\"\n",
    )?;
    let (code, _, err) = agent(&["check", "--config", &cfg])?;
    assert_eq!(code, 64);
    assert_eq!(
        err.trim(),
        format!(
            "{cfg}:4:12 disk[0].interval: \"fifteen\" is not a duration (examples: \"15m\", \"900s\", \"7d\")"
        )
    );

    let cfg = write_config(dir.path(), "[spool]\ndirectory = \"/tmp\"\n")?;
    let (code, _, err) = agent(&["print-config", "--config", &cfg])?;
    assert_eq!(code, 64);
    assert!(
        err.starts_with(&format!(
            "{cfg}:2:1 spool.directory: unknown field `directory`, expected one of `dir`"
        )),
        "{err}"
    );

    let ccfg = dir.path().join("collector.toml");
    std::fs::write(
        &ccfg,
        "[grpc]\nca = \"/nonexistent/ca.pem\"\n[store]\nurl = \"mysql://x\"\n",
    )?;
    let out = Command::new(bin("backwatch-collector"))
        .args(["check-config", "--config"])
        .arg(&ccfg)
        .output()?;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("grpc.ca: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
    assert!(err.contains("grpc.cert: is required"), "{err}");
    assert!(err.contains("store.url: must start with sqlite:"), "{err}");
    Ok(())
}

#[test]
fn print_config_shows_the_procedure_defaults() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = write_config(dir.path(), "")?;
    let (code, out, _) = agent(&["print-config", "--config", &cfg])?;
    assert_eq!(code, 0);
    for expected in [
        "[[backup_dir]]  # check backup.daily\nname = \"daily\"\npath = \"/backup/daily\"\nmax_age = \"1day\"",
        "[[backup_dir]]  # check backup.weekly",
        "interval = \"6h\"",
        "[[disk]]  # check disk.backup\nname = \"backup\"\npath = \"/backup\"\ninterval = \"1h\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    Ok(())
}
