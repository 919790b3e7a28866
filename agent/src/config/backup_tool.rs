//! `[[pgbackrest]]` and `[[barman]]`: backup tools as sources of backup facts.
//!
//! No default instance. Every 10 minutes by default (docs/checks.md R27: the tool lists its
//! repository, which may be remote), each run bounded by `timeout` (default 2 min). `command`
//! is the program and leading arguments as a list, so the tool can run as its own user
//! (`["sudo", "-n", "-u", "postgres", "pgbackrest"]`) without a shell.

use super::effective::{Settings, duration, path};
use super::{At, Cx, Section, Valid};
use crate::probe::barman::BarmanProbe;
use crate::probe::pgbackrest::PgBackRestProbe;
use crate::probe::wal_archive::WalProbe;
use backwatch_common::config::{Problems, de_opt_duration};
use backwatch_proto::model::BackupToolObs;
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

pub const TOOL_INTERVAL: Duration = Duration::from_secs(600);
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const AGE_DEFAULT: &str = "24h (the procedure's daily backup)";
const FULL_AGE_DEFAULT: &str = "7d (the procedure's weekly backup)";

/// What the agent's configuration expects of a backup tool's sets, sent with each observation
/// (`expected_*`); `None`: the rule's default (`rules/src/backup_tool.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolLimits {
    pub max_age: Option<Duration>,
    pub max_full_age: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub min_size_ratio: Option<f64>,
    pub min_full_backups: Option<u32>,
}

impl ToolLimits {
    /// An observation carrying these expectations, to be filled by the probe.
    pub fn observation(&self) -> BackupToolObs {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        BackupToolObs {
            expected_max_age_secs: secs(self.max_age),
            expected_max_full_age_secs: secs(self.max_full_age),
            expected_max_duration_secs: secs(self.max_duration),
            expected_min_size_ratio: self.min_size_ratio,
            expected_min_full_backups: self.min_full_backups,
            ..BackupToolObs::default()
        }
    }
}

/// The keys both tools' sections have besides what names the repository (serde's
/// `deny_unknown_fields` does not combine with `flatten`, so each raw section lists them).
struct ToolKeys {
    command: Option<Vec<String>>,
    timeout: Option<Duration>,
    max_age: Option<Duration>,
    max_full_age: Option<Duration>,
    max_duration: Option<Duration>,
    min_size_ratio: Option<f64>,
    min_full_backups: Option<u32>,
    wal: Option<String>,
}

/// Those keys validated (every problem under `at`'s keys), and their effective settings.
struct Tool {
    command: Vec<String>,
    timeout: Duration,
    limits: ToolLimits,
    wal: Option<WalProbe>,
    /// `timeout`, `wal` and the limits, shown after the section's own keys.
    settings: Settings,
}

fn tool(cx: &mut Cx, at: &At, k: ToolKeys, program: &str) -> Tool {
    let command = command(&mut cx.problems, at.key("command"), k.command, program);
    if k.max_duration.is_some_and(|d| d.is_zero()) {
        cx.problems
            .push(at.key("max_duration"), "must be more than 0");
    }
    if let Some(r) = k.min_size_ratio
        && !(r > 0.0 && r <= 1.0)
    {
        cx.problems.push(
            at.key("min_size_ratio"),
            format!("{r} must be more than 0 and at most 1 (example: 0.5)"),
        );
    }
    if k.min_full_backups == Some(0) {
        cx.problems
            .push(at.key("min_full_backups"), "must be at least 1");
    }
    let wal = k.wal.as_deref().and_then(|w| cx.wal(at, w));
    let timeout = cx.timeout(at, k.timeout, TOOL_TIMEOUT);
    let settings = Settings::default()
        .duration("timeout", timeout)
        .or_note(
            "wal",
            wal.as_ref().map(|w| w.name.clone()),
            Value::from,
            "judged on this host whatever its role",
        )
        .or_note("max_age", k.max_age, duration, AGE_DEFAULT)
        .or_note("max_full_age", k.max_full_age, duration, FULL_AGE_DEFAULT)
        .or_note("max_duration", k.max_duration, duration, "4h")
        .or_note("min_size_ratio", k.min_size_ratio, Value::from, "0.5")
        .or_note(
            "min_full_backups",
            k.min_full_backups,
            |n| Value::from(i64::from(n)),
            "1",
        );
    Tool {
        command,
        timeout,
        limits: ToolLimits {
            max_age: k.max_age,
            max_full_age: k.max_full_age,
            max_duration: k.max_duration,
            min_size_ratio: k.min_size_ratio,
            min_full_backups: k.min_full_backups,
        },
        wal,
        settings,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPgBackRest {
    pub name: String,
    /// Only this stanza (default: every stanza `info` lists).
    pub stanza: Option<String>,
    /// Only this repository (`--repo`, 1 to 256; default: every repository, each its own set
    /// when there are several), e.g. for limits of its own.
    pub repo: Option<u16>,
    /// pgBackRest's configuration file (`--config`; default: its own default).
    pub config: Option<PathBuf>,
    /// Program and leading arguments (default `["pgbackrest"]`).
    pub command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Newest backup of any type older than this is critical (default 24 h).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// Newest full backup older than this is critical (default 7 d).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_full_age: Option<Duration>,
    /// Newest full backup taking longer is a warning (default 4 h, pgMonitor's).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_duration: Option<Duration>,
    /// Newest full backup smaller than this share of the previous full is a warning (default
    /// 0.5: a backup that silently skipped a tablespace).
    pub min_size_ratio: Option<f64>,
    /// Fewer full backups kept is a warning (default 1).
    pub min_full_backups: Option<u32>,
    /// The `[[wal]]` probe of this host's server: on a standby the primary's probe judges.
    pub wal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBarman {
    pub name: String,
    /// The Barman server (section of its configuration).
    pub server: String,
    /// Barman's configuration file (`-c`; default: its own default).
    pub config: Option<PathBuf>,
    /// Program and leading arguments (default `["barman"]`).
    pub command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_full_age: Option<Duration>,
    /// Newest full backup taking longer is a warning (default 4 h, pgMonitor's).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_duration: Option<Duration>,
    /// Newest full backup smaller than this share of the previous full is a warning (default
    /// 0.5: a backup that silently skipped a tablespace).
    pub min_size_ratio: Option<f64>,
    /// Fewer full backups kept is a warning (default 1).
    pub min_full_backups: Option<u32>,
    /// The `[[wal]]` probe of this host's server: on a standby the primary's probe judges.
    pub wal: Option<String>,
}

fn command(p: &mut Problems, key: String, c: Option<Vec<String>>, default: &str) -> Vec<String> {
    match c {
        None => vec![default.to_string()],
        Some(v) if v.first().is_none_or(|p| p.is_empty()) => {
            p.push(key, format!("must name a program, e.g. [\"{default}\"]"));
            Vec::new()
        }
        Some(v) => v,
    }
}

impl Section for RawPgBackRest {
    const KEY: &'static str = "pgbackrest";
    const KIND: ProbeKind = ProbeKind::PgBackRest;
    const INTERVAL: Duration = TOOL_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let r = self;
        let t = tool(
            cx,
            at,
            ToolKeys {
                command: r.command,
                timeout: r.timeout,
                max_age: r.max_age,
                max_full_age: r.max_full_age,
                max_duration: r.max_duration,
                min_size_ratio: r.min_size_ratio,
                min_full_backups: r.min_full_backups,
                wal: r.wal,
            },
            "pgbackrest",
        );
        if r.repo.is_some_and(|n| !(1..=256).contains(&n)) {
            cx.problems
                .push(at.key("repo"), "must be a repository number from 1 to 256");
        }
        let probe = PgBackRestProbe {
            command: t.command,
            name: r.name,
            config: r.config,
            stanza: r.stanza,
            repo: r.repo,
            limits: t.limits,
            wal: t.wal,
            running: Default::default(),
            listed: Default::default(),
            timeout: t.timeout,
        };
        let settings = Settings::default()
            .strings("command", &probe.command)
            .or_note("stanza", probe.stanza.clone(), Value::from, "every stanza")
            .or_note(
                "repo",
                probe.repo,
                |n| Value::from(i64::from(n)),
                "every repository, each its own set when there are several",
            )
            .or_note("config", probe.config.clone(), path, "pgBackRest's default")
            .after(t.settings);
        Some(Valid {
            probe: Box::new(probe),
            timeout: t.timeout,
            settings,
        })
    }
}

impl Section for RawBarman {
    const KEY: &'static str = "barman";
    const KIND: ProbeKind = ProbeKind::Barman;
    const INTERVAL: Duration = TOOL_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let r = self;
        if r.server.is_empty() {
            cx.problems
                .push(at.key("server"), "must name a Barman server");
        }
        let t = tool(
            cx,
            at,
            ToolKeys {
                command: r.command,
                timeout: r.timeout,
                max_age: r.max_age,
                max_full_age: r.max_full_age,
                max_duration: r.max_duration,
                min_size_ratio: r.min_size_ratio,
                min_full_backups: r.min_full_backups,
                wal: r.wal,
            },
            "barman",
        );
        let probe = BarmanProbe {
            command: t.command,
            name: r.name,
            config: r.config,
            server: r.server,
            limits: t.limits,
            wal: t.wal,
            running: Default::default(),
            timeout: t.timeout,
        };
        let settings = Settings::default()
            .set("server", probe.server.as_str())
            .strings("command", &probe.command)
            .or_note("config", probe.config.clone(), path, "Barman's default")
            .after(t.settings);
        Some(Valid {
            probe: Box::new(probe),
            timeout: t.timeout,
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str as load;
    use crate::probe::barman::BarmanProbe;
    use crate::probe::pgbackrest::PgBackRestProbe;

    #[test]
    fn tools_default_to_every_10_minutes_with_their_own_program() {
        let c =
            load("[[pgbackrest]]\nname = \"repo\"\n[[barman]]\nname = \"bk\"\nserver = \"pg\"\n")
                .unwrap();
        let ids: Vec<_> = c.probes.iter().map(|s| s.probe.check_id()).collect();
        assert!(ids.contains(&"pgbackrest.repo".to_string()), "{ids:?}");
        assert!(ids.contains(&"barman.bk".to_string()), "{ids:?}");
        for (s, p) in c.probes_of::<PgBackRestProbe>() {
            assert_eq!(p.command, ["pgbackrest"]);
            assert_eq!(s.interval, super::TOOL_INTERVAL);
        }
        for (s, b) in c.probes_of::<BarmanProbe>() {
            assert_eq!(b.command, ["barman"]);
            assert_eq!(s.interval, super::TOOL_INTERVAL);
        }
    }

    #[test]
    fn a_repository_is_a_number_pgbackrest_knows() {
        let c = load("[[pgbackrest]]\nname = \"s3\"\nrepo = 2\n").unwrap();
        let (_, p) = c.probes_of::<PgBackRestProbe>().next().unwrap();
        assert_eq!(p.repo, Some(2));
        let err = load("[[pgbackrest]]\nname = \"s3\"\nrepo = 0\n")
            .err()
            .unwrap();
        assert!(
            err.contains("pgbackrest[0].repo: must be a repository number from 1 to 256"),
            "{err}"
        );
    }

    #[test]
    fn empty_command_and_server_are_named() {
        let err = load("[[barman]]\nname = \"bk\"\nserver = \"\"\ncommand = []\n")
            .err()
            .unwrap();
        assert!(
            err.contains("barman[0].server: must name a Barman server"),
            "{err}"
        );
        assert!(
            err.contains("barman[0].command: must name a program"),
            "{err}"
        );
    }
}
