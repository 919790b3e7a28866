//! Nagios / Icinga plugin mode as a monitoring server runs it: `backwatch-agent check --format
//! nagios` on the host and `backwatch-collector status` against the collector's store, each
//! printing one status line with performance data and exiting 0/1/2/3.

use anyhow::Result;
use backwatch_tests::harness::{Agent, Certs, Collector, bin};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> Result<(i32, String)> {
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out.status.code().unwrap_or(-1), stdout))
}

fn agent_check(cfg: &Path) -> Result<(i32, String)> {
    run(Command::new(bin("backwatch-agent"))
        .args(["check", "--format", "nagios", "--config"])
        .arg(cfg))
}

fn status(collector: &Collector, args: &[&str]) -> Result<(i32, String)> {
    run(Command::new(bin("backwatch-collector"))
        .arg("status")
        .arg("--config")
        .arg(collector.config_path())
        .args(args))
}

fn touch(path: &Path, when: &str) {
    let ok = Command::new("touch")
        .args(["-d", when])
        .arg(path)
        .status()
        .expect("touch");
    assert!(ok.success());
}

/// The part after `|`, split into labels: what a graphing add-on would store.
fn perf_labels(line: &str) -> Vec<String> {
    line.split_once(" | ")
        .map(|(_, p)| p)
        .unwrap_or("")
        .split(' ')
        .filter_map(|d| d.split_once('=').map(|(l, _)| l.to_string()))
        .collect()
}

/// The datum of `label` (`42%;75;85;0;100`).
fn perf<'a>(line: &'a str, label: &str) -> &'a str {
    let key = format!("'{label}'=");
    line.split(' ')
        .find_map(|d| d.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {label} in {line}"))
}

#[test]
fn agent_check_prints_one_plugin_line_and_exits_with_the_worst_status() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let daily = dir.path().join("daily");
    std::fs::create_dir(&daily)?;
    std::fs::write(daily.join("base.tar"), b"backup")?;
    touch(&daily.join("base.tar"), "1 hour ago");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[backup_dir]]\nname = \"daily\"\npath = \"{}\"\n[[disk]]\nname = \"backup\"\npath = \"{}\"\n",
            daily.display(),
            dir.path().display()
        ),
    )?;

    let (code, out) = agent_check(&cfg)?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("BACKWATCH OK - 2 checks ok | "), "{out}");
    let age = perf(&out, "backup.daily_age");
    let secs: i64 = age.split('s').next().unwrap_or("").parse()?;
    assert!((3600..3700).contains(&secs), "{age}");
    assert_eq!(
        age.split_once('s').map(|x| x.1),
        Some(";;86400;0;"),
        "{age}"
    );
    assert_eq!(perf(&out, "backup.daily_size"), "6B;;;0;");
    let used = perf(&out, "disk.backup_used");
    assert!(
        used.ends_with("%;75;85;0;100") && used.trim_end().len() > "%;75;85;0;100".len(),
        "{used}"
    );

    // Beside it, a file dated an hour into the future: a clock problem, warning.
    std::fs::write(daily.join("next.tar"), b"backup")?;
    touch(&daily.join("next.tar"), "1 hour");
    let (code, out) = agent_check(&cfg)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("BACKWATCH WARNING - backup.daily WARNING: "),
        "{out}"
    );
    assert!(out.contains("; 1 of 2 checks ok | "), "{out}");

    // Two days old: critical, named with its age and limit.
    std::fs::remove_file(daily.join("next.tar"))?;
    touch(&daily.join("base.tar"), "2 days ago");
    let (code, out) = agent_check(&cfg)?;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(
            "BACKWATCH CRITICAL - backup.daily CRITICAL: newest backup base.tar is 48 h old (limit 24 h)"
        ),
        "{out}"
    );

    // A database that cannot be reached: unknown, but critical still wins.
    let mut text = std::fs::read_to_string(&cfg)?;
    text.push_str(&format!(
        "[[wal]]\nname = \"main\"\ndsn = \"host={} port=1 user=nobody\"\nconnect_timeout = \"2s\"\n",
        dir.path().display()
    ));
    std::fs::write(&cfg, &text)?;
    let (code, out) = agent_check(&cfg)?;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("wal.main UNKNOWN: "), "{out}");
    touch(&daily.join("base.tar"), "1 hour ago");
    let (code, out) = agent_check(&cfg)?;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("BACKWATCH UNKNOWN - wal.main UNKNOWN: "),
        "{out}"
    );
    assert!(out.contains("; 2 of 3 checks ok | "), "{out}");
    Ok(())
}

/// Whatever goes wrong in plugin mode is one UNKNOWN line on standard output and exit 3: a
/// configuration the agent cannot load (it exits 64 otherwise), a mistaken command line
/// (clap's exit 2 would read as CRITICAL).
#[test]
fn plugin_mode_failures_are_unknown_with_a_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("agent.toml");
    std::fs::write(
        &bad,
        "[[disk]]
name = \"x\"\nbogus = 1\n",
    )?;
    let (code, out) = agent_check(&bad)?;
    assert_eq!(code, 3, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("BACKWATCH UNKNOWN - "), "{out}");
    assert!(out.contains("bogus"), "names the key: {out}");

    let (code, out) = run(Command::new(bin("backwatch-agent")).args([
        "check",
        "--format",
        "nagios",
        "--no-such-flag",
    ]))?;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("BACKWATCH UNKNOWN - command line: "),
        "{out}"
    );
    let (code, out) = run(Command::new(bin("backwatch-collector")).arg("status"))?;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("BACKWATCH UNKNOWN - command line: "),
        "{out}"
    );
    // Outside plugin mode clap's own exit stays.
    let (code, _) = run(Command::new(bin("backwatch-agent")).args(["check", "--no-such-flag"]))?;
    assert_eq!(code, 2);
    Ok(())
}

#[tokio::test]
async fn collector_status_reads_the_store_like_a_plugin() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let mut collector = Collector::sqlite(&certs)
        // Silence decided from the store's last contact alone: the sweeper never runs here.
        .toml("[silence]\nhost_after = \"4s\"\nsweep_every = \"1h\"")
        .start()
        .await?;
    let data = tempfile::tempdir()?;
    let daily = data.path().join("daily");
    std::fs::create_dir(&daily)?;
    std::fs::write(daily.join("base.tar"), b"backup")?;
    touch(&daily.join("base.tar"), "1 hour ago");
    let mut agent = Agent::for_host("db1", &certs, &collector)
        .backup_dir("daily", &daily, "24h", "1s")
        .disk("backup", data.path(), "1s")
        .start()?;
    collector
        .wait_status("db1", "backup.daily", "ok", Duration::from_secs(30))
        .await;
    collector
        .wait_status("db1", "disk.backup", "ok", Duration::from_secs(30))
        .await;

    let (code, out) = status(&collector, &["--host", "db1"])?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // The two probes and the agent's own spool (docs/checks.md R12), sent at its start.
    assert!(out.starts_with("BACKWATCH OK - 3 checks ok | "), "{out}");
    assert!(perf(&out, "disk.backup_used").ends_with("%;75;85;0;100"));
    // The same performance data as the agent's own plugin line for the same probes.
    let mut agent_labels = {
        let (_, line) = run(Command::new(bin("backwatch-agent"))
            .args(["check", "--format", "nagios", "--config"])
            .arg(agent.config_path()))?;
        perf_labels(&line)
    };
    // A one-shot `check` has no spool: compare the probes both ran.
    let mut collector_labels: Vec<_> = perf_labels(&out)
        .into_iter()
        .filter(|l| !l.starts_with("'disk.agent-spool"))
        .collect();
    agent_labels.sort();
    collector_labels.sort();
    assert_eq!(agent_labels, collector_labels);

    let (code, out) = status(&collector, &["--host", "db1", "--check", "backup.daily"])?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("BACKWATCH OK - 1 check ok | 'backup.daily_age'="),
        "{out}"
    );
    assert!(!out.contains("disk.backup"), "{out}");

    let (code, out) = status(&collector, &["--host", "db9"])?;
    assert_eq!(
        (code, out.trim()),
        (3, "BACKWATCH UNKNOWN - no host \"db9\" has reported")
    );
    let (code, out) = status(&collector, &["--host", "db1", "--check", "backup.hourly"])?;
    assert_eq!(
        (code, out.trim()),
        (
            3,
            "BACKWATCH UNKNOWN - host \"db1\" has no check \"backup.hourly\""
        )
    );

    touch(&daily.join("base.tar"), "2 days ago");
    collector
        .wait_status("db1", "backup.daily", "critical", Duration::from_secs(30))
        .await;
    let (code, out) = status(&collector, &["--host", "db1"])?;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(
            "BACKWATCH CRITICAL - backup.daily CRITICAL: newest backup base.tar is 48 h old (limit 24 h) in "
        ) && out.contains("; 2 of 3 checks ok | 'backup.daily_age'=172800s;;86400;0; "),
        "{out}"
    );

    // The agent stops and the collector is down too: the store still says "critical", but
    // the last contact is older than silence.host_after, so the plugin says unknown.
    agent.kill();
    collector.stop()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (code, out) = status(&collector, &["--host", "db1"])?;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("BACKWATCH UNKNOWN - db1: agent silent since "),
        "{out}"
    );
    assert!(
        out.contains("backup.daily UNKNOWN: was critical: newest backup base.tar"),
        "{out}"
    );
    Ok(())
}
