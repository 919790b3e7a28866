//! pgBackRest probe (`pgbackrest.<name>`): `pgbackrest info --output=json`, one backup set per
//! stanza (docs/checks.md R27).
//!
//! Invariants:
//! - One command per run, bounded by the probe's timeout (its process group is killed with
//!   it) and in output (see [`super::tool_command`]); run every 10 minutes by default (the
//!   repository may be remote, and `info` lists it).
//! - One backup set per stanza, or per stanza and repository when the stanza is kept in several
//!   repositories (see [`sets`]).
//! - Facts only: per set its `status` (code, message, backup lock held), the newest
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
    /// `--repo`: only this repository, its set named `<stanza>/repo<N>`; every repository
    /// when `None` (a set each when there are several, see [`sets`]).
    pub repo: Option<u16>,
    pub limits: ToolLimits,
    /// The `[[wal]]` server of this host (`wal` key): on a standby the primary judges.
    pub wal: Option<super::wal_archive::WalProbe>,
    /// Since when each stanza's backup lock has been seen held.
    pub running: std::sync::Arc<tool_command::RunningSince>,
    /// The sets this agent has seen listed (without `stanza`): one that vanishes is said.
    pub listed: std::sync::Arc<Listed>,
    /// The run's timeout: the optional steps end well before it.
    pub timeout: std::time::Duration,
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
        let start = tokio::time::Instant::now();
        let optional = tool_command::optional_until(start, self.timeout);
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
        // At most a quarter of the run: `info` comes after it.
        let until = start + self.timeout / 4;
        if let Ok(out) = tool_command::run_until(&version, tool_command::JSON_TOOL, until).await {
            obs.tool_version = tool_version(&out.stdout);
        }
        let now = Utc::now();
        let mut tips = Vec::new();
        match tool_command::run(&argv, tool_command::PGBACKREST_INFO)
            .await
            .and_then(|o| parse(&o, now, self.repo.is_some()))
        {
            Ok(parsed) => {
                let (mut sets, mut found): (Vec<_>, Vec<_>) = parsed.into_iter().unzip();
                self.running.mark(&mut sets, now);
                if self.stanza.is_none() {
                    for gone in self.listed.vanished(&sets) {
                        sets.push(gone);
                        found.push(None);
                    }
                }
                obs.sets = sets;
                tips = found;
            }
            Err(e) => obs.error = Some(e),
        }
        // Where each recoverable window ends: when the newest archived segment was stored.
        // One listing of one log-file directory per set (one after another: a repository on
        // S3 answers each in a second or two); a failure, or no time left for it, only leaves
        // that end unknown.
        for (set, tip) in obs.sets.iter_mut().zip(tips) {
            let Some(tip) = tip else { continue };
            if tokio::time::Instant::now() >= optional {
                break;
            }
            let mut argv = self.command();
            argv.extend(tip.repo_ls_args());
            obs.commands.push(tool_command::shown(&argv));
            if let Ok(out) = tool_command::run_until(&argv, tool_command::JSON_TOOL, optional).await
            {
                set.archive_max_time = stored_at(&out, &tip.max);
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
        if let Some(r) = self.repo {
            argv.push(format!("--repo={r}"));
        }
        argv.extend(["--output=json".to_string(), "info".to_string()]);
        argv
    }
}

/// The sets a `[[pgbackrest]]` without `stanza` has seen `info` list since the agent started.
/// `info` lists the stanzas whose directory it finds in the repository: one deleted by
/// mistake (`stanza-delete`, an object store's lifecycle rule removing `backup/<stanza>/`)
/// is simply no longer listed, and the other stanzas' ok would hide it. A set seen before and
/// missing now is reported as a set of its own whose status says so (critical), until the
/// agent restarts (what to do when it was removed on purpose).
#[derive(Debug, Default)]
pub struct Listed(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl Listed {
    /// Remember the stanzas of `sets`; those seen before and not among them, as sets saying
    /// so. By stanza, not set: a stanza that gained or lost a repository (`main` becoming
    /// `main/repo1` and `main/repo2`) is still listed.
    pub fn vanished(&self, sets: &[BackupSet]) -> Vec<BackupSet> {
        let stanza = |name: &str| name.split("/repo").next().unwrap_or(name).to_string();
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(sets.iter().map(|s| stanza(&s.name)));
        seen.iter()
            .filter(|name| !sets.iter().any(|s| &stanza(&s.name) == *name))
            .map(|name| BackupSet {
                name: name.clone(),
                status_code: 1,
                status_message: Some(
                    "no longer listed by `pgbackrest info` although this agent saw it before: \
                     its stanza was deleted or its repository directory is gone (if it was \
                     removed on purpose, restart the agent)"
                        .into(),
                ),
                ..BackupSet::default()
            })
            .collect()
    }
}

/// "2.45" from `pgBackRest 2.45`.
fn tool_version(stdout: &str) -> Option<String> {
    let v = stdout.trim().strip_prefix("pgBackRest ")?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
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

/// The newest segment of one repository's archive of a stanza, and where `repo-ls` lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArchiveTip {
    pub max: String,
    stanza: String,
    /// The archive's id (`15-1`), a plain directory name.
    id: String,
    /// `--repo`; the default repository when `None`.
    repo: Option<u64>,
}

impl ArchiveTip {
    /// `repo-ls` of the log-file directory holding `max` (`archive/main/15-1/0000000100000000`):
    /// its files with their times.
    pub(crate) fn repo_ls_args(&self) -> Vec<String> {
        let dir = self.max.get(..16).unwrap_or(&self.max);
        // `--stanza` too: a repository may be configured in the stanza's section only.
        let mut args = vec![
            "--output=json".to_string(),
            format!("--stanza={}", self.stanza),
        ];
        args.extend(self.repo.map(|r| format!("--repo={r}")));
        args.push("repo-ls".to_string());
        args.push(format!("archive/{}/{}/{dir}", self.stanza, self.id));
        args
    }
}

/// Each set of the listing and where its archive ends (`None` when it has no WAL, or its
/// archive id is not a plain name). With `by_repo` (the section names a repository) every set
/// carries its repository's number in its name.
fn parse(
    out: &Output,
    now: DateTime<Utc>,
    by_repo: bool,
) -> Result<Vec<(BackupSet, Option<ArchiveTip>)>, String> {
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
    Ok(stanzas.iter().flat_map(|s| sets(s, now, by_repo)).collect())
}

/// The repositories a stanza is listed from (`repo[].key`), in pgBackRest's order.
pub(crate) fn repo_keys(s: &Value) -> Vec<u64> {
    s["repo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key"].as_u64())
        .collect()
}

/// Whether an entry of `backup[]`, `archive[]` (`database.repo-key`) or `db[]` (`repo-key`)
/// belongs to repository `repo` (every entry when `None`).
fn in_repo(v: &Value, repo: Option<u64>) -> bool {
    repo.is_none_or(|k| {
        v["database"]["repo-key"]
            .as_u64()
            .or_else(|| v["repo-key"].as_u64())
            == Some(k)
    })
}

/// Whether backup `b` of stanza `s` is of the current database of its repository (after a
/// `stanza-upgrade`, the old major's backups are not); true when pgBackRest does not say.
pub(crate) fn of_current_db(s: &Value, b: &Value) -> bool {
    let repo = b["database"]["repo-key"].as_u64();
    match (b["database"]["id"].as_i64(), current_db(s, repo)) {
        (Some(id), Some(current)) => id == current,
        _ => true,
    }
}

/// The current database entry's id in repository `repo` (any when `None`): the newest, which
/// a `stanza-upgrade` adds.
fn current_db(s: &Value, repo: Option<u64>) -> Option<i64> {
    s["db"]
        .as_array()?
        .iter()
        .filter(|d| in_repo(d, repo))
        .filter_map(|d| d["id"].as_i64())
        .max()
}

/// The current database's archive in repository `repo` (all when `None`): the last entry that
/// has WAL, of the current database when the entries say which.
fn current_archive(s: &Value, repo: Option<u64>) -> Option<&Value> {
    let current = current_db(s, repo);
    s["archive"].as_array()?.iter().rev().find(|x| {
        x["min"].is_string()
            && in_repo(x, repo)
            && match (x["database"]["id"].as_i64(), current) {
                (Some(id), Some(current)) => id == current,
                _ => true,
            }
    })
}

/// Where repository `repo`'s archive of the stanza ends; `None` without WAL, or when the
/// archive id is not a plain directory name (`15-1`: never a path).
fn archive_tip(s: &Value, repo: Option<u64>) -> Option<ArchiveTip> {
    let archive = current_archive(s, repo)?;
    let id = archive["id"].as_str()?;
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    Some(ArchiveTip {
        max: archive["max"].as_str()?.to_string(),
        stanza: s["name"].as_str()?.to_string(),
        id: id.to_string(),
        // The one repository listed, else the default one.
        repo: repo.or_else(|| <[u64; 1]>::try_from(repo_keys(s)).ok().map(|[k]| k)),
    })
}

/// Where the stanza's WAL ends over all its repositories: the newest segment any of them
/// holds (`archive-get` tries each repository in turn, so recovery reaches it).
pub(crate) fn newest_archive_tip(s: &Value) -> Option<ArchiveTip> {
    let keys = repo_keys(s);
    if keys.len() <= 1 {
        return archive_tip(s, None);
    }
    keys.into_iter()
        .filter_map(|k| archive_tip(s, Some(k)))
        .max_by(|a, b| a.max.cmp(&b.max))
}

/// A stanza's backup sets. pgBackRest keeps a stanza in one or more repositories (`repo1-path`,
/// `repo2-path`, e.g. a local one and an object store), each with its own backups, retention
/// and archive, and `info` lists them merged. With several, each repository is a set of its own
/// (`main/repo2`): one that stopped receiving backups, or holds fewer fulls than asked, must
/// not hide behind the other. With one, the set is the stanza (`main`).
fn sets(s: &Value, now: DateTime<Utc>, by_repo: bool) -> Vec<(BackupSet, Option<ArchiveTip>)> {
    let keys = repo_keys(s);
    let stanza_name = s["name"].as_str().unwrap_or_default();
    let status = &s["status"];
    let code = status["code"].as_i64().map_or(-1, |c| c as i32);
    let message = status["message"].as_str().map(str::to_string);
    // A repository's error is pgBackRest's whole message, over several lines (the error, its
    // causes, hints): one line for the summary.
    let repo_status = |r: &Value| {
        let st = &r["status"];
        (
            st["code"].as_i64().map_or(-1, |c| c as i32),
            st["message"]
                .as_str()
                .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" ")),
        )
    };
    let lock = &status["lock"]["backup"];
    let held = lock["held"].as_bool() == Some(true);
    if keys.len() > 1 || (by_repo && keys.len() == 1) {
        // Which repositories a backup is running to: pgBackRest 2.59 and later name them
        // (once the backup knows its size); before, the lock is the stanza's (2.45–2.52) or
        // any repository's (2.53–2.58). A repository that cannot be read takes no backup, so
        // a lock never hides its own status.
        let locked: Vec<u64> = lock["repo"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["key"].as_u64())
            .collect();
        let repos = s["repo"].as_array().into_iter().flatten();
        return repos
            .filter_map(|r| {
                let key = r["key"].as_u64()?;
                let (mut c, mut m) = repo_status(r);
                // "database mismatch across repos" is the stanza's alone: every repository
                // of it is then suspect.
                if c == 0 && code == 5 {
                    (c, m) = (code, message.clone());
                }
                let running = held
                    && if locked.is_empty() {
                        !matches!(c, 1 | 3 | 99)
                    } else {
                        locked.contains(&key)
                    };
                let name = format!("{stanza_name}/repo{key}");
                let set = set(s, now, name, Some(key), (c, m), running);
                Some((set, archive_tip(s, Some(key))))
            })
            .collect();
    }
    // One repository: its own status says more than the stanza's "other" (99) does, e.g.
    // "[FileMissingError] unable to load info file …".
    let (c, m) = match s["repo"].as_array().map(Vec::as_slice) {
        Some([r]) if code == 99 && repo_status(r).0 == 99 => repo_status(r),
        _ => (code, message),
    };
    let set = set(s, now, stanza_name.to_string(), None, (c, m), held);
    vec![(set, archive_tip(s, None))]
}

/// The set of repository `repo`'s entries of the stanza (all when `None`).
fn set(
    s: &Value,
    now: DateTime<Utc>,
    name: String,
    repo: Option<u64>,
    (status_code, status_message): (i32, Option<String>),
    backup_running: bool,
) -> BackupSet {
    let text = |v: &Value| v.as_str().map(str::to_string);
    // Every entry of `backup[]` is a completed backup: pgBackRest records a backup only once it
    // finished (an interrupted one is resumed or removed, never listed). Its `error: true` says
    // that pages whose checksum did not match were found while copying: the backup is whole and
    // restorable, the cluster it copied has corrupted pages (the rule says so; it is no failure).
    // Only backups of the current database: after a major upgrade (`stanza-upgrade`) `info`
    // still lists the old major's backups, which restore the old cluster only, up to the
    // upgrade; counting them would claim a window and a fresh backup the new cluster has not.
    let backups: Vec<ToolBackup> = s["backup"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| in_repo(b, repo) && of_current_db(s, b))
        .map(|b| backup(b, now))
        .collect();
    let stop = |b: &ToolBackup| b.stop_time;
    let newest = backups.iter().max_by_key(|b| stop(b)).cloned();
    // Fulls, newest first: the newest, the one before it (size drop) and how many are kept
    // (redundancy).
    let mut fulls: Vec<&ToolBackup> = backups.iter().filter(|b| b.kind == "full").collect();
    fulls.sort_by_key(|b| std::cmp::Reverse(stop(b)));
    let newest_full = fulls.first().map(|b| (*b).clone());
    let previous_full = fulls.get(1).map(|b| (*b).clone());
    let oldest = backups.iter().min_by_key(|b| stop(b)).cloned();
    let archive = current_archive(s, repo);
    BackupSet {
        name,
        status_code,
        status_message,
        failing_checks: Vec::new(),
        backup_running,
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
        // The current database entry (the newest after a stanza-upgrade); for a repository
        // that cannot be read (it lists none), the stanza's as the others record it, so that
        // the set stays the same set for every host reporting it (one alert for an HA pair).
        system_identifier: system_identifier(s, repo).or_else(|| system_identifier(s, None)),
        repository: repo.and_then(|k| u32::try_from(k).ok()),
    }
}

/// The system identifier of the current database entry of repository `repo` (any when
/// `None`): the newest after a stanza-upgrade.
fn system_identifier(s: &Value, repo: Option<u64>) -> Option<String> {
    s["db"]
        .as_array()?
        .iter()
        .filter(|d| in_repo(d, repo))
        .max_by_key(|d| d["id"].as_i64())
        .and_then(|d| d["system-id"].as_u64())
        .map(|id| id.to_string())
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
        let sets = parse(&out(INFO, 0), now, false).unwrap();
        let (s, tip) = &sets[0];
        assert_eq!(s.system_identifier.as_deref(), Some("7571234567890123456"));
        assert_eq!(
            tip.as_ref().unwrap().repo_ls_args(),
            [
                "--output=json",
                "--stanza=main",
                "repo-ls",
                "archive/main/15-1/0000000100000000"
            ]
        );
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

    /// A probe of every stanza whose pgBackRest is the shell `script` (its arguments in `$*`).
    fn fake(script: String, timeout_secs: u64) -> PgBackRestProbe {
        PgBackRestProbe {
            name: "all".into(),
            command: vec!["sh".into(), "-c".into(), script, "pgbackrest".into()],
            config: None,
            stanza: None,
            repo: None,
            limits: ToolLimits::default(),
            wal: None,
            running: Default::default(),
            listed: Default::default(),
            timeout: std::time::Duration::from_secs(timeout_secs),
        }
    }

    /// A `repo-ls` that hangs (an S3 call waiting for pgBackRest's io-timeout) only leaves the
    /// window's end unknown: the run returns what `info` found before its timeout, instead of
    /// timing out as a whole (which hid a stale backup's critical behind an unknown).
    #[tokio::test]
    async fn a_hanging_listing_leaves_the_info_within_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("info.json");
        std::fs::write(&info, INFO).unwrap();
        let script = format!(
            "case \"$*\" in *repo-ls*) exec sleep 60;; *version*) echo 'pgBackRest 2.54';; \
             *info*) cat '{}';; esac",
            info.display()
        );
        let probe = fake(script, 3);
        let observed = tokio::time::timeout(std::time::Duration::from_secs(3), probe.observe())
            .await
            .expect("within the run's timeout");
        let Ok(Observation::PgBackRest(obs)) = observed else {
            panic!("an observation: {observed:?}");
        };
        assert_eq!(obs.error, None);
        assert_eq!(obs.tool_version.as_deref(), Some("2.54"));
        let set = &obs.sets[0];
        assert_eq!(
            set.newest.as_ref().map(|b| b.label.as_str()),
            Some("20261125-190526F_20261125-190600I")
        );
        assert_eq!(set.archive_max_time, None);
    }

    /// A stanza `info` no longer lists (deleted by mistake, its repository directory gone)
    /// is said, although every stanza still listed is fine.
    #[tokio::test]
    async fn a_stanza_no_longer_listed_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("info.json");
        let two = format!(
            "[{},{}]",
            &INFO[1..INFO.len() - 1],
            INFO[1..INFO.len() - 1].replace("\"name\":\"main\"", "\"name\":\"db2\"")
        );
        std::fs::write(&info, &two).unwrap();
        let probe = fake(
            format!("case \"$*\" in *info*) cat '{}';; esac", info.display()),
            10,
        );
        let sets = |o: Outcome| match o {
            Ok(Observation::PgBackRest(obs)) => obs.sets,
            other => panic!("{other:?}"),
        };
        let first = sets(probe.observe().await);
        assert_eq!(first.len(), 2);
        // A stanza that gained a repository is still listed (as `main/repo1`, ...).
        let gained = probe.listed.vanished(&[BackupSet {
            name: "main/repo1".into(),
            ..BackupSet::default()
        }]);
        assert_eq!(gained.len(), 1, "only db2: {gained:?}");
        std::fs::write(&info, INFO).unwrap();
        let then = sets(probe.observe().await);
        let gone = then.iter().find(|s| s.name == "db2").expect("db2 said");
        assert_eq!(gone.status_code, 1);
        assert!(
            gone.status_message
                .as_deref()
                .is_some_and(|m| m.starts_with("no longer listed by `pgbackrest info`")),
            "{gone:?}"
        );
    }

    /// After `pg_upgrade` and `stanza-upgrade` (15 to 16): the 15 backups and archive are still
    /// listed, under database id 1; nothing of the new cluster (id 2) is backed up yet.
    const UPGRADED: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"},{"database":{"id":2,"repo-key":1},"id":"16-2","max":"000000010000000000000003","min":"000000010000000000000001"}],
"backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23213837,"repository":{"delta":3062598,"size":3062598},"size":23213837},"label":"20261125-190526F","timestamp":{"start":1795633526,"stop":1795633531},"type":"full"}],
"db":[{"id":1,"repo-key":1,"system-id":7571234567890123456,"version":"15"},{"id":2,"repo-key":1,"system-id":7571234567890999999,"version":"16"}],
"name":"main","status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn backups_of_the_major_before_a_stanza_upgrade_do_not_count() {
        let now = DateTime::from_timestamp(1_795_633_600, 0).unwrap();
        let sets = parse(&out(UPGRADED, 0), now, false).unwrap();
        let (s, tip) = &sets[0];
        assert_eq!(s.backup_count, 0);
        assert!(s.newest.is_none() && s.oldest.is_none(), "{s:?}");
        assert_eq!(s.system_identifier.as_deref(), Some("7571234567890999999"));
        // The window's end is the new cluster's archive, not the old one's.
        assert_eq!(s.archive_max.as_deref(), Some("000000010000000000000003"));
        assert_eq!(tip.as_ref().unwrap().id, "16-2");
        // Once the new cluster has its backup, that one is the set's.
        let upgraded = UPGRADED.replace(
            r#""database":{"id":1,"repo-key":1},"error""#,
            r#""database":{"id":2,"repo-key":1},"error""#,
        );
        let sets = parse(&out(&upgraded, 0), now, false).unwrap();
        assert_eq!(sets[0].0.backup_count, 1);
    }

    /// `info` of a stanza in two repositories, a full backup in each (pgBackRest 2.45).
    const TWO_REPOS: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"},{"database":{"id":1,"repo-key":2},"id":"15-1","max":"000000010000000000000005","min":"000000010000000000000001"}],
"backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23213853,"repository":{"delta":3061464,"size":3061464},"size":23213853},"label":"20261205-172549F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,"timestamp":{"start":1796491549,"stop":1796491551},"type":"full"},
{"archive":{"start":"000000010000000000000003","stop":"000000010000000000000004"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":2},"error":false,"info":{"delta":23213853,"repository":{"delta":3061465,"size":3061465},"size":23213853},"label":"20261205-172551F","lsn":{"start":"0/3000028","stop":"0/4000050"},"prior":null,"reference":null,"timestamp":{"start":1796491551,"stop":1796491554},"type":"full"}],
"cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7715872443098920144,"version":"15"},{"id":1,"repo-key":2,"system-id":7715872443098920144,"version":"15"}],"name":"main",
"repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}},{"cipher":"none","key":2,"status":{"code":0,"message":"ok"}}],
"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn each_repository_of_a_stanza_is_a_set_of_its_own() {
        let now = DateTime::from_timestamp(1_796_491_600, 0).unwrap();
        let sets = parse(&out(TWO_REPOS, 0), now, false).unwrap();
        let names: Vec<_> = sets.iter().map(|(s, _)| s.name.as_str()).collect();
        assert_eq!(names, ["main/repo1", "main/repo2"]);
        for ((s, tip), (label, max, repo)) in sets.iter().zip([
            ("20261205-172549F", "000000010000000000000004", "--repo=1"),
            ("20261205-172551F", "000000010000000000000005", "--repo=2"),
        ]) {
            assert_eq!((s.backup_count, s.full_count), (1, 1), "{}", s.name);
            assert_eq!(s.newest.as_ref().unwrap().label, label);
            assert_eq!(s.archive_max.as_deref(), Some(max));
            assert_eq!(s.status_code, 0);
            assert_eq!(s.system_identifier.as_deref(), Some("7715872443098920144"));
            assert_eq!(tip.as_ref().unwrap().repo_ls_args()[2], repo);
            assert_eq!(s.repository, Some(u32::from(repo.ends_with('2')) + 1));
        }
        // A drill's recovery reaches the newest segment of any repository (`archive-get`
        // tries each).
        let doc: Value = serde_json::from_str(TWO_REPOS).unwrap();
        let tip = newest_archive_tip(&doc[0]).unwrap();
        assert_eq!(tip.max, "000000010000000000000005");
        assert_eq!(tip.repo_ls_args()[2], "--repo=2");
    }

    #[test]
    fn a_repository_in_error_is_named_in_its_own_words() {
        let now = Utc::now();
        // Repository 2 lost its catalogue: the stanza says only "different across repos".
        let broken = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"}],"backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"database":{"id":1,"repo-key":1},"error":false,"info":{"size":23213853},"label":"20261205-172549F","timestamp":{"start":1796491549,"stop":1796491551},"type":"full"}],"db":[{"id":1,"repo-key":1,"system-id":7715872443098920144,"version":"15"}],"name":"main","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}},{"cipher":"none","key":2,"status":{"code":3,"message":"missing stanza data"}}],"status":{"code":4,"lock":{"backup":{"held":false}},"message":"different across repos"}}]"#;
        let sets = parse(&out(broken, 0), now, false).unwrap();
        let (one, two) = (&sets[0].0, &sets[1].0);
        assert_eq!((one.status_code, one.backup_count), (0, 1));
        assert_eq!(
            (
                two.status_code,
                two.status_message.as_deref(),
                two.backup_count
            ),
            (3, Some("missing stanza data"), 0)
        );
        assert!(sets[1].1.is_none(), "no archive in repository 2");
        // It lists no database: the stanza's identifier keeps it one set for every host.
        assert_eq!(
            two.system_identifier.as_deref(),
            Some("7715872443098920144")
        );
        // A backup running (to repository 1: 2.45 says only that the stanza is locked) does
        // not excuse repository 2, which cannot take one; 2.59 names the repositories.
        let held = broken.replace(r#""held":false"#, r#""held":true"#);
        let sets = parse(&out(&held, 0), now, false).unwrap();
        assert!(sets[0].0.backup_running && !sets[1].0.backup_running);
        let named = TWO_REPOS.replace(
            r#""held":false"#,
            r#""held":true,"size":100,"size-cplt":5,"repo":[{"key":2,"size":100,"size-cplt":5}]"#,
        );
        let sets = parse(&out(&named, 0), now, false).unwrap();
        assert!(!sets[0].0.backup_running && sets[1].0.backup_running);

        // One repository that cannot be read: its message, on one line, not "other".
        let one_repo = r#"[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"main","repo":[{"cipher":"none","key":1,"status":{"code":99,"message":"[FileOpenError] unable to load info file '/r/backup/main/backup.info':\nFileOpenError: unable to open file '/r/backup/main/backup.info' for read: [13] Permission denied\nHINT: has a stanza-create been performed?"}}],"status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}]"#;
        let sets = parse(&out(one_repo, 0), now, false).unwrap();
        let s = &sets[0].0;
        assert_eq!((s.name.as_str(), s.status_code), ("main", 99));
        assert_eq!(
            s.status_message.as_deref(),
            Some(
                "[FileOpenError] unable to load info file '/r/backup/main/backup.info': \
                 FileOpenError: unable to open file '/r/backup/main/backup.info' for read: [13] \
                 Permission denied HINT: has a stanza-create been performed?"
            )
        );

        // A section naming repository 2 (`--repo=2`): the set says which repository it is.
        let only_two = r#"[{"archive":[],"backup":[],"db":[],"name":"main","repo":[{"cipher":"none","key":2,"status":{"code":3,"message":"missing stanza data"}}],"status":{"code":3,"lock":{"backup":{"held":false}},"message":"missing stanza data"}}]"#;
        let sets = parse(&out(only_two, 0), now, true).unwrap();
        assert_eq!(sets[0].0.name, "main/repo2");
        assert_eq!(
            parse(&out(only_two, 0), now, false).unwrap()[0].0.name,
            "main"
        );
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
        let e = parse(&o, Utc::now(), false).unwrap_err();
        assert!(e.contains("unable to open file"), "{e}");
        assert!(parse(&out("{\"x\":1}", 0), Utc::now(), false).is_err());
    }
}
