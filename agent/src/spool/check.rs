//! The spool's report on itself: check `disk.agent-spool`.
//!
//! A spool that cannot write (disk full, I/O error) is reported as a result of its own the
//! moment writes start failing, held in memory and sent like any other (a full disk must not
//! lose the result that reports it), and again when writes succeed: then it is a plain disk
//! measurement of the spool's file system, judged by the disk rule. Sent only on those two
//! changes, with no interval, so the collector does not expect it on a schedule.

use super::{Failure, MAX_HELD, Spool};
use backwatch_proto::model::{Observation, ProbeKind, ProbeResult};
use chrono::Utc;

/// The check's name (`disk.agent-spool`), reserved in the `[[disk]]` configuration.
pub const NAME: &str = "agent-spool";

/// The result to send when the spool's state changed from `before`, if it did.
pub fn report(before: Option<&Failure>, spool: &Spool) -> Option<ProbeResult> {
    let (error, observation) = match (before, spool.failure()) {
        (None, Some(f)) => (
            Some(format!(
                "the agent cannot write its spool {} since {}: {}; results are held in memory (at most {MAX_HELD}, not kept across a restart), {} dropped so far",
                spool.dir().display(),
                f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                f.error,
                spool.dropped
            )),
            None,
        ),
        (Some(_), None) => (
            None,
            Some(Observation::Disk(crate::probe::disk::measure(spool.dir()))),
        ),
        _ => return None,
    };
    Some(ProbeResult {
        result_id: uuid::Uuid::new_v4().to_string(),
        kind: ProbeKind::Disk,
        name: NAME.into(),
        measured_at: Utc::now(),
        duration_ms: 0,
        interval_secs: 0,
        error,
        observation,
    })
}
