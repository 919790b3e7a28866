//! WAL archiving (docs/checks.md R13–R19; the comments below cite its old names A1–A8).
//!
//! Order of judgement: role (a standby that does not archive itself is not applicable), then
//! disabled archiving, then failure (A1), then delay (A3), then recovered failures (A2).
//!
//! Archive delay is the age of the oldest *pending* segment (`.ready` file), measured on the
//! database clock. It is deliberately not the age of `last_archived_time`: a server with
//! `archive_timeout = 0` and no writes archives nothing for hours while nothing is waiting,
//! and that is healthy (A3, A7). A slow or hung `archive_command` never updates
//! `last_failed_time`, so only the pending age catches it (A4).

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::{PendingSource, WAL_SEGMENT_HEADER_BYTES, WalObs, parse_lsn};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecoveredFailurePolicy {
    /// Failures that recovered between two probes are recorded in the summary only.
    #[default]
    Record,
    /// ... and make the check a warning.
    Warn,
}

/// The limits of the WAL archiving check (`wal.<name>`, `[thresholds.wal]`); the archive
/// directory's are [`crate::ArchiveDirLimits`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalLimits {
    /// Oldest pending segment older than this is critical (procedure: 15 min).
    #[serde(serialize_with = "ser_secs")]
    pub max_delay: Duration,
    /// More pending segments than this is a warning (off by default).
    pub max_pending: Option<u64>,
    /// Hosts expected to archive: disabled archiving is critical there, informational elsewhere.
    pub expect_archiving: bool,
    pub on_recovered_failure: RecoveredFailurePolicy,
    /// Data at risk (committed work in no archive) older than this is critical (15 min, the
    /// procedure's archive delay).
    #[serde(serialize_with = "ser_secs")]
    pub max_data_at_risk: Duration,
    /// ... and older than this a warning (off by default).
    #[serde(serialize_with = "ser_opt_secs")]
    pub warn_data_at_risk: Option<Duration>,
    /// A base backup the server has been sending for longer is a warning (4 h, as a backup
    /// tool's `max_duration`).
    #[serde(serialize_with = "ser_secs")]
    pub max_base_backup_duration: Duration,
}

impl Default for WalLimits {
    fn default() -> Self {
        WalLimits {
            max_delay: Duration::from_secs(15 * 60),
            max_pending: None,
            expect_archiving: true,
            on_recovered_failure: RecoveredFailurePolicy::Record,
            max_data_at_risk: Duration::from_secs(15 * 60),
            warn_data_at_risk: None,
            max_base_backup_duration: Duration::from_secs(4 * 3600),
        }
    }
}

/// Limits are shown in whole seconds (`config check`, the API's details), not as
/// `{secs, nanos}`; shared by every rule's limits.
pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

pub(crate) fn ser_opt_secs<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

/// Committed work a crash of this server would lose now (docs/checks.md R31): its age, and
/// where the oldest of it waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataAtRisk {
    /// 0: nothing at risk.
    pub secs: i64,
    /// The oldest WAL no archive holds: a `.ready` segment or the current segment.
    pub segment: Option<String>,
    /// `true` when the oldest is the current segment, which no switch has handed on yet.
    pub unswitched: bool,
}

/// The archive delay as a measure (rollups, `/metrics`): the oldest waiting segment's age, 0
/// when none waits; `None` when the waiting list cannot be read, or a segment waits of unknown
/// age (estimated from WAL positions without a date), never a 0 that would read as "fine".
#[must_use]
pub fn archive_delay_secs(w: &WalObs) -> Option<i64> {
    match w.pending_source {
        PendingSource::ArchiveStatusdir if waiting(w) > 0 => {
            Some(w.oldest_ready_age_secs.unwrap_or(0).max(0))
        }
        PendingSource::ArchiveStatusdir => Some(0),
        PendingSource::WalPositions if w.ready_segments > 0 => {
            w.oldest_ready_age_secs.map(|a| a.max(0))
        }
        PendingSource::WalPositions => Some(0),
        PendingSource::Unavailable => None,
    }
}

/// Data at risk, or `None` where it does not apply (a standby, archiving disabled) or cannot
/// be known (the pending list is unreadable). A standby's own backlog, even one that archives
/// (`archive_mode = always`, judged by the archive delay), is not what a crash of the primary
/// would lose: the standby still holds that WAL.
///
/// The oldest WAL not archived is the oldest `.ready` segment when there is one (its age is
/// the archive delay), else the first write transaction in the current segment, dated by the
/// agent from sample to sample. It is never the age of `last_archived_time`: a server that
/// wrote nothing since has nothing at risk however old that is.
pub fn data_at_risk(obs: &WalObs) -> Option<DataAtRisk> {
    if obs.in_recovery || archiving_disabled(obs).is_some() {
        return None;
    }
    if obs.pending_source == PendingSource::Unavailable {
        return None;
    }
    if waiting(obs) > 0 && obs.oldest_ready_age_secs.is_none() {
        return None; // segments wait, of unknown age (an estimate from WAL positions)
    }
    let pending = (waiting(obs) > 0).then(|| DataAtRisk {
        secs: obs.oldest_ready_age_secs.unwrap_or(0).max(0),
        segment: obs.oldest_ready_name.clone(),
        unswitched: false,
    });
    let current = obs
        .unswitched_writes_since
        .zip(obs.db_now)
        .map(|(since, now)| DataAtRisk {
            secs: (now - since).num_seconds().max(0),
            segment: obs.current_wal_file.clone(),
            unswitched: true,
        });
    Some(match (pending, current) {
        (Some(p), Some(c)) if c.secs > p.secs => c,
        (Some(p), _) => p,
        (None, Some(c)) => c,
        (None, None) => DataAtRisk {
            secs: 0,
            segment: None,
            unswitched: false,
        },
    })
}

/// The verdict on data at risk alone, when it passes a limit.
fn judge_risk(obs: &WalObs, risk: &DataAtRisk, l: &WalLimits) -> Option<(Status, String)> {
    let status = if risk.secs > secs_i64(l.max_data_at_risk) {
        (Status::Critical, l.max_data_at_risk)
    } else {
        match l.warn_data_at_risk {
            Some(w) if risk.secs > secs_i64(w) => (Status::Warning, w),
            _ => return None,
        }
    };
    let segment = risk.segment.as_deref().unwrap_or("?");
    let lead = format!(
        "data at risk {} (limit {})",
        human::duration(risk.secs),
        human::duration(secs_i64(status.1))
    );
    let why = if risk.unswitched {
        let switch = if obs.archive_timeout_secs == 0 {
            "archive_timeout = 0: no switch hands it to the archiver before it fills".to_string()
        } else {
            format!(
                "archive_timeout = {}",
                human::duration(obs.archive_timeout_secs)
            )
        };
        format!(
            "write transactions since {} are in the current segment {segment}, which no archive holds yet ({switch})",
            at(obs.unswitched_writes_since)
        )
    } else {
        format!("the oldest WAL not archived is {segment}, waiting to be archived")
    };
    Some((status.0, format!("{lead}: {why}")))
}

/// A1: failing ⇔ a failure newer than the last success (ties are not failing, as in Barman).
pub fn is_failing(obs: &WalObs) -> bool {
    match (obs.last_failed_time, obs.last_archived_time) {
        (Some(_), None) => true,
        (Some(failed), Some(archived)) => failed > archived,
        _ => false,
    }
}

fn archiving_disabled(obs: &WalObs) -> Option<String> {
    if obs.archive_mode == "off" {
        return Some("archive_mode = off".into());
    }
    let command = obs.archive_command.trim();
    let no_command = command.is_empty() || command == "(disabled)";
    if no_command && obs.archive_library.is_empty() {
        return Some("archive_command is empty and no archive_library is set".into());
    }
    // 15 lets the library win; from 16 the archiver refuses to start with both and archives
    // nothing, while pg_stat_archiver's failure count never moves.
    if !no_command && !obs.archive_library.is_empty() && obs.server_version_num >= 160_000 {
        return Some(format!(
            "archive_command and archive_library ({}) are both set, which PostgreSQL 16 and \
             later refuse: the archiver archives nothing",
            obs.archive_library
        ));
    }
    None
}

/// Failures since the previous probe that already recovered (A2). Counters restart from 0
/// when the statistics were reset, a counter went down, or the node changed role.
pub fn recovered_failures(obs: &WalObs, prev: Option<&WalObs>) -> i64 {
    if is_failing(obs) {
        return 0;
    }
    let Some(prev) = prev else { return 0 };
    if prev.in_recovery != obs.in_recovery {
        return 0;
    }
    let reset = prev.stats_reset != obs.stats_reset || obs.failed_count < prev.failed_count;
    let baseline = if reset { 0 } else { prev.failed_count };
    obs.failed_count.saturating_sub(baseline).max(0)
}

/// Archive attempts between the previous sample and this one, and their success rate: the
/// monthly review's "archive success rate" over time, from successive samples. Counters that
/// went down or a changed `stats_reset` restart from 0 (A2); a role change has no rate.
pub fn since_previous(obs: &WalObs, prev: Option<&WalObs>) -> serde_json::Value {
    let Some(prev) = prev.filter(|p| p.in_recovery == obs.in_recovery) else {
        return serde_json::Value::Null;
    };
    let reset = prev.stats_reset != obs.stats_reset
        || obs.failed_count < prev.failed_count
        || obs.archived_count < prev.archived_count;
    let (a0, f0) = if reset {
        (0, 0)
    } else {
        (prev.archived_count, prev.failed_count)
    };
    let archived = obs.archived_count.saturating_sub(a0).max(0);
    let failed = obs.failed_count.saturating_sub(f0).max(0);
    let attempts = archived.saturating_add(failed);
    json!({
        "archived": archived,
        "failed": failed,
        "success_rate": (attempts > 0).then(|| archived as f64 / attempts as f64),
    })
}

/// Segments and history files waiting. Counters come from the network: saturate, never
/// overflow.
fn waiting(obs: &WalObs) -> i64 {
    obs.ready_segments
        .max(0)
        .saturating_add(obs.ready_history.max(0))
}

/// Bytes of WAL waiting to be archived (segments × segment size).
fn pending_bytes(obs: &WalObs) -> u64 {
    (obs.ready_segments.max(0) as u64).saturating_mul(obs.wal_segment_size_bytes.max(0) as u64)
}

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub fn archiving(obs: &WalObs, prev: Option<&WalObs>, l: &WalLimits) -> Verdict {
    let mut v = archive_verdict(obs, prev, l);
    if let serde_json::Value::Object(d) = &mut v.details {
        d.insert(
            "base_backups_running".into(),
            json!(obs.base_backups_running),
        );
    }
    // A base backup sent for longer than a backup may take: stuck, or about to overlap the
    // next one. Said whatever the archiving verdict; a warning where that was ok.
    let stuck: Vec<String> = obs
        .base_backups_running
        .iter()
        .filter(|b| {
            u64::try_from(b.running_secs).is_ok_and(|s| s > l.max_base_backup_duration.as_secs())
        })
        .map(|b| {
            format!(
                "base backup {} (pid {}, {}) running for {} (limit {}): is it stuck?",
                b.application_name.as_deref().unwrap_or("without a name"),
                b.pid,
                b.phase,
                human::duration(b.running_secs),
                human::duration(l.max_base_backup_duration.as_secs() as i64)
            )
        })
        .collect();
    if !stuck.is_empty() {
        if v.status == Status::Ok {
            v.status = Status::Warning;
            v.procedure = Some(procedure::BACKUP);
        }
        v.summary = format!("{}; {}", v.summary, stuck.join("; "));
    }
    v
}

fn archive_verdict(obs: &WalObs, prev: Option<&WalObs>, l: &WalLimits) -> Verdict {
    let risk = data_at_risk(obs);
    let details = json!({
        "archive_mode": obs.archive_mode,
        "in_recovery": obs.in_recovery,
        "archived_count": obs.archived_count,
        "failed_count": obs.failed_count,
        "last_archived_wal": obs.last_archived_wal,
        "last_archived_time": obs.last_archived_time,
        "last_failed_wal": obs.last_failed_wal,
        "last_failed_time": obs.last_failed_time,
        "ready_segments": obs.ready_segments,
        "ready_history": obs.ready_history,
        // `.partial` and `.backup` files waiting (A3: reported apart from segments).
        "ready_other": obs.ready_other,
        "oldest_ready_name": obs.oldest_ready_name,
        "archive_delay_secs": archive_delay_secs(obs),
        "pending_bytes": pending_bytes(obs),
        "max_delay_secs": l.max_delay.as_secs(),
        "recovered_failures": recovered_failures(obs, prev),
        "last_archive_latency_ms": obs.last_archive_latency_ms,
        "since_previous": since_previous(obs, prev),
        "data_at_risk_secs": risk.as_ref().map(|r| r.secs),
        "data_at_risk_segment": risk.as_ref().and_then(|r| r.segment.clone()),
        "data_at_risk_unswitched": risk.as_ref().map(|r| r.unswitched),
        "unswitched_writes_since": obs.unswitched_writes_since,
        "unswitched_writes_note": obs.unswitched_writes_note,
        "max_data_at_risk_secs": l.max_data_at_risk.as_secs(),
        "system_identifier": obs.system_identifier,
    });
    let verdict = |status: Status, summary: String| {
        Verdict::new(status, summary)
            .with_details(details.clone())
            .with_procedure(procedure::WAL)
    };

    // A6: a standby with archive_mode = on does not archive; its pg_stat_archiver is stale.
    if obs.in_recovery && obs.archive_mode != "always" {
        return verdict(
            Status::Ok,
            "not applicable: standby (archiving is done by the primary)".into(),
        );
    }
    // A5
    if let Some(why) = archiving_disabled(obs) {
        let status = if l.expect_archiving {
            Status::Critical
        } else {
            Status::Ok
        };
        return verdict(status, format!("archiving disabled: {why}"));
    }
    // A1
    if is_failing(obs) {
        let wal = obs.last_failed_wal.as_deref().unwrap_or("unknown segment");
        let since = match (obs.last_failed_time, obs.last_archived_time) {
            (Some(f), Some(a)) => format!(
                "failing for at least {} (last success {})",
                human::duration((f - a).num_seconds()),
                at(Some(a))
            ),
            _ => "no segment was ever archived successfully".to_string(),
        };
        return verdict(
            Status::Critical,
            format!(
                "archiving is failing: {wal} failed at {}, {} failed attempts in total; {since}",
                at(obs.last_failed_time),
                obs.failed_count
            ),
        );
    }
    // A3
    let waiting = waiting(obs);
    // Without the waiting list, or (A4 needs the oldest segment's age) with an estimate whose
    // segments wait without one, nothing says the archiver is fine. An agent that dates an
    // estimate's oldest segment itself never sends the second.
    let cannot_judge = match obs.pending_source {
        PendingSource::Unavailable => Some(("pending WAL cannot be read", String::new())),
        PendingSource::WalPositions if pending_age(obs).is_none() => Some((
            "the oldest waiting segment's age cannot be read",
            format!("{waiting} files wait to be archived and the oldest one's age is unknown: "),
        )),
        _ => None,
    };
    if let Some((unsaid, lead)) = cannot_judge {
        let note = obs.pending_note.as_deref().unwrap_or(unsaid);
        return verdict(
            Status::Unknown,
            format!("archive delay cannot be judged: {lead}{note}"),
        );
    }
    if let Some(age) = pending_age(obs)
        && age > secs_i64(l.max_delay)
    {
        let name = obs.oldest_ready_name.as_deref().unwrap_or("?");
        // A4: the same oldest file as last time means the archiver made no progress at all.
        let stuck = prev.is_some_and(|p| p.oldest_ready_name.as_deref() == Some(name));
        let lead = if stuck {
            format!("archiver made no progress on {name}")
        } else {
            format!("oldest segment waiting to be archived is {name}")
        };
        return verdict(
            Status::Critical,
            format!(
                "archive delay {} (limit {}): {lead}; {waiting} files waiting ({})",
                human::duration(age),
                human::duration(secs_i64(l.max_delay)),
                human::bytes(pending_bytes(obs))
            ),
        );
    }
    if let Some(max) = l.max_pending
        && obs.ready_segments.max(0) as u64 > max
    {
        return verdict(
            Status::Warning,
            format!(
                "{} segments waiting to be archived (limit {max})",
                obs.ready_segments
            ),
        );
    }
    // Data at risk: the committed work a crash would lose, whichever segment holds it.
    if let Some((status, summary)) = risk.as_ref().and_then(|r| judge_risk(obs, r, l)) {
        return verdict(status, summary);
    }
    // A2
    let recovered = recovered_failures(obs, prev);
    let mut summary = match pending_age(obs) {
        _ if waiting == 0 => "archiving ok: nothing waiting".to_string(),
        Some(age) => format!(
            "archiving ok: {waiting} files waiting, oldest {}",
            human::duration(age)
        ),
        None => format!("archiving ok: {waiting} files waiting, oldest of unknown age"),
    };
    if obs.pending_source == PendingSource::WalPositions {
        summary.push_str(
            " (estimated from WAL positions: pg_ls_archive_statusdir() missing or not permitted)",
        );
    }
    if let Some(r) = risk.as_ref().filter(|r| r.unswitched && r.secs > 0) {
        summary.push_str(&format!(
            "; data at risk {} (written since {})",
            human::duration(r.secs),
            at(obs.unswitched_writes_since)
        ));
    }
    // A7: the age of the last archived segment is information, never a reason to alert.
    if let (Some(wal), Some(t)) = (&obs.last_archived_wal, obs.last_archived_time) {
        summary.push_str(&format!("; last archived {wal} at {}", at(Some(t))));
    }
    if recovered > 0 {
        summary.push_str(&format!(
            "; {recovered} failed attempts since the previous check, recovered"
        ));
        if l.on_recovered_failure == RecoveredFailurePolicy::Warn {
            return verdict(Status::Warning, summary);
        }
    }
    if let Some(advice) = exposure(obs, l) {
        return verdict(Status::Warning, format!("{advice}; {summary}"));
    }
    verdict(Status::Ok, summary)
}

/// A8, advisory and opt-in (`[[wal]] exposure_advisory`): with `archive_timeout` off (or
/// longer than the delay limit) WAL written since the last segment switch reaches no archive
/// until the segment fills. Reported when such WAL exists and the last switch (taken as the
/// last successful archive, which follows it) is older than the delay limit, or unknown. The
/// bytes are the current position's offset in its segment, past the 40-byte page header.
fn exposure(obs: &WalObs, l: &WalLimits) -> Option<String> {
    if !obs.exposure_advisory || obs.in_recovery {
        return None;
    }
    let timeout = obs.archive_timeout_secs;
    if timeout != 0 && timeout <= secs_i64(l.max_delay) {
        return None;
    }
    let seg = u64::try_from(obs.wal_segment_size_bytes)
        .ok()
        .filter(|s| *s > 0)?;
    let lsn = obs.current_lsn.as_deref().and_then(parse_lsn)?;
    let bytes = lsn % seg;
    if bytes <= WAL_SEGMENT_HEADER_BYTES {
        return None;
    }
    let since = match (obs.last_archived_time, obs.db_now) {
        (Some(a), Some(now)) => {
            let age = (now - a).num_seconds();
            if age <= secs_i64(l.max_delay) {
                return None;
            }
            format!(
                "written since the last segment switch (about {} ago)",
                human::duration(age)
            )
        }
        _ => "written since the last segment switch (nothing archived yet)".to_string(),
    };
    let setting = if timeout == 0 {
        "archive_timeout = 0".to_string()
    } else {
        format!("archive_timeout = {}", human::duration(timeout))
    };
    Some(format!(
        "advisory: {} of WAL {since} are not archivable yet ({setting}): the data-loss window if this server is lost",
        human::bytes(bytes)
    ))
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn pending_age(obs: &WalObs) -> Option<i64> {
    if waiting(obs) > 0 {
        obs.oldest_ready_age_secs
    } else {
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap())
    }

    fn healthy() -> WalObs {
        WalObs {
            server_version_num: 150019,
            archive_mode: "on".into(),
            archive_command: "test ! -f /archive/%f && cp %p /archive/%f".into(),
            archive_timeout_secs: 0,
            wal_segment_size_bytes: 16 << 20,
            archived_count: 10,
            last_archived_wal: Some("000000010000000000000009".into()),
            last_archived_time: t(8, 0),
            db_now: t(12, 0),
            pending_source: PendingSource::ArchiveStatusdir,
            ..Default::default()
        }
    }

    fn limits() -> WalLimits {
        WalLimits::default()
    }

    #[test]
    fn a_base_backup_running_longer_than_its_limit_is_named() {
        let running = |secs| backwatch_proto::model::RunningBaseBackup {
            pid: 4242,
            application_name: Some("pg_basebackup".into()),
            phase: "streaming database files".into(),
            running_secs: secs,
        };
        let obs = WalObs {
            base_backups_running: vec![running(3600)],
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
        let obs = WalObs {
            base_backups_running: vec![running(5 * 3600)],
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.ends_with(
                "; base backup pg_basebackup (pid 4242, streaming database files) running for 5 h \
                 (limit 4 h): is it stuck?"
            ),
            "{}",
            v.summary
        );
        assert_eq!(v.procedure, Some(procedure::BACKUP));
        assert_eq!(v.details["base_backups_running"][0]["pid"], 4242);
    }

    #[test]
    fn idle_primary_with_hours_old_last_archive_is_ok() {
        let v = archiving(&healthy(), None, &limits());
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert!(v.summary.contains("nothing waiting"));
    }

    #[test]
    fn an_idle_primary_has_nothing_at_risk_however_old_its_last_archive() {
        // Four hours since the last archive, a dirty position (a checkpoint), no writes.
        let obs = WalObs {
            current_lsn: Some("0/A000100".into()),
            current_wal_file: Some("00000001000000000000000A".into()),
            ..healthy()
        };
        let risk = data_at_risk(&obs).unwrap();
        assert_eq!(risk.secs, 0);
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
        assert_eq!(v.details["data_at_risk_secs"], 0);
    }

    #[test]
    fn write_transactions_in_an_unswitched_segment_put_data_at_risk() {
        let obs = WalObs {
            current_lsn: Some("0/A012345".into()),
            current_wal_file: Some("00000001000000000000000A".into()),
            unswitched_writes_since: t(11, 50),
            ..healthy()
        };
        let ok = archiving(&obs, None, &limits());
        assert_eq!(ok.status, Status::Ok, "{}", ok.summary);
        assert!(
            ok.summary.contains("; data at risk 10 min"),
            "{}",
            ok.summary
        );
        let old = WalObs {
            unswitched_writes_since: t(11, 0),
            ..obs.clone()
        };
        let v = archiving(&old, None, &limits());
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("data at risk 60 min (limit 15 min): write transactions since 2026-")
                && v.summary
                    .contains("current segment 00000001000000000000000A")
                && v.summary.contains("archive_timeout = 0: no switch"),
            "{}",
            v.summary
        );
        assert_eq!(v.details["data_at_risk_secs"], 3600);
        let warn = WalLimits {
            warn_data_at_risk: Some(Duration::from_secs(300)),
            ..limits()
        };
        assert_eq!(archiving(&obs, None, &warn).status, Status::Warning);
    }

    #[test]
    fn data_at_risk_is_the_oldest_of_pending_and_unswitched_and_absent_on_a_standby() {
        let obs = WalObs {
            ready_segments: 2,
            oldest_ready_name: Some("00000001000000000000000A".into()),
            oldest_ready_age_secs: Some(300),
            current_wal_file: Some("00000001000000000000000C".into()),
            unswitched_writes_since: t(11, 58),
            ..healthy()
        };
        let r = data_at_risk(&obs).unwrap();
        assert_eq!((r.secs, r.unswitched), (300, false));
        assert_eq!(r.segment.as_deref(), Some("00000001000000000000000A"));
        let standby = WalObs {
            in_recovery: true,
            ..obs.clone()
        };
        assert_eq!(data_at_risk(&standby), None);
        let archiving_standby = WalObs {
            in_recovery: true,
            archive_mode: "always".into(),
            ..obs.clone()
        };
        assert_eq!(data_at_risk(&archiving_standby), None);
        let unreadable = WalObs {
            pending_source: PendingSource::Unavailable,
            ..obs
        };
        assert_eq!(data_at_risk(&unreadable), None);
    }

    #[test]
    fn the_archive_delay_measure_is_never_a_zero_it_does_not_know() {
        let listed = WalObs {
            ready_segments: 0,
            oldest_ready_age_secs: None,
            ..healthy()
        };
        assert_eq!(archive_delay_secs(&listed), Some(0));
        let undated = WalObs {
            pending_source: PendingSource::WalPositions,
            ready_segments: 3,
            oldest_ready_age_secs: None,
            ..healthy()
        };
        assert_eq!(archive_delay_secs(&undated), None);
        let unreadable = WalObs {
            pending_source: PendingSource::Unavailable,
            ..healthy()
        };
        assert_eq!(archive_delay_secs(&unreadable), None);
    }

    #[test]
    fn never_archived_fresh_cluster_is_ok() {
        let obs = WalObs {
            archived_count: 0,
            last_archived_wal: None,
            last_archived_time: None,
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
    }

    #[test]
    fn failure_newer_than_last_success_is_critical() {
        let obs = WalObs {
            failed_count: 3,
            last_failed_wal: Some("00000001000000000000000A".into()),
            last_failed_time: t(11, 0),
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.contains("00000001000000000000000A"),
            "{}",
            v.summary
        );
        assert!(v.summary.contains("3 failed attempts"), "{}", v.summary);
        assert!(
            v.summary.contains("failing for at least 3 h"),
            "{}",
            v.summary
        );
        assert_eq!(v.procedure, Some(procedure::WAL));
    }

    #[test]
    fn failure_on_a_never_archived_cluster_is_critical() {
        let obs = WalObs {
            archived_count: 0,
            last_archived_wal: None,
            last_archived_time: None,
            failed_count: 1,
            last_failed_wal: Some("000000010000000000000001".into()),
            last_failed_time: t(11, 0),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Critical);
    }

    #[test]
    fn failure_then_success_clears() {
        let obs = WalObs {
            failed_count: 3,
            last_failed_time: t(7, 0),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
    }

    #[test]
    fn equal_failure_and_success_times_are_not_failing() {
        let obs = WalObs {
            failed_count: 1,
            last_failed_time: t(8, 0),
            ..healthy()
        };
        assert!(!is_failing(&obs));
    }

    #[test]
    fn pending_segment_older_than_15_minutes_is_critical() {
        let obs = WalObs {
            ready_segments: 2,
            oldest_ready_name: Some("00000001000000000000000A".into()),
            oldest_ready_age_secs: Some(20 * 60),
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.contains("archive delay 20 min (limit 15 min)"),
            "{}",
            v.summary
        );
        assert!(v.summary.contains("32.0 MiB"), "{}", v.summary);
    }

    #[test]
    fn pending_segment_younger_than_the_limit_is_ok() {
        let obs = WalObs {
            ready_segments: 1,
            oldest_ready_name: Some("00000001000000000000000A".into()),
            oldest_ready_age_secs: Some(60),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
    }

    #[test]
    fn stuck_archiver_without_failures_says_no_progress() {
        let obs = WalObs {
            ready_segments: 1,
            oldest_ready_name: Some("00000001000000000000000A".into()),
            oldest_ready_age_secs: Some(40 * 60),
            ..healthy()
        };
        let v = archiving(&obs, Some(&obs.clone()), &limits());
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("made no progress on 00000001000000000000000A")
        );
    }

    #[test]
    fn pending_history_file_counts_toward_delay() {
        let obs = WalObs {
            ready_history: 1,
            oldest_ready_name: Some("00000002.history".into()),
            oldest_ready_age_secs: Some(30 * 60),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Critical);
    }

    #[test]
    fn standby_ignores_stale_archiver_stats() {
        let obs = WalObs {
            in_recovery: true,
            failed_count: 5,
            last_failed_time: t(11, 0),
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Ok);
        assert!(v.summary.contains("not applicable: standby"));
    }

    #[test]
    fn standby_with_archive_mode_always_is_judged() {
        let obs = WalObs {
            in_recovery: true,
            archive_mode: "always".into(),
            failed_count: 5,
            last_failed_time: t(11, 0),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Critical);
    }

    #[test]
    fn disabled_archiving_is_critical_when_expected_and_informational_otherwise() {
        let obs = WalObs {
            archive_mode: "off".into(),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Critical);
        let relaxed = WalLimits {
            expect_archiving: false,
            ..limits()
        };
        let v = archiving(&obs, None, &relaxed);
        assert_eq!(v.status, Status::Ok);
        assert!(v.summary.contains("archiving disabled"));
    }

    #[test]
    fn empty_archive_command_counts_as_disabled() {
        let obs = WalObs {
            archive_command: "(disabled)".into(),
            ..healthy()
        };
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Critical);
        let lib = WalObs {
            archive_command: String::new(),
            archive_library: "basic_archive".into(),
            ..healthy()
        };
        assert_eq!(archiving(&lib, None, &limits()).status, Status::Ok);
        // Both: PostgreSQL 15 uses the library, 16 and later archive nothing.
        let both = |server_version_num| WalObs {
            server_version_num,
            archive_library: "basic_archive".into(),
            ..healthy()
        };
        assert_eq!(
            archiving(&both(150_019), None, &limits()).status,
            Status::Ok
        );
        let v = archiving(&both(160_004), None, &limits());
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("archive_command and archive_library (basic_archive) are both set"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn an_estimate_whose_oldest_segment_has_no_age_cannot_be_judged() {
        let obs = WalObs {
            pending_source: PendingSource::WalPositions,
            ready_segments: 40,
            oldest_ready_name: Some("00000001000000000000000A".into()),
            oldest_ready_age_secs: None,
            pending_note: Some("pg_stat_file() not permitted".into()),
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Unknown, "{}", v.summary);
        assert!(
            v.summary.starts_with(
                "archive delay cannot be judged: 40 files wait to be archived and the oldest \
                 one's age is unknown: pg_stat_file() not permitted"
            ),
            "{}",
            v.summary
        );
        // Dated (by the agent), the delay is judged as usual.
        let dated = WalObs {
            oldest_ready_age_secs: Some(20 * 60),
            ..obs
        };
        assert_eq!(archiving(&dated, None, &limits()).status, Status::Critical);
    }

    #[test]
    fn recovered_failures_between_probes_are_recorded() {
        let prev = healthy();
        let now = WalObs {
            failed_count: 2,
            last_failed_time: t(9, 0),
            last_archived_time: t(10, 0),
            ..healthy()
        };
        let v = archiving(&now, Some(&prev), &limits());
        assert_eq!(v.status, Status::Ok);
        assert!(
            v.summary
                .contains("2 failed attempts since the previous check, recovered")
        );
        assert_eq!(v.details["recovered_failures"], 2);
        let warn = WalLimits {
            on_recovered_failure: RecoveredFailurePolicy::Warn,
            ..limits()
        };
        assert_eq!(archiving(&now, Some(&prev), &warn).status, Status::Warning);
    }

    #[test]
    fn stats_reset_restarts_the_failure_counter() {
        let prev = WalObs {
            failed_count: 10,
            ..healthy()
        };
        let now = WalObs {
            failed_count: 1,
            stats_reset: t(9, 0),
            ..healthy()
        };
        assert_eq!(recovered_failures(&now, Some(&prev)), 1);
    }

    #[test]
    fn role_change_resets_the_baseline() {
        let prev = WalObs {
            in_recovery: true,
            failed_count: 0,
            ..healthy()
        };
        let now = WalObs {
            failed_count: 4,
            ..healthy()
        };
        assert_eq!(recovered_failures(&now, Some(&prev)), 0);
    }

    #[test]
    fn unreadable_pending_list_cannot_be_judged() {
        let obs = WalObs {
            pending_source: PendingSource::Unavailable,
            pending_note: Some("pg_ls_archive_statusdir() not permitted".into()),
            ..healthy()
        };
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Unknown);
        assert!(v.summary.contains("not permitted"));
    }

    #[test]
    fn idle_but_dirty_primary_gets_the_exposure_advisory_only_when_asked() {
        let mut obs = healthy();
        obs.current_lsn = Some("0/A012345".into());
        // Off by default: the idle primary stays ok (A7).
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
        obs.exposure_advisory = true;
        let v = archiving(&obs, None, &limits());
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.starts_with(
                "advisory: 72.8 KiB of WAL written since the last segment switch (about 4 h ago) \
                 are not archivable yet (archive_timeout = 0)"
            ),
            "{}",
            v.summary
        );
        // Right after a switch nothing is exposed; a short archive_timeout bounds the window.
        obs.current_lsn = Some("0/A000000".into());
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
        obs.current_lsn = Some("0/A012345".into());
        obs.archive_timeout_secs = 60;
        assert_eq!(archiving(&obs, None, &limits()).status, Status::Ok);
    }

    #[test]
    fn success_rate_and_latency_come_from_successive_samples() {
        let prev = healthy();
        let now = WalObs {
            archived_count: 13,
            failed_count: 1,
            last_failed_time: t(9, 0),
            last_archived_time: t(10, 0),
            last_archive_latency_ms: Some(1500),
            ..healthy()
        };
        let v = archiving(&now, Some(&prev), &limits());
        assert_eq!(v.details["since_previous"]["archived"], 3);
        assert_eq!(v.details["since_previous"]["failed"], 1);
        assert_eq!(v.details["since_previous"]["success_rate"], 0.75);
        assert_eq!(v.details["last_archive_latency_ms"], 1500);
        assert!(archiving(&now, None, &limits()).details["since_previous"].is_null());
    }
}
