//! Backups as a backup tool's catalogue shows them (`pgbackrest.<name>`, `barman.<name>`;
//! docs/checks.md R27).
//!
//! Each stanza (pgBackRest) or server (Barman) is judged on its own and the worst decides; the
//! summary names every set. Per set:
//! - the tool's own status: pgBackRest `status.code != 0` ⇒ critical with its message (while a
//!   backup is running the lock is held and that is said, not alarmed on); Barman `check`
//!   failing ⇒ critical naming the failing checks;
//! - the latest attempt failed (pgBackRest `error = true`, Barman `FAILED`) ⇒ critical;
//! - freshness, "full satisfies diff, full/diff satisfy incr": the newest backup of any type
//!   older than `max_age` (default 24 h, the procedure's daily backup) ⇒ critical; the newest
//!   full older than `max_full_age` (default 7 d, the weekly one) ⇒ critical; no backup at all
//!   ⇒ critical;
//! - runtime: the newest full backup took longer than `max_duration` (default 4 h, pgMonitor's)
//!   ⇒ warning;
//! - size drop: the newest full backup is smaller than `min_size_ratio` (default 0.5) of the
//!   full before it ⇒ warning (a backup that silently skipped a tablespace, or a table dropped
//!   by mistake);
//! - redundancy: fewer than `min_full_backups` (default 1) full backups kept ⇒ warning;
//! - stuck: a backup running for longer than `max_duration` ⇒ warning (pgBackRest's lock held
//!   that long as the agent saw it; Barman's `STARTED` backup since its id's time);
//! - the tool could not be run or understood ⇒ unknown, with its words;
//! - the section's linked server (`wal = "<name>"`) is a standby ⇒ ok, saying the primary's
//!   probe judges: an HA pair configured alike raises one alert, and the promoted node takes
//!   over after a failover. A role that cannot be read is said, and the sets judged here.
//! - a pgBackRest release too old for the linked server's major (2.45 stops at PostgreSQL 15:
//!   it refuses 16 at `stanza-create` and `backup`, and `info` then only lacks the stanza)
//!   ⇒ critical, naming both versions and the first release that supports the server.
//!
//! Ages were computed on the agent's clock. Durations and sizes are reported for the trends.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::{BackupSet, BackupToolObs, RecoveryWindow, ToolBackup};
use serde_json::json;
use std::time::Duration;

pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_FULL_AGE: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_MIN_SIZE_RATIO: f64 = 0.5;
pub const DEFAULT_MIN_FULL_BACKUPS: u32 = 1;

/// The limits one set is judged by: the agent's expectations, else the defaults.
#[derive(Debug, Clone, Copy)]
struct SetLimits {
    max_age: Duration,
    max_full_age: Duration,
    max_duration: Duration,
    min_size_ratio: f64,
    min_full_backups: u32,
}

impl SetLimits {
    fn of(obs: &BackupToolObs) -> Self {
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        SetLimits {
            max_age: secs(obs.expected_max_age_secs, DEFAULT_MAX_AGE),
            max_full_age: secs(obs.expected_max_full_age_secs, DEFAULT_MAX_FULL_AGE),
            max_duration: secs(obs.expected_max_duration_secs, DEFAULT_MAX_DURATION),
            min_size_ratio: obs
                .expected_min_size_ratio
                .unwrap_or(DEFAULT_MIN_SIZE_RATIO),
            min_full_backups: obs
                .expected_min_full_backups
                .unwrap_or(DEFAULT_MIN_FULL_BACKUPS),
        }
    }
}

/// The newest PostgreSQL major each pgBackRest release line supports (its `PG_VERSION_MAX`,
/// read from pgBackRest's sources at each release tag), oldest first: from 2.39 on 15, from
/// 2.46 on 16, and so on.
const PGBACKREST_MAX_MAJOR: [((u32, u32), u32); 5] = [
    ((2, 39), 15),
    ((2, 46), 16),
    ((2, 52), 17),
    ((2, 55), 18),
    ((2, 59), 19),
];

/// The newest major a pgBackRest `version` ("2.45", "2.59.1") supports, for the releases the
/// table knows (2.39 to 2.59): nothing is claimed about older or newer ones.
#[must_use]
pub fn pgbackrest_max_major(version: &str) -> Option<u32> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    let v = (parts.next()?.ok()?, parts.next()?.ok()?);
    let last = PGBACKREST_MAX_MAJOR.last()?.0;
    if v > last {
        return None;
    }
    PGBACKREST_MAX_MAJOR
        .iter()
        .rev()
        .find(|(from, _)| v >= *from)
        .map(|(_, major)| *major)
}

/// "pgBackRest 2.45 does not support PostgreSQL 16 …" when the linked server is newer than the
/// tool's release supports.
fn too_old(tool: &str, obs: &BackupToolObs) -> Option<String> {
    let (version, major) = (obs.tool_version.as_deref()?, obs.server_major?);
    let max = pgbackrest_max_major(version).filter(|_| tool == "pgBackRest")?;
    if major <= max {
        return None;
    }
    let first = PGBACKREST_MAX_MAJOR
        .iter()
        .find(|(_, m)| *m >= major)
        .map_or("a newer release".to_string(), |((a, b), _)| {
            format!("{a}.{b} or newer")
        });
    Some(format!(
        "pgBackRest {version} does not support PostgreSQL {major} (it supports up to {max}): \
         no backup of this server can be taken; install pgBackRest {first}"
    ))
}

/// `tool` is the program's name as people know it ("pgBackRest", "Barman").
#[must_use]
pub fn judge(tool: &str, obs: &BackupToolObs) -> Verdict {
    let limits = SetLimits::of(obs);
    // Each stanza's own status (the worst of its repositories' sets), so that a view of one
    // stanza does not wear another's: judged here, or ok where the primary judges.
    let set_status = |stanza: &str| {
        obs.sets
            .iter()
            .filter(|s| {
                s.name == stanza
                    || s.name
                        .strip_prefix(stanza)
                        .is_some_and(|r| r.starts_with("/repo"))
            })
            .map(|s| {
                if obs.on_standby {
                    Status::Ok
                } else {
                    set(s, &limits).0
                }
            })
            .max_by_key(|s| s.rank())
            .unwrap_or(Status::Unknown)
    };
    let windows: Vec<SetWindow> = windows(obs)
        .into_iter()
        .map(|(set, window)| SetWindow {
            set,
            status: set_status(set),
            secs: (window.end - window.start).num_seconds(),
            window,
        })
        .collect();
    // Every stanza or server with its own status, those without a window too (no backup, a
    // stanza no longer listed): what a view per stanza shows.
    let mut stanzas: Vec<&str> = Vec::new();
    for s in &obs.sets {
        let name = s.name.split("/repo").next().unwrap_or(&s.name);
        if !stanzas.contains(&name) {
            stanzas.push(name);
        }
    }
    let stanzas: Vec<serde_json::Value> = stanzas
        .into_iter()
        .map(|name| json!({"set": name, "status": set_status(name)}))
        .collect();
    // The narrowest set's window speaks for the check (one stanza or server in most setups).
    let narrowest = windows.iter().min_by_key(|w| w.secs);
    let details = json!({
        "commands": obs.commands,
        "sets": obs.sets,
        "max_age_secs": limits.max_age.as_secs(),
        "max_full_age_secs": limits.max_full_age.as_secs(),
        "max_duration_secs": limits.max_duration.as_secs(),
        "min_size_ratio": limits.min_size_ratio,
        "min_full_backups": limits.min_full_backups,
        "windows": windows,
        "stanzas": stanzas,
        "window_secs": narrowest.map(|w| w.secs),
        "window": narrowest,
        "tool_version": obs.tool_version,
        "server_major": obs.server_major,
        "window_note": (windows.is_empty() && !obs.sets.is_empty()).then_some(
            "no recoverable window: the tool gave no successful backup, or not when its newest WAL was stored"
        ),
    });
    let v = if obs.on_standby {
        // One verdict per backup set in an HA pair: the primary's probe gives it. After a
        // failover the new primary's probe sees itself promoted and takes over.
        Verdict::new(
            Status::Ok,
            format!(
                "on a standby: the primary's probe judges these {tool} backups ({})",
                obs.sets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if let Some(e) = &obs.error {
        Verdict::new(Status::Unknown, format!("{tool} could not be asked: {e}"))
    } else if obs.sets.is_empty() {
        Verdict::new(
            Status::Critical,
            format!("{tool} knows no stanza or server: nothing is backed up"),
        )
    } else {
        let mut judged: Vec<(Status, String)> = obs.sets.iter().map(|s| set(s, &limits)).collect();
        judged.sort_by_key(|(st, _)| std::cmp::Reverse(st.rank()));
        let worst = judged[0].0;
        Verdict::new(
            worst,
            judged
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let mut v = v;
    if let Some(refusal) = too_old(tool, obs).filter(|_| !obs.on_standby) {
        v.status = Status::Critical;
        v.summary = format!("{refusal}; {}", v.summary);
    }
    if let Some(e) = &obs.role_error {
        v.summary.push_str(&format!(
            "; judged here, the server's role is unknown ({e})"
        ));
    }
    if v.status == Status::Ok {
        return v.with_details(details);
    }
    v.with_details(details).with_procedure(procedure::BACKUP)
}

/// One stanza's or server's window in the check's details: the same fields as an archive
/// directory's window, with its name and the window's length.
#[derive(serde::Serialize)]
struct SetWindow<'a> {
    set: &'a str,
    /// The stanza's or server's own status (the check's is the worst of all).
    status: Status,
    #[serde(flatten)]
    window: RecoveryWindow,
    secs: i64,
}

/// The recoverable window (docs/checks.md R32) of sets a restore draws on together (one set,
/// or a stanza's repositories), as the tool's catalogue gives it: from the oldest successful
/// backup's end to when the newest archived segment was stored. Continuity in between is the
/// tool's own business (pgBackRest's `check`/`verify`, `barman check`): its failing checks make
/// the set critical, and no cut is known here.
fn window_of(sets: &[&BackupSet]) -> Option<RecoveryWindow> {
    let oldest = sets
        .iter()
        .filter_map(|s| s.oldest.as_ref())
        .filter_map(|b| Some((b.stop_time?, b)))
        .min_by_key(|(t, _)| *t);
    let (start, oldest) = oldest?;
    let newest = sets
        .iter()
        .filter_map(|s| s.newest.as_ref())
        .max_by_key(|b| b.stop_time);
    let (end, last) = sets
        .iter()
        .filter_map(|s| Some((s.archive_max_time?, *s)))
        .max_by_key(|(t, _)| *t)?;
    Some(RecoveryWindow {
        earliest_backup: oldest.label.clone(),
        start,
        start_exact: true,
        latest_backup: newest.map(|b| b.label.clone()).unwrap_or_default(),
        end_segment: last.archive_max.clone().unwrap_or_default(),
        end,
        cut_at: None,
        segments_after_cut: 0,
        backups: sets.iter().map(|s| s.backup_count).sum(),
    })
}

/// The check's windows, one per stanza or server, with its name. A pgBackRest stanza judged per
/// repository has one window over all its repositories: a restore takes its backup from any
/// of them (`restore --set` searches each) and its WAL from each in turn (`archive-get`), so a
/// repository holding fewer backups does not narrow what can be restored.
#[must_use]
pub fn windows(obs: &BackupToolObs) -> Vec<(&str, RecoveryWindow)> {
    let mut groups: Vec<(&str, bool, Vec<&BackupSet>)> = Vec::new();
    for s in &obs.sets {
        let stanza = s
            .repository
            .and_then(|r| s.name.strip_suffix(&format!("/repo{r}")));
        match (
            stanza,
            groups
                .iter_mut()
                .find(|(n, per_repo, _)| *per_repo && Some(*n) == stanza),
        ) {
            (Some(_), Some((_, _, sets))) => sets.push(s),
            (Some(name), None) => groups.push((name, true, vec![s])),
            (None, _) => groups.push((&s.name, false, vec![s])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(name, _, sets)| Some((name, window_of(&sets)?)))
        .collect()
}

/// The narrowest window among the stanzas or servers of one check: the one its rollups (the
/// monthly review's narrowest window) and `/metrics` speak of.
#[must_use]
pub fn narrowest_window(obs: &BackupToolObs) -> Option<RecoveryWindow> {
    windows(obs)
        .into_iter()
        .map(|(_, w)| w)
        .min_by_key(|w| w.end - w.start)
}

fn describe(b: &ToolBackup) -> String {
    let mut s = format!("{} {}", b.kind, b.label);
    if let Some(age) = b.age_secs {
        s.push_str(&format!(" {} old", human::duration(age)));
    }
    if let Some(d) = b.duration_secs {
        s.push_str(&format!(", took {}", human::duration(d.max(0))));
    }
    s
}

fn set(s: &BackupSet, limits: &SetLimits) -> (Status, String) {
    let SetLimits {
        max_age,
        max_full_age,
        ..
    } = *limits;
    let name = &s.name;
    let mut problems = Vec::new();
    // Barman's status is its checks' verdict: the failing checks below say it better.
    let explained = s.status_message.is_none() && !s.failing_checks.is_empty();
    if s.status_code != 0 && !s.backup_running && !explained {
        let msg = s.status_message.as_deref().unwrap_or("status not ok");
        problems.push(format!("status {}: {msg}", s.status_code));
    }
    if !s.failing_checks.is_empty() {
        problems.push(format!("failing checks: {}", s.failing_checks.join(", ")));
    }
    if let Some(f) = &s.newest_failed {
        problems.push(format!("the latest backup {} failed", f.label));
    }
    // pgBackRest verifies page checksums as it copies: the backup is whole, the cluster is not.
    if let Some(b) = s.newest.as_ref().filter(|b| b.page_checksum_errors) {
        problems.push(format!(
            "the newest backup {} found pages whose checksum does not match: the cluster has \
             corrupted pages (`pgbackrest info --set {}` lists the files)",
            b.label, b.label
        ));
    }
    let too_old = |b: &ToolBackup, limit: Duration| {
        b.age_secs
            .is_some_and(|a| a > i64::try_from(limit.as_secs()).unwrap_or(i64::MAX))
    };
    match &s.newest {
        None => problems.push("no backup".to_string()),
        Some(b) if too_old(b, max_age) => problems.push(format!(
            "newest backup ({}) is older than {}",
            describe(b),
            human::duration(max_age.as_secs() as i64)
        )),
        Some(_) => {}
    }
    match &s.newest_full {
        None if s.newest.is_some() => problems.push("no full backup".to_string()),
        Some(b) if too_old(b, max_full_age) => problems.push(format!(
            "newest full backup ({}) is older than {}",
            describe(b),
            human::duration(max_full_age.as_secs() as i64)
        )),
        _ => {}
    }
    let running = if s.backup_running {
        " (a backup is running)"
    } else {
        ""
    };
    if !problems.is_empty() {
        return (
            Status::Critical,
            format!("{name}: {}{running}", problems.join(", ")),
        );
    }
    let warnings = judgements(s, limits);
    if !warnings.is_empty() {
        return (
            Status::Warning,
            format!("{name}: {}{running}", warnings.join(", ")),
        );
    }
    let mut text = format!("{name}: ");
    if let Some(b) = &s.newest {
        text.push_str(&format!("newest {}", describe(b)));
    }
    if let Some(f) = &s.newest_full
        && s.newest.as_ref().is_none_or(|n| n.label != f.label)
    {
        text.push_str(&format!("; newest {}", describe(f)));
    }
    if let (Some(a), Some(b)) = (&s.archive_min, &s.archive_max) {
        text.push_str(&format!("; WAL {a} to {b}"));
    }
    text.push_str(running);
    (Status::Ok, text)
}

/// What peers judge beyond freshness: runtime, size drop and redundancy of the full backups.
fn judgements(s: &BackupSet, l: &SetLimits) -> Vec<String> {
    let mut out = Vec::new();
    // A backup running longer than a full may take is stuck, or about to eat the next one.
    if let Some(secs) = s.backup_running_secs.filter(|_| s.backup_running)
        && u64::try_from(secs).is_ok_and(|d| d > l.max_duration.as_secs())
    {
        out.push(format!(
            "a backup has been running for {} (limit {}): is it stuck?",
            human::duration(secs),
            human::duration(l.max_duration.as_secs() as i64)
        ));
    }
    if let Some(f) = &s.newest_full {
        if let Some(d) = f.duration_secs
            && u64::try_from(d).is_ok_and(|d| d > l.max_duration.as_secs())
        {
            out.push(format!(
                "newest full backup {} took {} (limit {})",
                f.label,
                human::duration(d),
                human::duration(l.max_duration.as_secs() as i64)
            ));
        }
        if let Some(p) = &s.previous_full
            && p.size_bytes > 0
            && f.size_bytes > 0
            && (f.size_bytes as f64) < l.min_size_ratio * p.size_bytes as f64
        {
            out.push(format!(
                "newest full backup {} is {}, {:.0} % of the previous full {} ({}; limit {:.0} %)",
                f.label,
                human::bytes(f.size_bytes),
                100.0 * f.size_bytes as f64 / p.size_bytes as f64,
                p.label,
                human::bytes(p.size_bytes),
                100.0 * l.min_size_ratio
            ));
        }
    }
    // An older agent does not count fulls: its newest full is at least one.
    let kept = s.full_count.max(u64::from(s.newest_full.is_some()));
    if kept > 0 && kept < u64::from(l.min_full_backups) {
        out.push(format!(
            "{kept} full backup{} kept, fewer than {}",
            if kept == 1 { "" } else { "s" },
            l.min_full_backups
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(kind: &str, age_secs: i64) -> ToolBackup {
        ToolBackup {
            label: format!("L-{kind}"),
            kind: kind.into(),
            duration_secs: Some(90),
            age_secs: Some(age_secs),
            ..ToolBackup::default()
        }
    }

    #[test]
    fn repositories_of_a_stanza_share_one_window_other_stanzas_keep_theirs() {
        let at = |h: i64| chrono::DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap();
        let set = |name: &str, repo: Option<u32>, oldest_h: i64, newest_h: i64, end_h: i64| {
            let b = |label: &str, h: i64| ToolBackup {
                label: label.into(),
                kind: "full".into(),
                stop_time: Some(at(h)),
                ..ToolBackup::default()
            };
            BackupSet {
                name: name.into(),
                repository: repo,
                backup_count: 2,
                oldest: Some(b(&format!("{name}-old"), oldest_h)),
                newest: Some(b(&format!("{name}-new"), newest_h)),
                archive_max: Some(format!("{end_h:024}")),
                archive_max_time: Some(at(end_h)),
                ..BackupSet::default()
            }
        };
        let obs = BackupToolObs {
            sets: vec![
                set("main/repo1", Some(1), 0, 100, 120),
                set("main/repo2", Some(2), 90, 110, 125),
                set("other", None, 50, 60, 70),
            ],
            ..BackupToolObs::default()
        };
        let w = windows(&obs);
        let main = &w.iter().find(|(n, _)| *n == "main").unwrap().1;
        assert_eq!(
            (main.start, main.end, main.backups),
            (at(0), at(125), 4),
            "repository 1's oldest backup to repository 2's newest WAL"
        );
        assert_eq!(
            (main.earliest_backup.as_str(), main.latest_backup.as_str()),
            ("main/repo1-old", "main/repo2-new")
        );
        assert_eq!(main.end_segment, format!("{:024}", 125));
        assert_eq!(w.len(), 2);
        assert_eq!(narrowest_window(&obs).unwrap().start, at(50));
        // The narrowest is a young cluster's fresh window; each stanza's own is there too.
        let obs = BackupToolObs {
            sets: vec![
                set("stuck", None, 0, 50, 60),
                set("young", None, 100, 100, 130),
            ],
            ..BackupToolObs::default()
        };
        assert_eq!(narrowest_window(&obs).unwrap().end, at(130));
        let ends: Vec<_> = windows(&obs).iter().map(|(n, w)| (*n, w.end)).collect();
        assert_eq!(ends, [("stuck", at(60)), ("young", at(130))]);
        // In the verdict's details each stanza has its own status: "stuck"'s newest backup is
        // a month old (critical), "young"'s a minute (ok); the check's status is the worst.
        let mut obs = obs;
        obs.sets[1].newest = obs.sets[1].newest.clone().map(|mut b| {
            b.age_secs = Some(60);
            b
        });
        obs.sets[1].newest_full = obs.sets[1].newest.clone();
        obs.sets[1].full_count = 1;
        obs.sets[0].newest = obs.sets[0].newest.clone().map(|mut b| {
            b.age_secs = Some(30 * 86_400);
            b
        });
        obs.sets[0].newest_full = obs.sets[0].newest.clone();
        obs.sets[0].full_count = 1;
        let v = judge("pgBackRest", &obs);
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        let statuses: Vec<(&str, &str)> = v.details["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["set"].as_str().unwrap(), w["status"].as_str().unwrap()))
            .collect();
        assert_eq!(statuses, [("stuck", "critical"), ("young", "ok")]);
        // Every stanza, with or without a window, is listed with its status.
        obs.sets.push(BackupSet {
            name: "gone".into(),
            status_code: 1,
            ..BackupSet::default()
        });
        let v = judge("pgBackRest", &obs);
        let stanzas: Vec<(&str, &str)> = v.details["stanzas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["set"].as_str().unwrap(), w["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            stanzas,
            [("stuck", "critical"), ("young", "ok"), ("gone", "critical")]
        );
    }

    fn healthy() -> BackupToolObs {
        BackupToolObs {
            sets: vec![BackupSet {
                name: "main".into(),
                backup_count: 2,
                newest: Some(backup("incr", 3600)),
                newest_full: Some(backup("full", 3 * 86_400)),
                ..BackupSet::default()
            }],
            ..BackupToolObs::default()
        }
    }

    #[test]
    fn a_full_backup_slower_than_max_duration_is_a_warning() {
        let mut o = healthy();
        o.sets[0].newest_full.as_mut().unwrap().duration_secs = Some(5 * 3600);
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary
                .contains("newest full backup L-full took 5 h (limit 4 h)"),
            "{}",
            v.summary
        );
        o.expected_max_duration_secs = Some(6 * 3600);
        assert_eq!(judge("pgBackRest", &o).status, Status::Ok);
    }

    #[test]
    fn a_full_backup_half_the_size_of_the_previous_is_a_warning() {
        let mut o = healthy();
        let set = &mut o.sets[0];
        set.newest_full.as_mut().unwrap().size_bytes = 40 << 20;
        set.previous_full = Some(ToolBackup {
            label: "L-prev".into(),
            size_bytes: 100 << 20,
            ..backup("full", 10 * 86_400)
        });
        let v = judge("Barman", &o);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.contains(
                "newest full backup L-full is 40.0 MiB, 40 % of the previous full L-prev (100.0 MiB; limit 50 %)"
            ),
            "{}",
            v.summary
        );
        o.expected_min_size_ratio = Some(0.3);
        assert_eq!(judge("Barman", &o).status, Status::Ok);
    }

    #[test]
    fn fewer_full_backups_than_min_full_backups_is_a_warning() {
        let mut o = healthy();
        o.sets[0].full_count = 2;
        assert_eq!(judge("pgBackRest", &o).status, Status::Ok);
        o.expected_min_full_backups = Some(3);
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.contains("2 full backups kept, fewer than 3"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_backup_running_longer_than_max_duration_is_a_warning() {
        let mut o = healthy();
        o.sets[0].backup_running = true;
        o.sets[0].backup_running_secs = Some(3 * 3600);
        assert_eq!(judge("pgBackRest", &o).status, Status::Ok);
        o.sets[0].backup_running_secs = Some(5 * 3600);
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.contains(
                "a backup has been running for 5 h (limit 4 h): is it stuck? (a backup is running)"
            ),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_pgbackrest_too_old_for_the_server_is_named() {
        assert_eq!(pgbackrest_max_major("2.45"), Some(15));
        assert_eq!(pgbackrest_max_major("2.46"), Some(16));
        assert_eq!(pgbackrest_max_major("2.55.0"), Some(18));
        assert_eq!(pgbackrest_max_major("2.59.1"), Some(19));
        assert_eq!(pgbackrest_max_major("2.38"), None, "older: nothing claimed");
        assert_eq!(pgbackrest_max_major("2.60"), None, "newer: nothing claimed");
        assert_eq!(pgbackrest_max_major("x"), None);

        let mut o = healthy();
        o.tool_version = Some("2.45".into());
        o.server_major = Some(15);
        assert_eq!(judge("pgBackRest", &o).status, Status::Ok);
        o.server_major = Some(16);
        o.sets.clear();
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.starts_with(
                "pgBackRest 2.45 does not support PostgreSQL 16 (it supports up to 15): no backup \
                 of this server can be taken; install pgBackRest 2.46 or newer; "
            ),
            "{}",
            v.summary
        );
        assert!(v.procedure.is_some());
        // Barman's refusal is its own `check` (pg_basebackup compatible), not this table.
        assert!(!judge("Barman", &o).summary.contains("does not support"));
        // A standby leaves it to the primary's probe, which says it.
        o.on_standby = true;
        assert_eq!(judge("pgBackRest", &o).status, Status::Ok);
    }

    #[test]
    fn on_a_standby_the_primary_judges_and_an_unknown_role_is_said() {
        let mut o = healthy();
        o.sets[0].newest = Some(backup("incr", 3 * 86_400));
        assert_eq!(judge("pgBackRest", &o).status, Status::Critical);
        o.on_standby = true;
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert_eq!(
            v.summary,
            "on a standby: the primary's probe judges these pgBackRest backups (main)"
        );
        o.on_standby = false;
        o.role_error = Some("wal.main: cannot connect".into());
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.ends_with(
                "; judged here, the server's role is unknown (wal.main: cannot connect)"
            ),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_critical_finding_outranks_the_warnings() {
        let mut o = healthy();
        o.sets[0].newest_full = Some(ToolBackup {
            duration_secs: Some(5 * 3600),
            ..backup("full", 8 * 86_400)
        });
        assert_eq!(judge("pgBackRest", &o).status, Status::Critical);
    }

    #[test]
    fn recent_incremental_and_weekly_full_are_ok() {
        let v = judge("pgBackRest", &healthy());
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("main: newest incr L-incr 60 min old, took 90 s"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn full_older_than_a_week_is_critical_even_with_fresh_incrementals() {
        let mut o = healthy();
        o.sets[0].newest_full = Some(backup("full", 8 * 86_400));
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("newest full backup (full L-full 8.0 d old"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn tool_status_and_failing_checks_are_critical_with_their_words() {
        let mut o = healthy();
        o.sets[0].status_code = 2;
        o.sets[0].status_message = Some("no valid backups".into());
        o.sets[0].failing_checks =
            vec!["wal_archive: please make sure WAL shipping is setup".into()];
        let v = judge("Barman", &o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.contains("status 2: no valid backups"),
            "{}",
            v.summary
        );
        assert!(
            v.summary.contains("failing checks: wal_archive"),
            "{}",
            v.summary
        );
        assert_eq!(v.procedure, Some(procedure::BACKUP));
    }

    #[test]
    fn running_backup_is_said_not_alarmed() {
        let mut o = healthy();
        o.sets[0].status_code = 99;
        o.sets[0].backup_running = true;
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(
            v.summary.ends_with("(a backup is running)"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn failed_latest_attempt_and_no_backup_are_critical() {
        let mut o = healthy();
        o.sets[0].newest_failed = Some(backup("full", 60));
        assert_eq!(judge("Barman", &o).status, Status::Critical);
        o.sets[0].newest = None;
        o.sets[0].newest_full = None;
        o.sets[0].newest_failed = None;
        assert!(judge("Barman", &o).summary.contains("main: no backup"));
    }

    #[test]
    fn a_backup_that_found_bad_page_checksums_is_critical_but_counts() {
        let mut o = healthy();
        let newest = o.sets[0].newest.as_mut().unwrap();
        newest.page_checksum_errors = true;
        let label = newest.label.clone();
        let v = judge("pgBackRest", &o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.contains(&format!(
                "the newest backup {label} found pages whose checksum does not match"
            )),
            "{}",
            v.summary
        );
        // It is a backup all the same: not "failed", not missing, not too old.
        assert!(!v.summary.contains("failed"), "{}", v.summary);
        assert!(!v.summary.contains("older than"), "{}", v.summary);
    }

    #[test]
    fn a_tool_that_cannot_run_is_unknown() {
        let o = BackupToolObs {
            error: Some("pgbackrest: No such file or directory".into()),
            ..BackupToolObs::default()
        };
        assert_eq!(judge("pgBackRest", &o).status, Status::Unknown);
    }
}
