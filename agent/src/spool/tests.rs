//! The spool's invariants, one test each.

use super::*;
use backwatch_proto::convert::to_ts;

fn result(id: &str) -> ProbeResult {
    ProbeResult {
        result_id: id.into(),
        name: "daily".into(),
        measured_at: Some(to_ts(Utc::now())),
        error: "x".into(),
        ..Default::default()
    }
}

const WEEK: Duration = Duration::from_secs(7 * 86400);

/// Push a result that must reach the disk; its sequence number.
fn put(s: &mut Spool, id: &str) -> u64 {
    let (seq, stored) = s.push(&result(id));
    assert_eq!(stored, Stored::Spooled, "{id} not written");
    seq
}

#[test]
fn results_survive_reopening_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    for id in ["a", "b", "c"] {
        put(&mut s, id);
    }
    drop(s);
    let s = Spool::open(dir.path(), 100, WEEK).unwrap();
    let ids: Vec<_> = s
        .read_after(0, 10, usize::MAX)
        .into_iter()
        .map(|(_, r)| r.result_id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn ack_deletes_only_the_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    for id in ["a", "b", "c"] {
        put(&mut s, id);
    }
    assert_eq!(s.ack(["a", "c", "zz"]), 2);
    drop(s);
    let s = Spool::open(dir.path(), 100, WEEK).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s.read_after(0, 10, usize::MAX)[0].1.result_id, "b");
}

#[test]
fn full_spool_drops_oldest_first_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 2, WEEK).unwrap();
    for id in ["a", "b", "c"] {
        put(&mut s, id);
    }
    assert_eq!(s.dropped, 1);
    let ids: Vec<_> = s
        .read_after(0, 10, usize::MAX)
        .into_iter()
        .map(|(_, r)| r.result_id)
        .collect();
    assert_eq!(ids, ["b", "c"]);
}

#[test]
fn results_older_than_max_age_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, Duration::from_secs(3600)).unwrap();
    let mut old = result("old");
    old.measured_at = Some(to_ts(Utc::now() - chrono::Duration::hours(2)));
    assert_eq!(s.push(&old).1, Stored::Spooled);
    put(&mut s, "new");
    assert_eq!(s.dropped, 1);
    assert_eq!(s.len(), 1);
}

#[test]
fn sequence_continues_after_reopen_and_leftover_tmp_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    let first = put(&mut s, "a");
    drop(s);
    std::fs::write(dir.path().join("00000000000000000099.tmp"), b"partial").unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    assert!(put(&mut s, "b") > first);
    assert!(!dir.path().join("00000000000000000099.tmp").exists());
}

#[test]
fn in_flight_count_forgets_results_dropped_by_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 2, WEEK).unwrap();
    let a = put(&mut s, "a");
    let b = put(&mut s, "b");
    assert_eq!(s.count_through(b), 2);
    put(&mut s, "c"); // drops "a", which was in flight
    assert_eq!(s.count_through(b), 1);
    assert_eq!(s.count_through(a), 0);
}

#[test]
fn a_spool_that_cannot_write_holds_results_in_order_leaves_no_file_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut s = Spool::open(&spool_dir, 100, WEEK).unwrap();
    put(&mut s, "a");
    // Writes fail from now on (the directory is gone), as on a full disk.
    std::fs::remove_dir_all(&spool_dir).unwrap();
    assert_eq!(s.push(&result("b")).1, Stored::Held);
    assert_eq!(s.push(&result("c")).1, Stored::Held);
    assert!(s.failure().is_some());
    assert_eq!((s.held(), s.dropped), (2, 0));
    let ids: Vec<_> = s
        .read_after(0, 10, usize::MAX)
        .into_iter()
        .map(|(_, r)| r.result_id)
        .collect();
    assert_eq!(ids, ["b", "c"], "held results are sent like spooled ones");
    // Space returns: the next push writes the held results first, then itself.
    std::fs::create_dir_all(&spool_dir).unwrap();
    assert_eq!(s.push(&result("d")).1, Stored::Spooled);
    assert!(s.failure().is_none());
    assert_eq!(s.held(), 0);
    drop(s);
    let s = Spool::open(&spool_dir, 100, WEEK).unwrap();
    let ids: Vec<_> = s
        .read_after(0, 10, usize::MAX)
        .into_iter()
        .map(|(_, r)| r.result_id)
        .collect();
    assert_eq!(ids, ["b", "c", "d"]);
    let names: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".pb")), "{names:?}");
}

#[test]
fn held_results_beyond_the_bound_are_dropped_oldest_first_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut s = Spool::open(&spool_dir, 100_000, WEEK).unwrap();
    std::fs::remove_dir_all(&spool_dir).unwrap();
    for i in 0..MAX_HELD + 3 {
        s.push(&result(&format!("r{i}")));
    }
    assert_eq!((s.held(), s.dropped), (MAX_HELD, 3));
    assert_eq!(s.read_after(0, 1, usize::MAX)[0].1.result_id, "r3");
    // Acknowledged held results leave memory.
    assert_eq!(s.ack(["r3", "r4"]), 2);
    assert_eq!(s.held(), MAX_HELD - 2);
}

#[test]
fn read_after_skips_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    let a = put(&mut s, "a");
    put(&mut s, "b");
    let rest = s.read_after(a, 10, usize::MAX);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.result_id, "b");
}

/// A result whose error text is `bytes` long.
fn sized(id: &str, bytes: usize) -> ProbeResult {
    ProbeResult {
        error: "e".repeat(bytes),
        ..result(id)
    }
}

#[test]
fn a_batch_stops_before_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    for i in 0..10 {
        s.push(&sized(&format!("r{i}"), 1000));
    }
    let one = batch_bytes(&sized("r0", 1000));
    // Room for three and a half: three go, whatever the count allows.
    let batch = s.read_after(0, 100, one * 7 / 2);
    let ids: Vec<_> = batch.iter().map(|(_, r)| r.result_id.as_str()).collect();
    assert_eq!(ids, ["r0", "r1", "r2"]);
    let encoded: usize = batch.iter().map(|(_, r)| batch_bytes(r)).sum();
    assert!(encoded <= one * 7 / 2);
    // The count still bounds a batch of small results.
    assert_eq!(s.read_after(0, 2, usize::MAX).len(), 2);
}

#[test]
fn a_result_over_the_budget_alone_goes_as_an_error_result_and_unblocks_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    let original = sized("huge", 50_000);
    let huge = s.push(&original).0;
    s.push(&sized("next", 10));
    let batch = s.read_after(0, 100, 10_000);
    // Sent under the budget with its id (so the ack deletes the original), and the result
    // behind it goes too.
    let ids: Vec<_> = batch.iter().map(|(_, r)| r.result_id.as_str()).collect();
    assert_eq!(ids, ["huge", "next"]);
    let (seq, sent) = &batch[0];
    assert_eq!((*seq, sent.result_id.as_str()), (huge, "huge"));
    assert!(batch_bytes(sent) <= 10_000);
    let expected = format!(
        "result too large to send: {} bytes encoded, over the agent's limit of 10000 per batch; probe error: eee",
        batch_bytes(&original)
    );
    assert!(sent.error.starts_with(&expected), "{}", sent.error);
    assert!(sent.error.ends_with("e…"), "probe error cut short");
    assert!(sent.observation.is_none());
    assert_eq!(sent.name, original.name);
    assert_eq!(sent.measured_at, original.measured_at);
    // Acknowledging it deletes the spooled original.
    assert_eq!(s.ack(["huge"]), 1);
    assert_eq!(s.len(), 1);
}

#[test]
fn at_start_a_writable_spool_sends_its_disk_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
    let (id, stored) = check::at_start(&mut s);
    assert_eq!(stored, Stored::Spooled);
    let sent = s.read_after(0, 10, usize::MAX);
    assert_eq!(sent.len(), 1);
    let r = &sent[0].1;
    assert_eq!(
        (r.result_id.as_str(), r.name.as_str()),
        (id.as_str(), check::NAME)
    );
    assert_eq!((r.error.as_str(), r.interval_secs), ("", 0));
    assert!(
        matches!(&r.observation, Some(backwatch_proto::wire::WireObservation::Disk(d)) if d.total_bytes > 0),
        "{r:?}"
    );
}

#[test]
fn at_start_a_spool_that_cannot_write_sends_only_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut s = Spool::open(&spool_dir, 100, WEEK).unwrap();
    std::fs::remove_dir_all(&spool_dir).unwrap();
    let (id, stored) = check::at_start(&mut s);
    assert_eq!(stored, Stored::Held);
    assert!(s.failure().is_some());
    let sent = s.read_after(0, 10, usize::MAX);
    assert_eq!(
        sent.len(),
        1,
        "the unwritable measurement is not sent as well"
    );
    let r = &sent[0].1;
    assert_eq!((r.result_id.as_str(), r.interval_secs), (id.as_str(), 0));
    assert!(
        r.error.starts_with("the agent cannot write its spool"),
        "{}",
        r.error
    );
    assert!(r.observation.is_none());
    assert_eq!((s.held(), s.dropped), (1, 0));
}
