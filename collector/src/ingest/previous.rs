//! What each check of one stream's host last measured: the "previous state" the rules judge
//! a new result against (disk hysteresis needs the last status, the archiver's counters the
//! last observation).
//!
//! Reading it from the store for every batch was one round trip per batch, the only one
//! outside the group commit. A stream is the only source of its host's results (one agent
//! per certificate, streams per agent limited), so after the first read of a check the
//! stream knows its previous state better than it could ask for it: it is what the stream
//! itself last stored. The store is read once per check per stream, when the check is first
//! seen (a reconnect, another collector taking the agent over: a new stream, a fresh read).
//!
//! What the store changes on its own (the silence sweep or an overdue check setting a
//! status) is not seen here. That is deliberate: those statuses say "no measurement", and
//! hysteresis is about the last measurement; the transition itself is still decided by the
//! store against its locked state, so alerts stay exact.
//!
//! The cache follows the store's rule for the order of results (`store::sql::group`): a
//! result counts when it is new and not measured before the one the check already holds,
//! by [`ordered_at`].

use crate::status::Status;
use crate::store::{CheckState, Inserted, ordered_at};
use backwatch_proto::model::{Observation, ProbeResult};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

#[derive(Clone)]
pub(super) struct Previous {
    pub status: Option<Status>,
    pub result: Option<ProbeResult>,
    /// Milliseconds; `None` before the first result.
    ordered_at: Option<i64>,
}

impl Previous {
    pub fn from_state(state: Option<CheckState>) -> Previous {
        match state {
            Some(s) => Previous {
                status: Some(s.status),
                ordered_at: s.observed_at.map(|t| t.timestamp_millis()),
                result: s.last_result,
            },
            None => Previous {
                status: None,
                result: None,
                ordered_at: None,
            },
        }
    }

    /// Take `result` judged `status` as the check's latest, unless it was measured before
    /// the one held (a late spool replay): that one is history only.
    pub fn apply(&mut self, status: Status, result: &ProbeResult, received_at: DateTime<Utc>) {
        let at = ordered_at(result, received_at);
        if self.ordered_at.is_some_and(|held| at < held) {
            return;
        }
        self.status = Some(status);
        // A result without an observation (the database did not answer, a timeout) keeps
        // the last one that had one: the archiver's counters are compared across the gap
        // (failures that recovered meanwhile are still counted), not lost with it.
        let measured = match &result.observation {
            None => false,
            // A disk that could not be measured still sends its path, with the error.
            Some(Observation::Disk(d)) => d.error.is_none(),
            Some(_) => true,
        };
        if measured || self.result.is_none() {
            self.result = Some(result.clone());
        }
        self.ordered_at = Some(at);
    }
}

/// The previous state of each check one stream has seen, by check id. Boxed: a previous
/// state holds a whole result (about 700 bytes, its observation sized by the largest kind),
/// and a map allocates room for more entries than it holds, in every session.
#[derive(Default)]
pub(super) struct Known {
    checks: HashMap<String, Box<Previous>>,
}

/// One judged result waiting for the store's answer.
pub(super) struct Pending {
    pub check: String,
    pub status: Status,
    pub result: ProbeResult,
}

impl Known {
    pub fn get(&self, check: &str) -> Option<&Previous> {
        self.checks.get(check).map(|p| &**p)
    }

    /// Forget a check (one whose results were refused: it must not take room here).
    pub fn remove(&mut self, check: &str) {
        self.checks.remove(check);
    }

    pub fn insert(&mut self, check: String, previous: Previous) {
        self.checks.insert(check, Box::new(previous));
    }

    /// The store answered: fold in what it kept, in batch order. Duplicates (already stored
    /// earlier, by this stream or before it) change nothing, as in the store.
    pub fn stored(
        &mut self,
        pending: Vec<Pending>,
        inserted: &[Inserted],
        received_at: DateTime<Utc>,
    ) {
        for (p, ins) in pending.into_iter().zip(inserted) {
            if *ins != Inserted::New {
                continue;
            }
            if let Some(prev) = self.checks.get_mut(&p.check) {
                prev.apply(p.status, &p.result, received_at);
            }
        }
    }

    /// Forget what a failed write may have left unknown; the next batch reads the store.
    pub fn clear(&mut self) {
        self.checks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::model::ProbeKind;
    use chrono::TimeZone;

    fn result(id: &str, measured_secs: i64) -> ProbeResult {
        let mut r = crate::store::suite::probe_result("h", 1, ProbeKind::Disk, "root", 10);
        r.result_id = id.into();
        r.measured_at = Utc.timestamp_opt(1_800_000_000 + measured_secs, 0).unwrap();
        r
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + 3600, 0).unwrap()
    }

    #[test]
    fn a_late_replay_does_not_become_the_previous_state() {
        let mut p = Previous::from_state(None);
        p.apply(Status::Critical, &result("b", 600), now());
        p.apply(Status::Ok, &result("a", 300), now());
        assert_eq!(p.status, Some(Status::Critical));
        assert_eq!(p.result.unwrap().result_id, "b");
    }

    #[test]
    fn a_result_without_observation_keeps_the_last_measurement() {
        let mut p = Previous::from_state(None);
        p.apply(Status::Ok, &result("measured", 300), now());
        let mut failed = result("timeout", 600);
        failed.observation = None;
        failed.error = Some("timed out".into());
        p.apply(Status::Unknown, &failed, now());
        assert_eq!(p.status, Some(Status::Unknown));
        assert_eq!(p.result.as_ref().unwrap().result_id, "measured");
        // And a later one measured before it is still history: the order is the failed one's.
        p.apply(Status::Ok, &result("late", 500), now());
        assert_eq!(p.result.unwrap().result_id, "measured");
    }

    #[test]
    fn a_disk_that_could_not_be_measured_keeps_the_last_measurement() {
        let mut p = Previous::from_state(None);
        p.apply(Status::Critical, &result("measured", 300), now());
        let mut failed = result("eio", 600);
        if let Some(Observation::Disk(d)) = failed.observation.as_mut() {
            d.error = Some("statvfs /backup: Input/output error".into());
        }
        p.apply(Status::Unknown, &failed, now());
        assert_eq!(p.result.unwrap().result_id, "measured");
    }

    #[test]
    fn a_result_from_the_future_is_placed_at_its_arrival() {
        let mut p = Previous::from_state(None);
        p.apply(Status::Warning, &result("ahead", 7200), now());
        // Measured after the arrival of "ahead" but before its claimed time: still newer.
        p.apply(
            Status::Ok,
            &result("next", 3601),
            now() + chrono::Duration::seconds(10),
        );
        assert_eq!(p.status, Some(Status::Ok));
    }

    #[test]
    fn only_new_results_are_folded_in() {
        let mut known = Known::default();
        known.insert("disk.root".into(), Previous::from_state(None));
        let pending = vec![
            Pending {
                check: "disk.root".into(),
                status: Status::Critical,
                result: result("dup", 100),
            },
            Pending {
                check: "disk.root".into(),
                status: Status::Warning,
                result: result("new", 50),
            },
        ];
        known.stored(pending, &[Inserted::Duplicate, Inserted::New], now());
        let p = known.get("disk.root").unwrap();
        assert_eq!(p.status, Some(Status::Warning));
        assert_eq!(p.result.as_ref().unwrap().result_id, "new");
    }
}
