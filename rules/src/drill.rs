//! Restore drills (`drill.<name>`): did the newest backup restore, recover, promote and
//! answer, how long did it take, and how far did it get? (docs/checks.md A17, R-drill.)
//!
//! In this order, the first that applies:
//! - refused for space (the scratch file system cannot hold the backup × space_factor) ⇒
//!   critical: the drill did not run, so nothing proves the backup; the text has the figures;
//! - restore, start or recovery failed, or the drill timed out ⇒ critical, with the server
//!   log's last FATAL line and the missing segment when recovery asked for one the archive
//!   lacks while holding later ones;
//! - a smoke check failed (an error, or not the expected answer) ⇒ critical, naming it;
//! - the recovered point falls short of the target by more than `max_shortfall` ⇒ critical,
//!   naming the segment recovery stopped at when known;
//! - replay stopped at a gap but within `max_shortfall` ⇒ warning (the window is cut there);
//! - the RTO is above `max_rto` ⇒ warning;
//! - otherwise ok, with the RTO.
//!
//! A scratch directory or server that could not be removed is appended to any summary, and
//! makes an ok a warning: the next drill may not have the space.
//!
//! `max_rto` and `max_shortfall` come with the observation (the agent's `[[drill]]`); the
//! collector's `[thresholds.drill]`, per host or group through overrides, wins over them
//! ([`DrillLimits`]), as every collector-side limit wins over the agent's.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::{DrillObs, RECOVERED_POINT_SOURCE};
use serde_json::json;
use std::time::Duration;

/// The collector's drill limits (`[thresholds.drill]`); unset ones leave the agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DrillLimits {
    /// Warning above this recovery time.
    #[serde(serialize_with = "crate::wal::ser_opt_secs")]
    pub max_rto: Option<Duration>,
    /// Critical when the recovered point falls further short of the target.
    #[serde(serialize_with = "crate::wal::ser_opt_secs")]
    pub max_shortfall: Option<Duration>,
}

/// Judge with the collector's limits where it has them, else the agent's.
#[must_use]
pub fn judge_with(obs: &DrillObs, limits: &DrillLimits) -> Verdict {
    if *limits == DrillLimits::default() {
        return judge(obs);
    }
    let mut obs = obs.clone();
    if let Some(max) = limits.max_rto {
        obs.max_rto_secs = Some(max.as_secs());
    }
    if let Some(max) = limits.max_shortfall {
        obs.max_shortfall_secs = max.as_secs();
    }
    judge(&obs)
}

/// Judge with the limits the agent sent.
#[must_use]
pub fn judge(obs: &DrillObs) -> Verdict {
    let rto_secs = obs.rto_ms.map(|ms| ms as f64 / 1000.0);
    let details = json!({
        "source_kind": obs.source_kind,
        "backup_root": obs.backup_root,
        "backup_path": obs.backup_path,
        "backup_format": obs.backup_format,
        "archive_path": obs.archive_path,
        "scratch_dir": obs.scratch_dir,
        "error": obs.error,
        "refused": obs.refused,
        "backup_bytes": obs.backup_bytes,
        "scratch_free_bytes": obs.scratch_free_bytes,
        "space_factor": obs.space_factor,
        "pg_version": obs.pg_version,
        "bindir": obs.bindir,
        "io_limit": obs.io_limit,
        "started_at": obs.started_at,
        "restore_ms": obs.restore_ms,
        "recovery_ms": obs.recovery_ms,
        "rto_ms": obs.rto_ms,
        "rto_secs": rto_secs,
        "smoke_ms": obs.smoke_ms,
        "bytes_restored": obs.bytes_restored,
        "wal_segments_restored": obs.wal_segments_restored,
        "target": obs.target,
        "target_time": obs.target_time,
        "recovered_at": obs.recovered_at,
        "recovered_point_source": RECOVERED_POINT_SOURCE,
        "replay_lsn": obs.replay_lsn,
        "archive_newest_segment": obs.archive_newest_segment,
        "archive_end_reached": obs.archive_end_reached,
        "shortfall_secs": obs.shortfall_secs,
        "target_distance_secs": obs.target_distance_secs,
        "missing_segment": obs.missing_segment,
        "server_log": obs.server_log,
        "smoke": obs.smoke,
        "max_rto_secs": obs.max_rto_secs,
        "max_shortfall_secs": obs.max_shortfall_secs,
        "timed_out": obs.timed_out,
        "cleanup_error": obs.cleanup_error,
        "system_identifier": obs.system_identifier,
    });
    let mut v = verdict(obs);
    if let Some(e) = &obs.cleanup_error {
        if v.status == Status::Ok {
            v.status = Status::Warning;
        }
        v.summary = format!("{}; scratch not removed: {e}", v.summary);
    }
    v.with_details(details).with_procedure(procedure::DRILL)
}

/// "12.3 s", "25 min".
fn took(ms: u64) -> String {
    if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        human::duration((ms / 1000) as i64)
    }
}

fn verdict(obs: &DrillObs) -> Verdict {
    let backup = obs.backup_path.as_deref().unwrap_or(&obs.backup_root);
    if let Some(r) = &obs.refused {
        return Verdict::new(Status::Critical, format!("restore drill refused: {r}"));
    }
    if let Some(e) = &obs.error {
        let mut s = format!("restore drill of {backup} failed: {e}");
        if let Some(m) = &obs.missing_segment {
            s.push_str(&format!(
                "; WAL segment {m} is missing from the archive (recovery asked for it)"
            ));
        }
        if let Some(line) = obs
            .server_log
            .iter()
            .rev()
            .find(|l| l.contains("FATAL:"))
            .or(obs.server_log.last())
        {
            s.push_str(&format!("; server log: {line}"));
        }
        return Verdict::new(Status::Critical, s);
    }
    let Some(rto_ms) = obs.rto_ms else {
        return Verdict::new(
            Status::Unknown,
            format!("restore drill of {backup} measured no recovery time"),
        );
    };
    if let Some(bad) = obs.smoke.iter().find(|c| !c.passed) {
        let why = match (&bad.error, &bad.got, &bad.expect) {
            (Some(e), _, _) => format!("failed: {e}"),
            (None, got, Some(want)) => format!(
                "returned {} instead of {want:?}",
                got.as_ref()
                    .map_or("no row".to_string(), |g| format!("{g:?}"))
            ),
            (None, _, None) => "failed".to_string(),
        };
        return Verdict::new(
            Status::Critical,
            format!(
                "restore drill of {backup}: recovered in {}, but smoke check `{}` {why}",
                took(rto_ms),
                bad.sql
            ),
        );
    }
    let point = obs
        .recovered_at
        .map_or("no transaction replayed".to_string(), |t| {
            format!("recovered to {}", t.format("%Y-%m-%d %H:%M:%S UTC"))
        });
    let at_gap = |m: &str| format!("; recovery stopped at missing WAL segment {m}");
    if let Some(short) = obs
        .shortfall_secs
        .filter(|s| *s > 0 || obs.missing_segment.is_some())
    {
        let gap = obs
            .missing_segment
            .as_deref()
            .map(at_gap)
            .unwrap_or_default();
        if short > obs.max_shortfall_secs as i64 {
            return Verdict::new(
                Status::Critical,
                format!(
                    "restore drill of {backup}: {point}, {} short of the {} target (more than {} allowed){gap}",
                    human::duration(short),
                    obs.target,
                    human::duration(obs.max_shortfall_secs as i64)
                ),
            );
        }
        if !gap.is_empty() {
            return Verdict::new(
                Status::Warning,
                format!(
                    "restore drill of {backup}: RTO {}, {point}{gap} ({} short, within the {} allowed)",
                    took(rto_ms),
                    human::duration(short),
                    human::duration(obs.max_shortfall_secs as i64)
                ),
            );
        }
    }
    let summary = format!(
        "restore drill of {backup}: RTO {} (restore {}, recovery {}), {point}, {} WAL segment{} replayed, smoke checks passed",
        took(rto_ms),
        took(obs.restore_ms),
        took(obs.recovery_ms),
        obs.wal_segments_restored,
        if obs.wal_segments_restored == 1 {
            ""
        } else {
            "s"
        },
    );
    match obs.max_rto_secs {
        Some(max) if rto_ms > max * 1000 => Verdict::new(
            Status::Warning,
            format!(
                "{summary}; RTO above the {} allowed",
                human::duration(max as i64)
            ),
        ),
        _ => Verdict::new(Status::Ok, summary),
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn the_collectors_limits_win_over_the_agents() {
        let obs = DrillObs {
            rto_ms: Some(600_000),
            max_rto_secs: Some(3600),
            ..tests::drilled()
        };
        assert_eq!(judge_with(&obs, &DrillLimits::default()).status, Status::Ok);
        let tight = DrillLimits {
            max_rto: Some(Duration::from_secs(300)),
            max_shortfall: None,
        };
        let v = judge_with(&obs, &tight);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary.ends_with("; RTO above the 5 min allowed"),
            "{}",
            v.summary
        );
        assert_eq!(v.details["max_rto_secs"], 300);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::SmokeCheck;
    use chrono::DateTime;

    pub(super) fn drilled() -> DrillObs {
        DrillObs {
            source_kind: "plain".into(),
            backup_root: "/backup/base".into(),
            backup_path: Some("/backup/base/b1".into()),
            scratch_dir: "/scratch".into(),
            restore_ms: 4_000,
            recovery_ms: 8_500,
            rto_ms: Some(12_500),
            wal_segments_restored: 3,
            target: "latest".into(),
            recovered_at: DateTime::from_timestamp(1_700_000_000, 0),
            archive_end_reached: true,
            smoke: vec![SmokeCheck {
                sql: "select 1".into(),
                expect: Some("1".into()),
                got: Some("1".into()),
                error: None,
                passed: true,
            }],
            max_shortfall_secs: 300,
            ..DrillObs::default()
        }
    }

    #[test]
    fn recovered_and_answering_is_ok_with_the_rto() {
        let v = judge(&drilled());
        assert_eq!(v.status, Status::Ok, "{v:?}");
        assert!(
            v.summary
                .contains("RTO 12.5 s (restore 4.0 s, recovery 8.5 s)"),
            "{v:?}"
        );
        assert!(
            v.summary
                .contains("recovered to 2023-11-14 22:13:20 UTC, 3 WAL segments replayed"),
            "{v:?}"
        );
        assert_eq!(v.details["rto_secs"], 12.5);
        assert_eq!(v.procedure, None);
    }

    #[test]
    fn space_refusal_is_critical_and_says_why() {
        let mut o = drilled();
        o.rto_ms = None;
        o.refused = Some("not enough space in /scratch: 1.0 MiB free".into());
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert_eq!(
            v.summary,
            "restore drill refused: not enough space in /scratch: 1.0 MiB free"
        );
        assert_eq!(v.procedure, Some(procedure::DRILL));
    }

    #[test]
    fn failed_recovery_names_the_missing_segment_and_the_fatal_line() {
        let mut o = drilled();
        o.rto_ms = None;
        o.error = Some("the server stopped during recovery".into());
        o.missing_segment = Some("000000010000000000000005".into());
        o.server_log = vec!["FATAL:  WAL ends before end of online backup".into()];
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("WAL segment 000000010000000000000005 is missing"),
            "{v:?}"
        );
        assert!(
            v.summary
                .ends_with("server log: FATAL:  WAL ends before end of online backup"),
            "{v:?}"
        );
    }

    #[test]
    fn failing_smoke_check_is_critical() {
        let mut o = drilled();
        o.smoke.push(SmokeCheck {
            sql: "select count(*) > 0 from orders".into(),
            expect: Some("t".into()),
            got: Some("f".into()),
            error: None,
            passed: false,
        });
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary.ends_with(
                "smoke check `select count(*) > 0 from orders` returned \"f\" instead of \"t\""
            ),
            "{v:?}"
        );
    }

    #[test]
    fn shortfall_beyond_the_limit_is_critical_naming_the_gap() {
        let mut o = drilled();
        o.archive_end_reached = false;
        o.shortfall_secs = Some(1_200);
        o.missing_segment = Some("000000010000000000000007".into());
        let v = judge(&o);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.summary
                .contains("20 min short of the latest target (more than 5 min allowed)"),
            "{v:?}"
        );
        assert!(
            v.summary
                .ends_with("recovery stopped at missing WAL segment 000000010000000000000007"),
            "{v:?}"
        );
    }

    #[test]
    fn gap_within_the_allowed_shortfall_is_a_warning() {
        let mut o = drilled();
        o.shortfall_secs = Some(10);
        o.missing_segment = Some("000000010000000000000007".into());
        assert_eq!(judge(&o).status, Status::Warning);
    }

    #[test]
    fn rto_above_max_rto_is_a_warning() {
        let mut o = drilled();
        o.max_rto_secs = Some(10);
        let v = judge(&o);
        assert_eq!(v.status, Status::Warning);
        assert!(v.summary.ends_with("RTO above the 10 s allowed"), "{v:?}");
        o.max_rto_secs = Some(13);
        assert_eq!(judge(&o).status, Status::Ok);
    }

    #[test]
    fn scratch_left_behind_is_said_and_not_ok() {
        let mut o = drilled();
        o.cleanup_error = Some("removing /scratch/x: busy".into());
        let v = judge(&o);
        assert_eq!(v.status, Status::Warning);
        assert!(
            v.summary
                .ends_with("scratch not removed: removing /scratch/x: busy")
        );
    }
}
