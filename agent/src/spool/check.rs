//! The spool's report on itself: check `disk.agent-spool`.
//!
//! A spool that cannot write (disk full, I/O error) is reported as a result of its own the
//! moment writes start failing, held in memory and sent like any other (a full disk must not
//! lose the result that reports it), and again when writes succeed: then it is a plain disk
//! measurement of the spool's file system, judged by the disk rule. Sent on those two changes
//! and once at every start, with no interval, so the collector does not expect it on a
//! schedule. The report at start matters: the usual cure for a full disk is "free space,
//! restart the agent", and a restarted agent has no memory of the failure it would otherwise
//! report as over, so the collector's unknown would stay forever.

use super::{Failure, MAX_HELD, Spool, Stored};
use backwatch_proto::model::{Observation, ProbeKind, ProbeResult};
use backwatch_proto::wire;
use chrono::Utc;

/// The check's name (`disk.agent-spool`), reserved in the `[[disk]]` configuration.
pub const NAME: &str = backwatch_proto::model::AGENT_SPOOL_PROBE;

/// The result to send when the spool's state changed from `before`, if it did.
pub fn report(before: Option<&Failure>, spool: &Spool) -> Option<ProbeResult> {
    match (before, spool.failure()) {
        (None, Some(f)) => Some(failure(f, spool)),
        (Some(_), None) => Some(measurement(spool)),
        _ => None,
    }
}

/// At the agent's start: push the spool's state as it is now, the disk measurement when the
/// spool can write, the failure otherwise. Returns the pushed result's id and where it went.
pub fn at_start(spool: &mut Spool) -> (String, Stored) {
    let measured = measurement(spool);
    let (_, stored) = spool.push(&wire::ProbeResult::from(&measured));
    // Held: the write failed (nothing else is held at start), so the measurement is not the
    // spool's state. Take it back (it is only in memory) and report the failure instead.
    let Some(f) = spool.failure().cloned() else {
        return (measured.result_id, stored);
    };
    spool.ack([measured.result_id.as_str()]);
    let failed = failure(&f, spool);
    let (_, stored) = spool.push(&wire::ProbeResult::from(&failed));
    (failed.result_id, stored)
}

fn failure(f: &Failure, spool: &Spool) -> ProbeResult {
    result(
        Some(format!(
            "the agent cannot write its spool {} since {}: {}; results are held in memory (at most {MAX_HELD}, not kept across a restart), {} dropped so far",
            spool.dir().display(),
            f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            f.error,
            spool.dropped
        )),
        None,
    )
}

fn measurement(spool: &Spool) -> ProbeResult {
    result(
        None,
        Some(Observation::Disk(crate::probe::disk::measure(spool.dir()))),
    )
}

fn result(error: Option<String>, observation: Option<Observation>) -> ProbeResult {
    ProbeResult {
        result_id: uuid::Uuid::new_v4().to_string(),
        kind: ProbeKind::Disk,
        name: NAME.into(),
        measured_at: Utc::now(),
        duration_ms: 0,
        // No schedule: the collector must never judge this check overdue (0 = not scheduled).
        interval_secs: 0,
        error,
        observation,
    }
}
