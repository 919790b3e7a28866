//! When did committed work start waiting in the current, not yet switched WAL segment?
//!
//! Data at risk (docs/checks.md, R31) is the age of the oldest WAL no archive holds. Segments
//! waiting as `.ready` files have a time (the archiver's queue, R15). The current segment does
//! not: PostgreSQL keeps no "first write into this segment" time, and its position alone
//! misleads — a checkpoint or a standby snapshot record after a manual `pg_switch_wal()` moves
//! it on a server that committed nothing, and calling that "at risk" would be the idle-server
//! false alarm the check exists to avoid.
//!
//! What moves only with committed work is the next transaction id: a transaction that writes
//! (rows, sequences, DDL) takes an id before it commits. Not every commit moves it (it is the
//! highest finished id plus one: a long transaction ending after a newer one did leaves it
//! where it was), so a writing transaction open at one sample and gone at the next counts too. So the probe remembers, per server,
//! the segment and next id of its previous sample, and concludes from one sample to the next:
//! - the position is at the start of its segment (the page header only): nothing at risk;
//! - same segment, same id: unchanged since the previous sample;
//! - same segment, new id: work since the previous sample at the latest (its time is kept,
//!   so the figure errs by at most the time between the samples, on the side of more risk);
//! - new segment, same id: the switch handed everything before it to the archiver (or to
//!   `.ready` files, which have their own time) and nothing wrote since: nothing at risk;
//! - new segment, new id: work since the previous sample.
//!
//! "New segment, new id" cannot tell whether the work went into the old segment before the
//! switch (archived with it) or into the new one: it is dated, on the side of more risk. Never
//! before the switch into the current segment, though, when the archive status directory says
//! when that was (the newest segment's `.ready` or `.done` file keeps the time it was
//! completed): a busy server switching every few minutes would otherwise show a whole
//! interval at risk at every sample, and one whose probes failed for a while the whole gap. With
//! `archive_timeout` set, time tells: PostgreSQL switches a segment holding committed work
//! within `archive_timeout` of its last switch, so work dated longer ago than that plus a
//! minute, in a segment still current, is not in it (else an idle server whose last write
//! came just before a switch would show a figure growing for good).
//!
//! A first sample cannot date what the segment already holds. Rather than an alarm from a
//! guess (the last archive time can be hours old on an idle server), it counts from the next
//! write transaction and says so in a note, until the segment switches.

use chrono::{DateTime, Utc};

/// What one sample of a primary saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub segment: String,
    pub next_xid: i64,
    /// The writing transactions open at the sample (the snapshot's in-progress list, at most
    /// 1,000): one of them gone by the next sample ended, committed or not.
    pub in_progress: Vec<i64>,
    /// When the newest completed segment was completed (its archive status file's time),
    /// when readable: the switch into the current segment, so no work in it is older.
    pub switched_at: Option<DateTime<Utc>>,
    /// The position is past the segment's page header: some WAL is in it.
    pub written: bool,
    /// Database clock.
    pub at: DateTime<Utc>,
}

/// The conclusion kept from sample to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub sample: Sample,
    /// Earliest time committed work may have entered the current segment; `None`: none did.
    pub since: Option<DateTime<Utc>>,
    /// The segment held WAL of unknown age when first seen.
    pub undated: bool,
}

pub const UNDATED_NOTE: &str = "WAL already in the current segment when the agent started cannot be dated; counted from the next write transaction until the segment switches";

/// Slack on `archive_timeout`: the checkpointer checks it on its own schedule.
const ARCHIVE_TIMEOUT_SLACK_SECS: i64 = 60;

/// The conclusion from the previous one and this sample; `archive_timeout_secs` is the
/// server's setting (0: off).
pub fn next(prev: Option<&Tracked>, now: Sample, archive_timeout_secs: i64) -> Tracked {
    let mut t = judge(prev, now);
    if archive_timeout_secs > 0
        && t.since.is_some_and(|since| {
            (t.sample.at - since).num_seconds() > archive_timeout_secs + ARCHIVE_TIMEOUT_SLACK_SECS
        })
    {
        t.since = None;
    }
    t
}

fn judge(prev: Option<&Tracked>, now: Sample) -> Tracked {
    // Work in the current segment came after the switch into it: a busy server's segment,
    // filled and switched minutes after the previous sample, is not "at risk since" that
    // sample, nor is one whose previous sample is old (probes failed in between).
    // A status file dated after the sample (one PostgreSQL recreated at a checkpoint) says
    // nothing of the switch.
    let switched = now.switched_at.filter(|w| *w <= now.at);
    let tracked = |since: Option<DateTime<Utc>>, undated| Tracked {
        since: since.map(|s| switched.map_or(s, |w| s.max(w))),
        sample: now.clone(),
        undated,
    };
    if !now.written {
        return tracked(None, false);
    }
    let Some(p) = prev else {
        return tracked(None, true);
    };
    let same_segment = p.sample.segment == now.segment;
    // The next id moved, or a transaction open at the previous sample has ended: a long one
    // committing after a newer one finished moves no next id (it is the highest finished
    // plus one). An abort counts too: more risk, never less.
    let wrote = p.sample.next_xid != now.next_xid
        || p.sample
            .in_progress
            .iter()
            .any(|x| !now.in_progress.contains(x));
    match (same_segment, wrote) {
        (true, false) => tracked(p.since, p.undated),
        (true, true) => tracked(p.since.or(Some(p.sample.at)), p.undated),
        (false, false) => tracked(None, false),
        (false, true) => tracked(Some(p.sample.at), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(segment: &str, xid: i64, written: bool, minute: u32) -> Sample {
        Sample {
            segment: segment.into(),
            next_xid: xid,
            in_progress: Vec::new(),
            switched_at: None,
            written,
            at: Utc.with_ymd_and_hms(2026, 12, 4, 10, minute, 0).unwrap(),
        }
    }

    fn at(minute: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 12, 4, 10, minute, 0).unwrap())
    }

    #[test]
    fn an_idle_server_whose_segment_holds_only_a_checkpoint_has_nothing_at_risk() {
        let t = next(None, s("A", 700, false, 0), 0);
        // A checkpoint record moves the position; no transaction id was taken.
        let t = next(Some(&t), s("A", 700, true, 5), 0);
        let t = next(Some(&t), s("A", 700, true, 50), 0);
        assert_eq!(t.since, None);
        assert!(!t.undated);
    }

    #[test]
    fn work_is_dated_to_the_sample_before_it_and_stays_dated() {
        let t = next(None, s("A", 700, false, 0), 0);
        let t = next(Some(&t), s("A", 701, true, 1), 0);
        assert_eq!(t.since, at(0));
        let t = next(Some(&t), s("A", 705, true, 2), 0);
        let t = next(Some(&t), s("A", 705, true, 30), 0);
        assert_eq!(t.since, at(0), "the oldest write is what is at risk");
    }

    #[test]
    fn a_switch_clears_unless_work_continued() {
        let t = next(None, s("A", 700, true, 0), 0);
        let t = next(Some(&t), s("A", 701, true, 1), 0);
        let quiet = next(Some(&t), s("B", 701, true, 2), 0);
        assert_eq!(quiet.since, None);
        let busy = next(Some(&t), s("B", 702, true, 2), 0);
        assert_eq!(busy.since, at(1));
        let fresh = next(Some(&t), s("B", 702, false, 2), 0);
        assert_eq!(fresh.since, None, "nothing past the header: nothing in it");
    }

    #[test]
    fn a_first_sample_is_undated_until_the_segment_switches() {
        let t = next(None, s("A", 700, true, 0), 0);
        assert_eq!((t.since, t.undated), (None, true));
        let t = next(Some(&t), s("A", 701, true, 1), 0);
        assert_eq!((t.since, t.undated), (at(0), true));
        let t = next(Some(&t), s("B", 701, true, 2), 0);
        assert_eq!((t.since, t.undated), (None, false));
    }

    #[test]
    fn with_archive_timeout_work_not_switched_away_in_time_was_not_in_the_segment() {
        // A write, then archive_timeout (60 s) switched A away before the next sample; B
        // holds only a standby snapshot record, and the server stays idle.
        let t = next(None, s("A", 700, true, 0), 60);
        let t = next(Some(&t), s("B", 701, true, 1), 60);
        assert_eq!(t.since, at(0), "dated at first: the write may be in B");
        let t = next(Some(&t), s("B", 701, true, 2), 60);
        assert_eq!(t.since, at(0), "within archive_timeout and its slack");
        let t = next(Some(&t), s("B", 701, true, 3), 60);
        assert_eq!(
            t.since, None,
            "B would have been switched: the write was in A"
        );
        // Without archive_timeout nothing tells: the figure stays.
        let t = next(None, s("A", 700, true, 0), 0);
        let t = next(Some(&t), s("B", 701, true, 1), 0);
        let t = next(Some(&t), s("B", 701, true, 30), 0);
        assert_eq!(t.since, at(0));
    }

    #[test]
    fn work_in_a_new_segment_dates_no_earlier_than_the_switch_into_it() {
        let switched = |segment, xid, minute, switched: u32| Sample {
            switched_at: at(switched),
            ..s(segment, xid, true, minute)
        };
        // A busy server with archive_timeout = 0: samples 15 min apart, each finding a newer
        // segment, switched into a minute before.
        let t = next(None, switched("A", 700, 0, 0), 0);
        let t = next(Some(&t), switched("F", 9000, 15, 14), 0);
        assert_eq!(t.since, at(14), "not the previous sample's 10:00");
        let t = next(Some(&t), switched("K", 18000, 30, 29), 0);
        assert_eq!(t.since, at(29));
        // Probes failed from 10:30 to 10:50: work since the switch into the current segment
        // at the earliest, not since the last sample that succeeded.
        let t = next(Some(&t), switched("M", 18500, 50, 48), 0);
        assert_eq!(t.since, at(48));
        // Still M, more work: still since the switch.
        let t = next(Some(&t), switched("M", 18600, 52, 48), 0);
        assert_eq!(t.since, at(48));
        // Without the status directory (no pg_monitor): the previous sample, as before.
        let t = next(Some(&t), s("P", 20000, true, 59), 0);
        assert_eq!(t.since, at(52));
    }

    #[test]
    fn a_long_transaction_committing_after_a_newer_one_is_work() {
        // 100 is open and 101 has finished (next id 102); then 100 commits: the next id stays.
        let open = |xid, minute, open: Vec<i64>| Sample {
            in_progress: open,
            ..s("A", xid, true, minute)
        };
        let t = next(None, open(102, 0, vec![100]), 0);
        let t = next(Some(&t), open(102, 1, vec![100]), 0);
        assert_eq!(t.since, None, "still open: nothing committed yet");
        let t = next(Some(&t), open(102, 2, vec![]), 0);
        assert_eq!(t.since, at(1), "100 ended between the samples");
    }
}
