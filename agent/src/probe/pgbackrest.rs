//! pgBackRest probe (`pgbackrest.<name>`): `pgbackrest info --output=json`, one backup set per
//! stanza (docs/checks.md R27).
//!
//! Invariants:
//! - One command per run, bounded by the probe's timeout (its process group is killed with
//!   it) and in output (see [`super::tool_command`]); run every 10 minutes by default (the
//!   repository may be remote, and `info` lists it).
//! - Facts only: per stanza its `status` (code, message, backup lock held), the newest
//!   successful backup of any type and the newest full one (start, stop, duration, size, what
//!   it added to the repository, its WAL range), the latest attempt when it failed, and the
//!   WAL archive's min and max. Ages on the agent's clock (`measured_at − stop`).
//! - A tool that cannot be run, exits non-zero without JSON, or prints JSON of another shape
//!   is the observation's `error`, never a panic.
//! - `command` is an argument vector, so `["sudo", "-n", "-u", "postgres", "pgbackrest"]`
//!   runs it as the repository's owner without a shell.

use super::tool_command::{self, Output};
use super::{Outcome, Probe};
use crate::config::backup_tool::ToolLimits;
use backwatch_proto::model::{BackupSet, BackupToolObs, Observation, ProbeKind, ToolBackup};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct PgBackRestProbe {
    pub name: String,
    /// Program and leading arguments (default `["pgbackrest"]`).
    pub command: Vec<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--stanza`; all stanzas when `None`.
    pub stanza: Option<String>,
    pub limits: ToolLimits,
    /// The `[[wal]]` server of this host (`wal` key): on a standby the primary judges.
    pub wal: Option<super::wal_archive::WalProbe>,
    /// Since when each stanza's backup lock has been seen held.
    pub running: std::sync::Arc<tool_command::RunningSince>,
}

#[async_trait::async_trait]
impl Probe for PgBackRestProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::PgBackRest
    }

    fn target(&self) -> String {
        self.command.join(" ")
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let argv = self.argv();
        let mut obs = BackupToolObs {
            commands: vec![tool_command::shown(&argv)],
            ..self.limits.observation()
        };
        tool_command::mark_server(self.wal.as_ref(), &mut obs).await;
        // Its version, so that a server too new for it is named (2.45 refuses PostgreSQL 16
        // with "unexpected control version" at stanza-create and backup, and `info` then
        // only shows no stanza). A failure leaves it unknown.
        let version = [self.command(), vec!["version".to_string()]].concat();
        obs.commands.push(tool_command::shown(&version));
        if let Ok(out) = tool_command::run(&version, tool_command::JSON_TOOL).await {
            obs.tool_version = tool_version(&out.stdout);
        }
        let now = Utc::now();
        let mut archive_ids = std::collections::HashMap::new();
        match tool_command::run(&argv, tool_command::JSON_TOOL)
            .await
            .and_then(|o| parse(&o, now))
        {
            Ok((mut sets, ids)) => {
                self.running.mark(&mut sets, now);
                obs.sets = sets;
                archive_ids = ids;
            }
            Err(e) => obs.error = Some(e),
        }
        // Where each recoverable window ends: when the newest archived segment was stored.
        // One listing of one log-file directory per stanza; a failure only leaves it unknown.
        for set in &mut obs.sets {
            let (Some(max), Some(id)) = (set.archive_max.clone(), archive_ids.get(&set.name))
            else {
                continue;
            };
            let argv = self.repo_ls_argv(&set.name, id, &max);
            obs.commands.push(tool_command::shown(&argv));
            if let Ok(out) = tool_command::run(&argv, tool_command::JSON_TOOL).await {
                set.archive_max_time = stored_at(&out, &max);
            }
        }
        Ok(Observation::PgBackRest(Box::new(obs)))
    }
}

impl PgBackRestProbe {
    /// The program, its leading arguments and `--config`: what every command starts with.
    fn command(&self) -> Vec<String> {
        let mut argv = self.command.clone();
        if let Some(c) = &self.config {
            argv.push(format!("--config={}", c.display()));
        }
        argv
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = self.command();
        if let Some(s) = &self.stanza {
            argv.push(format!("--stanza={s}"));
        }
        argv.extend(["--output=json".to_string(), "info".to_string()]);
        argv
    }

    fn repo_ls_argv(&self, stanza: &str, id: &str, max: &str) -> Vec<String> {
        let mut argv = self.command();
        argv.extend(repo_ls_args(stanza, id, max));
        argv
    }
}

/// "2.45" from `pgBackRest 2.45`.
fn tool_version(stdout: &str) -> Option<String> {
    let v = stdout.trim().strip_prefix("pgBackRest ")?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

/// The arguments of `repo-ls` of the repository directory holding segment `max` of `stanza`'s
/// archive `id` (`archive/main/15-1/0000000100000000`): its files with their times.
pub(crate) fn repo_ls_args(stanza: &str, id: &str, max: &str) -> [String; 3] {
    let dir = max.get(..16).unwrap_or(max);
    [
        "--output=json".to_string(),
        "repo-ls".to_string(),
        format!("archive/{stanza}/{id}/{dir}"),
    ]
}

/// The time `repo-ls` gives the file of segment `max` (`<segment>-<sha1>[.gz]`).
pub(crate) fn stored_at(out: &Output, max: &str) -> Option<DateTime<Utc>> {
    let doc = tool_command::json(out).ok()?;
    doc.as_object()?
        .iter()
        .filter(|(name, _)| name.starts_with(max) && name.as_bytes().get(24) == Some(&b'-'))
        .filter_map(|(_, v)| v["time"].as_i64())
        .max()
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// Stanza name → the id of its current archive (`15-1`), for `repo-ls`.
type ArchiveIds = std::collections::HashMap<String, String>;

fn parse(out: &Output, now: DateTime<Utc>) -> Result<(Vec<BackupSet>, ArchiveIds), String> {
    let doc = tool_command::json(out).map_err(|e| match out.code {
        Some(0) => e,
        code => format!(
            "pgbackrest info exited with {}: {}",
            code.map_or("a signal".to_string(), |c| format!("status {c}")),
            out.last_words()
        ),
    })?;
    let stanzas = doc
        .as_array()
        .ok_or("pgbackrest info did not print a list of stanzas")?;
    let ids = stanzas
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), archive_id(s)?)))
        .collect();
    Ok((stanzas.iter().map(|s| stanza(s, now)).collect(), ids))
}

/// The current database's archive: the last entry that has WAL.
pub(crate) fn current_archive(s: &Value) -> Option<&Value> {
    s["archive"]
        .as_array()
        .and_then(|a| a.iter().rev().find(|x| x["min"].is_string()))
}

/// Its id, when it is a plain directory name (`15-1`), never a path.
pub(crate) fn archive_id(s: &Value) -> Option<String> {
    let id = current_archive(s)?["id"].as_str()?;
    id.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
        .then(|| id.to_string())
}

fn stanza(s: &Value, now: DateTime<Utc>) -> BackupSet {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let status = &s["status"];
    // Every entry of `backup[]` is a completed backup: pgBackRest records a backup only once it
    // finished (an interrupted one is resumed or removed, never listed). Its `error: true` says
    // that pages whose checksum did not match were found while copying: the backup is whole and
    // restorable, the cluster it copied has corrupted pages (the rule says so; it is no failure).
    let backups: Vec<ToolBackup> = s["backup"]
        .as_array()
        .map(|a| a.iter().map(|b| backup(b, now)).collect())
        .unwrap_or_default();
    let stop = |b: &ToolBackup| b.stop_time;
    let newest = backups.iter().max_by_key(|b| stop(b)).cloned();
    // Fulls, newest first: the newest, the one before it (size drop) and how many are kept
    // (redundancy).
    let mut fulls: Vec<&ToolBackup> = backups.iter().filter(|b| b.kind == "full").collect();
    fulls.sort_by_key(|b| std::cmp::Reverse(stop(b)));
    let newest_full = fulls.first().map(|b| (*b).clone());
    let previous_full = fulls.get(1).map(|b| (*b).clone());
    let oldest = backups.iter().min_by_key(|b| stop(b)).cloned();
    let archive = current_archive(s);
    BackupSet {
        name: text(&s["name"]).unwrap_or_default(),
        status_code: status["code"].as_i64().map_or(-1, |c| c as i32),
        status_message: text(&status["message"]),
        failing_checks: Vec::new(),
        backup_running: status["lock"]["backup"]["held"].as_bool() == Some(true),
        backup_count: backups.len() as u64,
        newest,
        newest_full,
        newest_failed: None,
        archive_min: archive.and_then(|a| text(&a["min"])),
        archive_max: archive.and_then(|a| text(&a["max"])),
        oldest,
        archive_max_time: None,
        previous_full,
        full_count: fulls.len() as u64,
        // Timed by the probe from when it first saw the lock held.
        backup_running_secs: None,
        // The current database entry (the newest after a stanza-upgrade).
        system_identifier: s["db"]
            .as_array()
            .and_then(|dbs| dbs.iter().max_by_key(|d| d["id"].as_i64()))
            .and_then(|d| d["system-id"].as_u64())
            .map(|id| id.to_string()),
    }
}

/// One entry of `backup[]`.
fn backup(b: &Value, now: DateTime<Utc>) -> ToolBackup {
    let ts = |v: &Value| v.as_i64().and_then(|s| DateTime::from_timestamp(s, 0));
    let (start, stop) = (ts(&b["timestamp"]["start"]), ts(&b["timestamp"]["stop"]));
    let text = |v: &Value| v.as_str().map(str::to_string);
    ToolBackup {
        label: text(&b["label"]).unwrap_or_default(),
        kind: text(&b["type"]).unwrap_or_default(),
        start_time: start,
        stop_time: stop,
        duration_secs: start.zip(stop).map(|(a, z)| (z - a).num_seconds()),
        size_bytes: b["info"]["size"].as_u64().unwrap_or(0),
        stored_bytes: b["info"]["repository"]["delta"].as_u64().unwrap_or(0),
        wal_start: text(&b["archive"]["start"]),
        wal_stop: text(&b["archive"]["stop"]),
        age_secs: stop.map(|s| (now - s).num_seconds()),
        page_checksum_errors: b["error"].as_bool() == Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"}],
"backup":[
 {"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"error":false,"info":{"delta":23213837,"repository":{"delta":3062598,"size":3062598},"size":23213837},"label":"20261125-190526F","timestamp":{"start":1795633526,"stop":1795633531},"type":"full"},
 {"archive":{"start":"000000010000000000000003","stop":"000000010000000000000004"},"error":false,"info":{"delta":8458,"repository":{"delta":432,"size":3062600},"size":23213837},"label":"20261125-190526F_20261125-190531I","timestamp":{"start":1795633531,"stop":1795633533},"type":"incr"},
 {"archive":{"start":"000000010000000000000005","stop":"000000010000000000000005"},"error":true,"info":{"size":23213837,"repository":{"delta":1}},"label":"20261125-190526F_20261125-190600I","timestamp":{"start":1795633560,"stop":1795633561},"type":"incr"}],
"db":[{"id":1,"repo-key":1,"system-id":7571234567890123456,"version":"15"}],
"name":"main","status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    fn out(stdout: &str, code: i32) -> Output {
        Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn info_gives_newest_backups_checksum_errors_and_archive_range() {
        let now = DateTime::from_timestamp(1_795_633_600, 0).unwrap();
        let (sets, ids) = parse(&out(INFO, 0), now).unwrap();
        let s = &sets[0];
        assert_eq!(s.system_identifier.as_deref(), Some("7571234567890123456"));
        assert_eq!(ids.get("main").map(String::as_str), Some("15-1"));
        assert_eq!(s.oldest.as_ref().unwrap().label, "20261125-190526F");
        assert_eq!(
            (s.name.as_str(), s.status_code, s.backup_count),
            ("main", 0, 3)
        );
        // `error: true` is a completed backup that found pages with bad checksums: the
        // newest backup, not a failed one.
        let newest = s.newest.as_ref().unwrap();
        assert_eq!(newest.label, "20261125-190526F_20261125-190600I");
        assert_eq!(
            (newest.kind.as_str(), newest.duration_secs),
            ("incr", Some(1))
        );
        assert_eq!(newest.age_secs, Some(39));
        assert!(newest.page_checksum_errors);
        assert!(s.newest_failed.is_none());
        let full = s.newest_full.as_ref().unwrap();
        assert_eq!(full.label, "20261125-190526F");
        assert_eq!(full.stored_bytes, 3_062_598);
        assert!(!full.page_checksum_errors);
        assert_eq!(s.archive_max.as_deref(), Some("000000010000000000000004"));
    }

    #[test]
    fn repo_ls_gives_when_the_newest_segment_was_stored() {
        let listing = r#"{".":{"type":"path"},
"000000010000000000000003-66ff8a7acc948989d5a0f01316db4987275d0a7e.gz":{"type":"file","size":44405,"time":1796416931},
"000000010000000000000002.00000028.backup":{"type":"file","size":371,"time":1796416999},
"000000010000000000000004-7e5291095b85ca09ccae515eb773c3ec11a40057.gz":{"type":"file","size":16462,"time":1796416940}}"#;
        let at = stored_at(&out(listing, 0), "000000010000000000000004");
        assert_eq!(at.map(|t| t.timestamp()), Some(1_796_416_940));
        assert_eq!(
            stored_at(&out(listing, 0), "000000010000000000000009"),
            None
        );
    }

    #[test]
    fn version_is_read_from_the_tools_words_only() {
        assert_eq!(tool_version("pgBackRest 2.45\n").as_deref(), Some("2.45"));
        assert_eq!(tool_version("pgBackRest 2.59.1").as_deref(), Some("2.59.1"));
        assert_eq!(tool_version("pgBackRest 2.45dev; rm -rf"), None);
        assert_eq!(tool_version("ERROR: [031]"), None);
    }

    #[test]
    fn failure_without_json_names_the_tools_words() {
        let mut o = out("", 41);
        o.stderr = "ERROR: [041]: unable to open file '/etc/pgbackrest.conf'\n".into();
        let e = parse(&o, Utc::now()).unwrap_err();
        assert!(e.contains("unable to open file"), "{e}");
        assert!(parse(&out("{\"x\":1}", 0), Utc::now()).is_err());
    }
}
