//! `[[pgbackrest]]` and `[[barman]]`: backup tools as sources of backup facts.
//!
//! No default instance. Every 10 minutes by default (docs/checks.md R27: the tool lists its
//! repository, which may be remote), each run bounded by `timeout` (default 2 min). `command`
//! is the program and leading arguments as a list, so the tool can run as its own user
//! (`["sudo", "-n", "-u", "postgres", "pgbackrest"]`) without a shell.

use crate::probe::barman::BarmanProbe;
use crate::probe::pgbackrest::PgBackRestProbe;
use backwatch_proto::config::{Problems, de_opt_duration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const TOOL_INTERVAL: Duration = Duration::from_secs(600);
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPgBackRest {
    pub name: String,
    /// Only this stanza (default: every stanza `info` lists).
    pub stanza: Option<String>,
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

fn timeout(p: &mut Problems, key: String, t: Option<Duration>) -> Duration {
    let t = t.unwrap_or(TOOL_TIMEOUT);
    if t < Duration::from_secs(1) {
        p.push(key, "must be at least 1s");
    }
    t
}

pub(super) fn pgbackrest(
    p: &mut Problems,
    i: usize,
    r: RawPgBackRest,
) -> (PgBackRestProbe, Duration) {
    let k = |f: &str| format!("pgbackrest[{i}].{f}");
    let probe = PgBackRestProbe {
        command: command(p, k("command"), r.command, "pgbackrest"),
        name: r.name,
        config: r.config,
        stanza: r.stanza,
        max_age: r.max_age,
        max_full_age: r.max_full_age,
    };
    (probe, timeout(p, k("timeout"), r.timeout))
}

pub(super) fn barman(p: &mut Problems, i: usize, r: RawBarman) -> (BarmanProbe, Duration) {
    let k = |f: &str| format!("barman[{i}].{f}");
    if r.server.is_empty() {
        p.push(k("server"), "must name a Barman server");
    }
    let probe = BarmanProbe {
        command: command(p, k("command"), r.command, "barman"),
        name: r.name,
        config: r.config,
        server: r.server,
        max_age: r.max_age,
        max_full_age: r.max_full_age,
    };
    (probe, timeout(p, k("timeout"), r.timeout))
}

/// A `max_age`-like line for `print-config`: the value, or a comment naming the default.
pub fn print_age(key: &str, v: Option<Duration>, default: &str) -> String {
    match v {
        Some(d) => format!("{key} = {:?}", backwatch_proto::config::fmt_duration(d)),
        None => format!("# {key} not set: {default}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ProbeConfig, load_str as load};

    #[test]
    fn tools_default_to_every_10_minutes_with_their_own_program() {
        let c =
            load("[[pgbackrest]]\nname = \"repo\"\n[[barman]]\nname = \"bk\"\nserver = \"pg\"\n")
                .unwrap();
        let ids: Vec<_> = c.probes.iter().map(|s| s.probe.check_id()).collect();
        assert!(ids.contains(&"pgbackrest.repo".to_string()), "{ids:?}");
        assert!(ids.contains(&"barman.bk".to_string()), "{ids:?}");
        for s in &c.probes {
            match &s.probe {
                ProbeConfig::PgBackRest(p) => assert_eq!(p.command, ["pgbackrest"]),
                ProbeConfig::Barman(b) => assert_eq!(b.command, ["barman"]),
                _ => continue,
            }
            assert_eq!(s.interval, super::TOOL_INTERVAL);
        }
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
