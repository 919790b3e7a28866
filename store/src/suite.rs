//! The contract every [`Store`] keeps, as scenarios any backend can run.
//!
//! Compiled into the library, not `cfg(test)`, so the `tests` crate can run the same suite
//! against a real PostgreSQL. Rules the scenarios keep:
//! - each takes `&dyn Store`, returns store errors with `?` and checks expectations with
//!   `assert!`, nothing else panics;
//! - each works on host names of its own, made unique per call, so all scenarios share one
//!   database and a database reused from an earlier run does not disturb them;
//! - times are whole milliseconds, the precision a store keeps.

use super::{Evaluated, HostFacts, HostWrite, HostWritten, Inserted, Store, StoreResult};
use backwatch_proto::model::{
    ArchiveDirObs, BackupDirObs, DiskObs, Observation, ProbeKind, ProbeResult, SettingsObs, WalObs,
};
use backwatch_rules::status::{Status, Verdict};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Runs every scenario in order; stops at the first store error.
pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    replayed_result_is_stored_once(store).await?;
    status_change_records_one_transition(store).await?;
    late_older_result_does_not_overwrite_state(store).await?;
    history_filters_by_check_and_since(store).await?;
    host_contact_keeps_first_seen(store).await?;
    set_check_status_records_transition_once(store).await?;
    the_agents_own_unknown_after_a_silence_is_a_transition(store).await?;
    pseudo_check_changes_once_per_status(store).await?;
    retired_check_leaves_the_host_and_resolves(store).await?;
    check_state_round_trips_the_latest_result(store).await?;
    future_dated_result_does_not_freeze_the_state(store).await?;
    result_ids_are_per_host(store).await?;
    pruning_keeps_newer_results_and_the_state(store).await?;
    group_commit_writes_each_host_and_its_contact(store).await?;
    check_clocks_list_every_check_in_order(store).await?;
    retired_host_is_listed_once_and_comes_back(store).await?;
    super::suite_alerts::run_all(store).await?;
    super::suite_dashboard::run_all(store).await?;
    super::suite_reports::run_all(store).await?;
    super::suite_enroll::run_all(store).await?;
    Ok(())
}

/// Retiring records who, when and why once (a second retire is refused); un-retiring removes
/// it and lets the host's checks start afresh; the host's own record and history are
/// untouched either way.
pub async fn retired_host_is_listed_once_and_comes_back(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("retired");
    store.touch_host(&host, at(5), None).await?;
    let r = super::RetiredHost {
        host: host.clone(),
        retired_at: at(10),
        retired_by: "alice".into(),
        reason: "decommissioned".into(),
    };
    assert!(store.retire_host(&r).await?);
    let again = super::RetiredHost {
        retired_by: "bob".into(),
        ..r.clone()
    };
    assert!(!store.retire_host(&again).await?, "retired once");
    let listed: Vec<_> = store
        .retired_hosts()
        .await?
        .into_iter()
        .filter(|x| x.host == host)
        .collect();
    assert_eq!(store.retired_host(&host).await?.as_ref(), Some(&r));
    assert_eq!(listed, [r]);
    assert!(store.retired_set().await?.contains(&host));
    assert!(store.host(&host).await?.is_some(), "the record stays");
    store
        .record_results(&host, &[disk(&host, 1, 8, Status::Critical, "disk full")])
        .await?;
    assert!(store.unretire_host(&host).await?);
    assert!(!store.unretire_host(&host).await?);
    assert!(!store.retired_set().await?.contains(&host));
    assert_eq!(store.retired_host(&host).await?, None);
    // Back in the fleet: a check still bad at its next result is a change (alerted again:
    // retiring resolved its alert).
    assert_eq!(store.check_state(&host, "disk.root").await?, None);
    store
        .record_results(&host, &[disk(&host, 2, 20, Status::Critical, "disk full")])
        .await?;
    let last = store
        .transitions(&host, at(0))
        .await?
        .pop()
        .expect("transition");
    assert_eq!((last.from, last.to), (None, Status::Critical));
    assert!(store.host(&host).await?.is_some(), "the record stays");
    Ok(())
}

/// A group commit answers per host and per item like `record_results`, moves each host's
/// last contact, and reports a silent mark for the caller to clear.
pub async fn group_commit_writes_each_host_and_its_contact(store: &dyn Store) -> StoreResult<()> {
    let (a, b) = (unique_host("group-a"), unique_host("group-b"));
    let first = ok_disk(&a, 1, 10);
    store
        .record_results(&a, std::slice::from_ref(&first))
        .await?;
    store.touch_host(&b, at(5), None).await?;
    store.set_host_silent_at(&b, true, at(6), None).await?;
    let a_items = [first, ok_disk(&a, 2, 20)];
    let b_items = [disk(&b, 1, 30, Status::Critical, "disk full")];
    let written = store
        .record_group(&[
            HostWrite {
                host: &a,
                items: &a_items,
                contact: at(21),
            },
            HostWrite {
                host: &b,
                items: &b_items,
                contact: at(31),
            },
        ])
        .await?;
    assert_eq!(
        written,
        [
            HostWritten {
                inserted: vec![Inserted::Duplicate, Inserted::New],
                silent: false,
                changed: false, // ok, as before
            },
            HostWritten {
                inserted: vec![Inserted::New],
                silent: true,
                changed: true, // a first result is a transition from nothing
            },
        ]
    );
    assert_eq!(store.host(&a).await?.map(|h| h.last_contact), Some(at(21)));
    assert_eq!(store.host(&b).await?.map(|h| h.last_contact), Some(at(31)));
    let b_state = store.check_state(&b, "disk.root").await?;
    assert_eq!(b_state.map(|s| s.status), Some(Status::Critical));
    assert_eq!(store.history(&a, None, at(0), 10).await?.len(), 2);
    // Results only: a ping is a write with no items.
    let ping = store
        .record_group(&[HostWrite {
            host: &a,
            items: &[],
            contact: at(40),
        }])
        .await?;
    assert_eq!(ping[0].inserted, []);
    assert_eq!(store.host(&a).await?.map(|h| h.last_contact), Some(at(40)));
    Ok(())
}

/// The sweep's light view agrees with the full state.
pub async fn check_clocks_list_every_check_in_order(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("clocks");
    store
        .record_results(&host, &[backup(&host, 1, 10, Status::Critical, "too old")])
        .await?;
    store
        .record_results(&host, &[ok_disk(&host, 2, 20)])
        .await?;
    let mine: Vec<_> = store
        .check_clocks()
        .await?
        .into_iter()
        .filter(|c| c.host == host)
        .map(|c| (c.check, c.status, c.summary, c.received_at, c.interval_secs))
        .collect();
    let states = store.check_states(Some(&host)).await?;
    let expected: Vec<_> = states
        .into_iter()
        .map(|c| (c.check, c.status, c.summary, c.received_at, c.interval_secs))
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine, expected);
    assert_eq!(mine[0].0, "backup.daily");
    assert_eq!(mine[0].1, Status::Critical);
    Ok(())
}

/// Retention deletes only the host's results measured before the cut; the check's state
/// and its transitions stay, and a replay of a pruned id is stored again (it is new to us).
pub async fn pruning_keeps_newer_results_and_the_state(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("prune");
    let other = unique_host("prune-other");
    for n in 1..=3 {
        let secs = i64::from(n) * 100;
        store
            .record_results(&host, &[ok_disk(&host, n, secs)])
            .await?;
        store
            .record_results(&other, &[ok_disk(&other, n, secs)])
            .await?;
    }
    assert_eq!(store.prune_results(&host, at(250)).await?, 2);
    assert_eq!(store.prune_results(&host, at(250)).await?, 0, "idempotent");
    let left: Vec<_> = store
        .history(&host, None, at(0), 100)
        .await?
        .into_iter()
        .map(|h| h.measured_at)
        .collect();
    assert_eq!(left, [at(300)]);
    assert_eq!(store.history(&other, None, at(0), 100).await?.len(), 3);
    let state = store.check_state(&host, "disk.root").await?;
    assert_eq!(state.and_then(|s| s.observed_at), Some(at(300)));
    assert_eq!(store.transitions(&host, at(0)).await?.len(), 1);
    Ok(())
}

/// A result id seen before is reported as a duplicate and changes nothing, even when the
/// replay carries another verdict; a batch answers per item, in input order.
pub async fn replayed_result_is_stored_once(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("replay");
    let first = ok_disk(&host, 1, 10);
    assert_eq!(
        store
            .record_results(&host, std::slice::from_ref(&first))
            .await?,
        [Inserted::New]
    );
    assert_eq!(
        store
            .record_results(&host, std::slice::from_ref(&first))
            .await?,
        [Inserted::Duplicate]
    );

    let mut rejudged = first.clone();
    rejudged.verdict = Verdict::new(Status::Critical, "judged again");
    assert_eq!(
        store.record_results(&host, &[rejudged]).await?,
        [Inserted::Duplicate]
    );

    let second = ok_disk(&host, 2, 20);
    let outcome = store
        .record_results(&host, &[second.clone(), second, first])
        .await?;
    assert_eq!(
        outcome,
        [Inserted::New, Inserted::Duplicate, Inserted::Duplicate]
    );

    assert_eq!(store.history(&host, None, at(0), 100).await?.len(), 2);
    assert_eq!(store.transitions(&host, at(0)).await?.len(), 1);
    let state = store.check_state(&host, "disk.root").await?;
    assert_eq!(state.map(|s| s.status), Some(Status::Ok));
    Ok(())
}

/// Only a change of status makes a transition, timed by the collector's receive time, and
/// `since` stays at the start of the current status while results keep arriving.
pub async fn status_change_records_one_transition(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("transition");
    let steps = [
        (10, Status::Ok),
        (20, Status::Ok),
        (30, Status::Critical),
        (40, Status::Critical),
        (50, Status::Ok),
    ];
    for (n, (secs, status)) in (1..).zip(steps) {
        let item = disk(&host, n, secs, status, &format!("{status} at {secs}"));
        store.record_results(&host, &[item]).await?;
        if secs == 40 {
            let state = store.check_state(&host, "disk.root").await?;
            assert_eq!(
                state.map(|s| (s.since, s.summary)),
                Some((at(31), "critical at 40".to_string()))
            );
        }
    }

    let seen: Vec<_> = store
        .transitions(&host, at(0))
        .await?
        .into_iter()
        .map(|t| (t.check, t.at, t.from, t.to))
        .collect();
    let check = || "disk.root".to_string();
    let expected = [
        (check(), at(11), None, Status::Ok),
        (check(), at(31), Some(Status::Ok), Status::Critical),
        (check(), at(51), Some(Status::Critical), Status::Ok),
    ];
    assert_eq!(seen, expected);
    assert_eq!(
        store.transitions(&host, at(31)).await?.len(),
        2,
        "since is inclusive"
    );

    let state = store.check_state(&host, "disk.root").await?;
    assert_eq!(state.map(|s| s.since), Some(at(51)));
    Ok(())
}

/// A result replayed from a spool after newer ones got through is kept in history, but the
/// state keeps showing the newest measurement and no transition is invented.
pub async fn late_older_result_does_not_overwrite_state(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("late");
    let newer = disk(&host, 2, 100, Status::Critical, "disk full");
    let mut older = disk(&host, 1, 50, Status::Ok, "disk fine");
    older.received_at = at(102);
    store
        .record_results(&host, std::slice::from_ref(&newer))
        .await?;
    assert_eq!(
        store.record_results(&host, &[older]).await?,
        [Inserted::New]
    );

    let history = store.history(&host, None, at(0), 100).await?;
    let ids: Vec<_> = history.iter().map(|h| h.result_id.as_str()).collect();
    assert_eq!(ids, [result_id(&host, 1), result_id(&host, 2)]);

    let state = store.check_state(&host, "disk.root").await?;
    assert!(state.is_some(), "state of disk.root exists");
    if let Some(state) = state {
        assert_eq!(state.status, Status::Critical);
        assert_eq!(
            state.last_result_id.as_deref(),
            Some(newer.result.result_id.as_str())
        );
        assert_eq!(state.observed_at, Some(at(100)));
        assert_eq!(state.received_at, Some(at(101)));
    }
    assert_eq!(store.transitions(&host, at(0)).await?.len(), 1);
    Ok(())
}

/// A result measured "in the future" (agent clock ahead) is ordered no later than its arrival,
/// so the correct results after it still move the state.
pub async fn future_dated_result_does_not_freeze_the_state(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("ahead");
    let mut ahead = disk(
        &host,
        1,
        86_400,
        Status::Ok,
        "fine, says a clock a day ahead",
    );
    ahead.received_at = at(10);
    store.record_results(&host, &[ahead]).await?;
    let mut later = disk(&host, 2, 20, Status::Critical, "disk full");
    later.received_at = at(21);
    store.record_results(&host, &[later]).await?;
    let state = store.check_state(&host, "disk.root").await?;
    assert_eq!(state.map(|s| s.status), Some(Status::Critical));
    Ok(())
}

/// The same result id from two hosts is two results: one host cannot pre-empt another's.
pub async fn result_ids_are_per_host(store: &dyn Store) -> StoreResult<()> {
    let (a, b) = (unique_host("ida"), unique_host("idb"));
    let mut ra = disk(&a, 1, 10, Status::Ok, "a");
    let mut rb = disk(&b, 1, 10, Status::Ok, "b");
    ra.result.result_id = "shared-id".into();
    rb.result.result_id = "shared-id".into();
    assert_eq!(store.record_results(&a, &[ra]).await?, [Inserted::New]);
    assert_eq!(store.record_results(&b, &[rb]).await?, [Inserted::New]);
    assert_eq!(store.history(&b, None, at(0), 10).await?.len(), 1);
    Ok(())
}

/// History is per host, oldest first, `measured_at >= since`, at most `limit`, and narrows
/// to one check when asked; stored fields come back as written.
pub async fn history_filters_by_check_and_since(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("history");
    let mut failed = backup(&host, 2, 15, Status::Critical, "cannot read");
    failed.result.error = Some("permission denied".into());
    failed.result.observation = None;
    let items = [
        ok_disk(&host, 1, 10),
        failed,
        ok_disk(&host, 3, 20),
        backup(&host, 4, 25, Status::Ok, "fresh"),
        ok_disk(&host, 5, 30),
    ];
    store.record_results(&host, &items).await?;
    let other = unique_host("history-other");
    store
        .record_results(&other, &[ok_disk(&other, 1, 12)])
        .await?;

    let all = store.history(&host, None, at(0), 100).await?;
    let times: Vec<_> = all.iter().map(|h| h.measured_at).collect();
    assert_eq!(times, [at(10), at(15), at(20), at(25), at(30)]);

    let disk_since: Vec<_> = store
        .history(&host, Some("disk.root"), at(20), 100)
        .await?
        .into_iter()
        .map(|h| (h.check, h.measured_at))
        .collect();
    assert_eq!(
        disk_since,
        [
            ("disk.root".to_string(), at(20)),
            ("disk.root".to_string(), at(30))
        ]
    );

    let first_two = store.history(&host, None, at(0), 2).await?;
    let ids: Vec<_> = first_two.iter().map(|h| h.result_id.as_str()).collect();
    assert_eq!(ids, [result_id(&host, 1), result_id(&host, 2)]);

    let failed = &all[1];
    assert_eq!(failed.check, "backup.daily");
    assert_eq!(failed.status, Status::Critical);
    assert_eq!(failed.summary, "cannot read");
    assert_eq!(failed.error.as_deref(), Some("permission denied"));
    assert_eq!(failed.observation, None);
    assert_eq!(failed.received_at, at(16));
    assert_eq!(all[0].observation, items[0].result.observation);
    Ok(())
}

/// `first_seen` is set once, `last_contact` only moves forward, facts (labels too) are
/// replaced only by a Hello, and contact does not clear the silent flag (that is `set_host_silent`'s job).
pub async fn host_contact_keeps_first_seen(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("contact");
    let hello = facts("0.1.0", 250);
    store.touch_host(&host, at(10), Some(&hello)).await?;
    store.touch_host(&host, at(20), None).await?;
    store.touch_host(&host, at(15), None).await?;

    let record = store.host(&host).await?;
    assert!(record.is_some(), "host is known after contact");
    if let Some(record) = record {
        assert_eq!((record.first_seen, record.last_contact), (at(10), at(20)));
        assert_eq!(record.facts, hello);
        assert!(!record.silent);
    }

    store.set_host_silent(&host, true).await?;
    let upgraded = facts("0.2.0", -40);
    store.touch_host(&host, at(30), Some(&upgraded)).await?;
    let record = store.host(&host).await?;
    let seen = record.map(|r| (r.first_seen, r.last_contact, r.silent, r.facts));
    assert_eq!(seen, Some((at(10), at(30), true, upgraded)));

    store.set_host_silent(&host, false).await?;
    assert_eq!(store.host(&host).await?.map(|r| r.silent), Some(false));

    // Other scenarios' hosts share the list, and the database's collation decides how
    // unlike names sort; names that differ only in a last letter sort alike everywhere.
    let (b, a) = (format!("{host}.b"), format!("{host}.a"));
    store.touch_host(&b, at(40), None).await?;
    store.touch_host(&a, at(40), None).await?;
    let ours: Vec<_> = store
        .hosts()
        .await?
        .into_iter()
        .map(|h| h.host)
        .filter(|name| name.starts_with(&host))
        .collect();
    assert_eq!(ours, [host.clone(), a, b], "hosts ordered by name");
    assert_eq!(store.host(&unique_host("never-seen")).await?, None);
    Ok(())
}

/// Setting a status without a result records one transition per real change, leaves the
/// measurement alone and ignores checks that do not exist.
/// A pseudo-check (no results) gets one transition per change of status: repeating a status
/// raises no second alert.
pub async fn pseudo_check_changes_once_per_status(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("pseudo");
    let over = "3 results refused";
    assert!(
        store
            .set_pseudo_check(&host, "agent.checks", Status::Warning, over, at(10))
            .await?
    );
    assert!(
        !store
            .set_pseudo_check(&host, "agent.checks", Status::Warning, "again", at(20))
            .await?
    );
    assert!(
        store
            .set_pseudo_check(&host, "agent.checks", Status::Ok, "back under", at(30))
            .await?
    );
    let changes: Vec<_> = store
        .transitions(&host, at(0))
        .await?
        .into_iter()
        .map(|t| (t.check, t.from, t.to, t.summary))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "agent.checks".to_string(),
                Some(Status::Ok),
                Status::Warning,
                over.to_string()
            ),
            (
                "agent.checks".to_string(),
                Some(Status::Warning),
                Status::Ok,
                "back under".to_string()
            ),
        ]
    );
    assert_eq!(store.check_state(&host, "agent.checks").await?, None);
    Ok(())
}

/// A retired check leaves `check_state` (so it is never overdue) and, when it was not ok,
/// records one transition to ok, which resolves its alert.
pub async fn retired_check_leaves_the_host_and_resolves(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("retire");
    store
        .record_results(&host, &[ok_disk(&host, 1, 10)])
        .await?;
    store
        .set_check_status(&host, "disk.root", Status::Unknown, "overdue", at(20), None)
        .await?;
    let gone = "retired: no longer in the agent's configuration";
    assert!(store.retire_check(&host, "disk.root", gone, at(30)).await?);
    assert!(store.check_state(&host, "disk.root").await?.is_none());
    assert!(store.check_states(Some(&host)).await?.is_empty());
    assert!(!store.retire_check(&host, "disk.root", gone, at(40)).await?);
    let last = store
        .transitions(&host, at(0))
        .await?
        .pop()
        .expect("transition");
    assert_eq!(
        (
            last.check.as_str(),
            last.from,
            last.to,
            last.summary.as_str()
        ),
        ("disk.root", Some(Status::Unknown), Status::Ok, gone)
    );
    Ok(())
}

/// The silence sweep's unknown is not the agent's: when the agent is back and reports unknown
/// itself (PostgreSQL did not start after a reboot), that is a transition, which the alert
/// engine judges; another unknown of the agent's after it is not.
pub async fn the_agents_own_unknown_after_a_silence_is_a_transition(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("back");
    store
        .record_results(&host, &[ok_disk(&host, 1, 10)])
        .await?;
    let silent = format!("{} 2025-01-01 00:00:10 UTC", crate::AGENT_SILENT_SUMMARY);
    store
        .set_check_status(&host, "disk.root", Status::Unknown, &silent, at(100), None)
        .await?;
    let down = "cannot stat /backup: Input/output error";
    store
        .record_results(&host, &[disk(&host, 2, 200, Status::Unknown, down)])
        .await?;
    store
        .record_results(&host, &[disk(&host, 3, 300, Status::Unknown, down)])
        .await?;
    let changes: Vec<_> = store
        .transitions(&host, at(0))
        .await?
        .into_iter()
        .map(|t| (t.from, t.to, t.summary))
        .collect();
    assert_eq!(
        changes,
        [
            (None, Status::Ok, "disk fine".to_string()),
            (Some(Status::Ok), Status::Unknown, silent),
            (Some(Status::Unknown), Status::Unknown, down.to_string()),
        ]
    );
    Ok(())
}

pub async fn set_check_status_records_transition_once(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("silence");
    store
        .record_results(&host, &[ok_disk(&host, 1, 10)])
        .await?;

    let silent = "no result for 3 intervals";
    assert!(
        store
            .set_check_status(&host, "disk.root", Status::Unknown, silent, at(100), None)
            .await?
    );
    assert!(
        !store
            .set_check_status(&host, "disk.root", Status::Unknown, silent, at(110), None)
            .await?
    );
    assert!(
        !store
            .set_check_status(&host, "disk.nope", Status::Unknown, silent, at(100), None)
            .await?
    );
    assert_eq!(store.check_state(&host, "disk.nope").await?, None);

    let state = store.check_state(&host, "disk.root").await?;
    let seen = state.map(|s| (s.status, s.summary, s.since, s.observed_at));
    assert_eq!(
        seen,
        Some((Status::Unknown, silent.to_string(), at(100), Some(at(10))))
    );

    store
        .record_results(&host, &[ok_disk(&host, 2, 200)])
        .await?;
    let changes: Vec<_> = store
        .transitions(&host, at(0))
        .await?
        .into_iter()
        .map(|t| (t.at, t.from, t.to, t.summary))
        .collect();
    let expected = [
        (at(11), None, Status::Ok, "disk fine".to_string()),
        (
            at(100),
            Some(Status::Ok),
            Status::Unknown,
            silent.to_string(),
        ),
        (
            at(201),
            Some(Status::Unknown),
            Status::Ok,
            "disk fine".to_string(),
        ),
    ];
    assert_eq!(changes, expected);
    Ok(())
}

/// The state carries the whole latest result and the verdict's details, for rules that
/// compare with the previous observation; lists are ordered by host, then check.
pub async fn check_state_round_trips_the_latest_result(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("state");
    let mut item = disk(&host, 1, 10, Status::Warning, "disk 91.5% used");
    item.verdict.details = serde_json::json!({ "used_pct": 91.5, "warn_pct": 90 });
    item.result.interval_secs = 300;
    store
        .record_results(
            &host,
            &[item.clone(), backup(&host, 2, 11, Status::Ok, "fresh")],
        )
        .await?;

    let state = store.check_state(&host, "disk.root").await?;
    assert!(state.is_some(), "state of disk.root exists");
    if let Some(state) = state {
        assert_eq!(
            (state.host.as_str(), state.check.as_str()),
            (host.as_str(), "disk.root")
        );
        assert_eq!(state.status, Status::Warning);
        assert_eq!(state.summary, "disk 91.5% used");
        assert_eq!(state.interval_secs, 300);
        assert_eq!(state.last_result.as_ref(), Some(&item.result));
        assert_eq!(state.details, item.verdict.details);
        assert_eq!((state.since, state.received_at), (at(11), Some(at(11))));
    }

    let checks: Vec<_> = store
        .check_states(Some(&host))
        .await?
        .into_iter()
        .map(|s| s.check)
        .collect();
    assert_eq!(checks, ["backup.daily", "disk.root"]);

    // As in host_contact_keeps_first_seen: compare only our own, similarly named hosts.
    let sibling = format!("{host}.b");
    store
        .record_results(&sibling, &[ok_disk(&sibling, 1, 12)])
        .await?;
    let ours: Vec<_> = store
        .check_states(None)
        .await?
        .into_iter()
        .filter(|s| s.host.starts_with(&host))
        .map(|s| (s.host, s.check))
        .collect();
    let expected = [
        (host.clone(), "backup.daily".to_string()),
        (host.clone(), "disk.root".to_string()),
        (sibling, "disk.root".to_string()),
    ];
    assert_eq!(ours, expected, "states ordered by host, then check");
    let disks: Vec<_> = store
        .check_states_of_kind(ProbeKind::Disk)
        .await?
        .into_iter()
        .filter(|s| s.host.starts_with(&host))
        .map(|s| (s.host, s.check))
        .collect();
    assert_eq!(disks, expected[1..], "only disk.* of every host");
    assert_eq!(store.check_state(&host, "wal.main").await?, None);
    Ok(())
}

// === builders ===

/// Base of every scenario time: 2025-01-01T00:00:00Z.
const BASE_SECS: i64 = 1_735_689_600;

/// `secs` seconds after the scenarios' base time.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(BASE_SECS + secs)
}

/// A host name no other call returns, in this process or an earlier one.
pub fn unique_host(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{label}-{}-{nanos}-{n}", std::process::id())
}

/// Result ids are per host in the scenarios, so they never collide across scenarios either.
pub fn result_id(host: &str, n: u32) -> String {
    format!("{host}/r{n}")
}

/// A probe result of check `<kind>.<name>` measured at `at(measured_secs)`.
pub fn probe_result(
    host: &str,
    n: u32,
    kind: ProbeKind,
    name: &str,
    measured_secs: i64,
) -> ProbeResult {
    ProbeResult {
        result_id: result_id(host, n),
        kind,
        name: name.into(),
        measured_at: at(measured_secs),
        duration_ms: 12,
        interval_secs: 60,
        error: None,
        observation: Some(observation(kind)),
    }
}

fn observation(kind: ProbeKind) -> Observation {
    match kind {
        ProbeKind::Disk => Observation::Disk(DiskObs {
            path: "/".into(),
            total_bytes: 100 << 30,
            free_bytes: 40 << 30,
            avail_bytes: 35 << 30,
            ..DiskObs::default()
        }),
        ProbeKind::Backup => Observation::Backup(BackupDirObs {
            path: "/backup/daily".into(),
            exists: true,
            file_count: 3,
            total_bytes: 7 << 30,
            ..BackupDirObs::default()
        }),
        ProbeKind::Wal => Observation::Wal(WalObs {
            server_version_num: 170_002,
            archive_mode: "on".into(),
            ..WalObs::default()
        }),
        ProbeKind::Archive => Observation::Archive(Box::new(ArchiveDirObs {
            path: "/archive_path".into(),
            exists: true,
            ..ArchiveDirObs::default()
        })),
        ProbeKind::Restore => Observation::Restore(Box::default()),
        ProbeKind::PgBackRest => Observation::PgBackRest(Box::default()),
        ProbeKind::Barman => Observation::Barman(Box::default()),
        ProbeKind::Drill => Observation::Drill(Box::default()),
        ProbeKind::Settings => Observation::Settings(SettingsObs::default()),
    }
}

/// `result` judged `status`, received one second after it was measured.
pub fn evaluated(result: ProbeResult, status: Status, summary: &str) -> Evaluated {
    Evaluated {
        received_at: result.measured_at + TimeDelta::seconds(1),
        verdict: Verdict::new(status, summary),
        result,
    }
}

fn disk(host: &str, n: u32, secs: i64, status: Status, summary: &str) -> Evaluated {
    evaluated(
        probe_result(host, n, ProbeKind::Disk, "root", secs),
        status,
        summary,
    )
}

fn ok_disk(host: &str, n: u32, secs: i64) -> Evaluated {
    disk(host, n, secs, Status::Ok, "disk fine")
}

fn backup(host: &str, n: u32, secs: i64, status: Status, summary: &str) -> Evaluated {
    evaluated(
        probe_result(host, n, ProbeKind::Backup, "daily", secs),
        status,
        summary,
    )
}

fn facts(agent_version: &str, clock_skew_ms: i64) -> HostFacts {
    HostFacts {
        agent_version: agent_version.into(),
        hostname: "db1.example.net".into(),
        os: "Debian GNU/Linux 12".into(),
        instance_id: "i-0abc".into(),
        clock_skew_ms,
        labels: labels(agent_version),
    }
}

/// Labels that differ between the two agent versions of `host_contact_keeps_first_seen`:
/// a Hello replaces the whole set (a label dropped from the file is gone).
fn labels(agent_version: &str) -> backwatch_proto::model::labels::Labels {
    let pairs: &[(&str, &str)] = if agent_version == "0.1.0" {
        &[("env", "prod"), ("cluster", "billing (EU)")]
    } else {
        &[("env", "staging")]
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
