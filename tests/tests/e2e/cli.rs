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
        "# check backup.daily\n[[backup_dir]]\nname = \"daily\"\ninterval = \"6h\"\npath = \"/backup/daily\"\nmax_age = \"1day\"",
        "# check backup.weekly\n[[backup_dir]]",
        "# check disk.backup\n# mount_point not set: whichever filesystem holds the path is measured\n[[disk]]\nname = \"backup\"\ninterval = \"1h\"\npath = \"/backup\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    Ok(())
}

fn collector(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin("backwatch-collector"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `config check` prints TOML that loads back to the same effective configuration; the old
/// `print-config` still works but is no longer offered in `--help`.
#[test]
fn agent_config_check_prints_toml_that_loads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let daily = dir.path().join("daily");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[backup_dir]]\nname = \"daily\"\npath = \"{}\"\n[[backup_dir]]\nname = \"nightly\"\npath = \"/b\"\n\
             [[wal]]\nname = \"main\"\ndsn = \"host=/tmp user=backwatch password=s3cret dbname=postgres\"\n\
             [[archive_dir]]\nname = \"main\"\npath = \"/archive\"\nexpected_mode = \"\"\nwal = \"main\"\n\
             [[settings]]\nname = \"main\"\nwal = \"main\"\n\
             [[restore]]\nname = \"base\"\nbackup_dir = \"/backup/base\"\n\
             [[pgbackrest]]\nname = \"repo\"\nstanza = \"main\"\nmax_age = \"12h\"\n\
             [[barman]]\nname = \"bk\"\nserver = \"pg\"\n\
             [[drill]]\nname = \"weekly\"\nscratch_dir = \"/scratch\"\namcheck = [\"public.orders\"]\n\
             [drill.pgbackrest]\nstanza = \"main\"\n\
             [[drill.check]]\nsql = \"select count(*) > 0 from orders\"\nexpect = \"t\"\n",
            daily.display()
        ),
    )?;
    let (code, first, err) = agent(&["config", "check", "--config", &cfg])?;
    assert_eq!(code, 0, "{err}");
    // Every kind's section, and never the password.
    for section in [
        "\n[[backup_dir]]\n",
        "\n[[disk]]\n",
        "\n[[wal]]\n",
        "\n[[archive_dir]]\n",
        "\n[[restore]]\n",
        "\n[[pgbackrest]]\n",
        "\n[[barman]]\n",
        "\n[[drill]]\n",
        "\n[[drill.check]]\n",
        "\n[[settings]]\n",
    ] {
        assert!(first.contains(section), "no {section:?} in:\n{first}");
    }
    assert!(!first.contains("s3cret"), "{first}");
    let parsed: toml::Table =
        toml::from_str(&first).map_err(|e| anyhow::anyhow!("{e}\n{first}"))?;
    assert_eq!(parsed["spool"]["max_results"].as_integer(), Some(10000));
    assert_eq!(parsed["disk"][0]["path"].as_str(), Some("/backup"));
    assert_eq!(parsed["pgbackrest"][0]["max_age"].as_str(), Some("12h"));
    assert_eq!(
        parsed["drill"][0]["pgbackrest"]["stanza"].as_str(),
        Some("main")
    );
    assert!(first.contains("# max_age not set"), "{first}");

    let again = dir.path().join("effective.toml");
    std::fs::write(&again, &first)?;
    let (code, second, err) =
        agent(&["config", "check", "--config", &again.display().to_string()])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(first, second);

    let (code, old, _) = agent(&["print-config", "--config", &cfg])?;
    assert_eq!((code, old), (0, first));
    let (_, help, _) = agent(&["--help"])?;
    assert!(help.contains("\n  config "), "{help}");
    assert!(!help.contains("print-config"), "{help}");

    let bad = write_config(dir.path(), "[spool]\nmax_results = \"many\"\n")?;
    let (code, _, err) = agent(&["config", "check", "--config", &bad])?;
    assert_eq!(code, 64);
    assert!(err.contains("spool.max_results"), "{err}");
    Ok(())
}

#[test]
fn collector_config_check_prints_the_effective_configuration_as_toml() -> Result<()> {
    let certs = backwatch_tests::harness::Certs::fleet(&[])?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("collector.toml");
    let d = certs.dir();
    std::fs::write(
        &cfg,
        format!(
            "[grpc]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n[store]\nurl = \"postgres://bw:secret@db/bw\"\n\
             [thresholds.disk]\nwarning_pct = 70\n",
            d.join("ca.pem").display(),
            d.join("collector.pem").display(),
            d.join("collector-key.pem").display()
        ),
    )?;
    let path = cfg.display().to_string();
    let (code, out, err) = collector(&["config", "check", "--config", &path])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("# {path}: ok\n")), "{out}");
    let parsed: toml::Table = toml::from_str(&out).map_err(|e| anyhow::anyhow!("{e}\n{out}"))?;
    assert_eq!(parsed["grpc"]["listen"].as_str(), Some("0.0.0.0:7443"));
    assert_eq!(parsed["http"]["listen"].as_str(), Some("127.0.0.1:7080"));
    assert_eq!(parsed["silence"]["host_after"].as_str(), Some("30m"));
    assert_eq!(
        parsed["thresholds"]["disk"]["warning_pct"].as_integer(),
        Some(70)
    );
    assert_eq!(
        parsed["thresholds"]["disk"]["critical_pct"].as_integer(),
        Some(85)
    );
    assert!(!out.contains("secret"), "password shown:\n{out}");

    let (code, old, _) = collector(&["check-config", "--config", &path])?;
    assert_eq!((code, old), (0, out));
    let (_, help, _) = collector(&["--help"])?;
    assert!(
        help.contains("\n  config ") && help.contains("\n  status "),
        "{help}"
    );
    assert!(!help.contains("check-config"), "{help}");
    Ok(())
}

#[test]
fn version_names_the_commit() -> Result<()> {
    for name in ["backwatch-agent", "backwatch-collector"] {
        let out = Command::new(bin(name)).arg("--version").output()?;
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let rest = text
            .strip_prefix(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION")))
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected --version: {text}"));
        let commit = rest.strip_suffix("-dirty").unwrap_or(rest);
        assert!(
            commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{text}"
        );
        // A commit of this repository (when the tests run from a checkout).
        let known = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()?;
        assert!(known.success(), "{commit} is not a commit here");
    }
    Ok(())
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definitions() -> Result<()> {
    for name in ["backwatch-agent", "backwatch-collector"] {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin(name))
                .args(["completions", shell])
                .output()?;
            assert!(out.status.success(), "{name} completions {shell}");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(name) && text.contains("config"),
                "{shell}:\n{text}"
            );
        }
        let out = Command::new(bin(name))
            .args(["completions", "tcsh"])
            .output()?;
        assert_eq!(out.status.code(), Some(2));

        let dir = tempfile::tempdir()?;
        let out = Command::new(bin(name))
            .args(["man", "--dir"])
            .arg(dir.path())
            .output()?;
        assert!(out.status.success());
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))?;
        assert!(
            page.contains(&format!(".TH {}", name.to_uppercase())),
            "{page}"
        );
        let sub = std::fs::read_to_string(dir.path().join(format!("{name}-config-check.1")))?;
        let roff_name = name.replace('-', "\\-");
        assert!(sub.contains(&format!("{roff_name} config check")), "{sub}");
        assert!(
            sub.contains(&format!(
                "\"{name} config check {} (commit ",
                env!("CARGO_PKG_VERSION")
            )),
            "{sub}"
        );
        assert!(sub.contains("effective configuration"), "{sub}");
    }
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("backwatch-collector"))
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()?;
    let page = std::fs::read_to_string(dir.path().join("backwatch-collector-status.1"))?;
    assert!(page.contains("Nagios"), "{page}");
    assert!(out.status.success());
    Ok(())
}
