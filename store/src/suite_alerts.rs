//! The alerting part of the store contract (`AlertStore`; `OutboxStore` in `suite_outbox`), as
//! scenarios any
//! backend runs; `suite::run_all` runs them after the history scenarios, so SQLite (unit
//! tests) and PostgreSQL (`tests/tests/e2e/store_postgres.rs`) pass the same contract.
//!
//! Rules as in `suite`: unique host names per call, assertions only about the scenario's
//! own rows (the database, and the alert cursor, are shared with every other scenario and
//! with earlier runs), times in whole milliseconds.

use super::alerts::{
    AGENT_CHECK, AlertFields, AlertFilter, AlertWrite, Mark, MarkOutcome, NewEvent, NewSilence,
    Severity,
};
use super::outbox::{Channel, NewNotification, Notification, OutboxState};
use super::suite::{at, evaluated, probe_result, unique_host};
use super::{Store, StoreResult};
use backwatch_proto::model::ProbeKind;
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    host_silence_is_a_transition_of_the_agent_check(store).await?;
    cursor_hands_out_transitions_in_order_and_moves_by_compare_and_set(store).await?;
    alert_write_is_atomic_and_compare_and_set(store).await?;
    marks_are_set_once(store).await?;
    silences_are_listed_until_they_end(store).await?;
    super::suite_outbox::run_all(store).await?;
    an_alerts_notices_on_one_route_keep_their_order(store).await?;
    Ok(())
}

/// Only a change of the silent flag is a transition, of the pseudo-check `agent.contact`.
pub async fn host_silence_is_a_transition_of_the_agent_check(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("agent");
    store.touch_host(&host, at(10), None).await?;
    assert!(
        store
            .set_host_silent_at(&host, true, at(2000), None)
            .await?
    );
    assert!(
        !store
            .set_host_silent_at(&host, true, at(2010), None)
            .await?,
        "already silent"
    );
    assert!(
        store
            .set_host_silent_at(&host, false, at(2100), None)
            .await?
    );
    let seen: Vec<_> = store
        .transitions(&host, at(0))
        .await?
        .into_iter()
        .map(|t| (t.check, t.at, t.from, t.to))
        .collect();
    let agent = || AGENT_CHECK.to_string();
    let expected = [
        (agent(), at(2000), Some(Status::Ok), Status::Unknown),
        (agent(), at(2100), Some(Status::Unknown), Status::Ok),
    ];
    assert_eq!(seen, expected);
    let first = store.transitions(&host, at(0)).await?;
    assert!(
        first[0]
            .summary
            .starts_with("agent silent since 2025-01-01 00:00:10 UTC"),
        "{}",
        first[0].summary
    );
    Ok(())
}

/// Transitions come in id order after the cursor; the cursor only moves from where it is.
pub async fn cursor_hands_out_transitions_in_order_and_moves_by_compare_and_set(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("cursor");
    let start = store.alert_cursor().await?;
    for (n, (secs, status)) in
        (1..).zip([(10, Status::Ok), (20, Status::Critical), (30, Status::Ok)])
    {
        let r = evaluated(
            probe_result(&host, n, ProbeKind::Disk, "root", secs),
            status,
            "s",
        );
        store.record_results(&host, &[r]).await?;
    }
    let ours: Vec<_> = store
        .transitions_after(start, 100_000)
        .await?
        .into_iter()
        .filter(|t| t.host == host)
        .collect();
    let path: Vec<_> = ours.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        path,
        [
            (None, Status::Ok),
            (Some(Status::Ok), Status::Critical),
            (Some(Status::Critical), Status::Ok)
        ]
    );
    assert!(ours.windows(2).all(|w| w[0].id < w[1].id), "id order");
    let last = ours[2].id;
    let flap = store.change_times(&host, "disk.root", at(21), last).await?;
    assert_eq!(flap, [at(21), at(31)], "changes since, up to an id");
    assert_eq!(
        store
            .change_times(&host, "disk.root", at(0), ours[0].id)
            .await?
            .len(),
        1
    );

    let now = store.alert_cursor().await?;
    assert!(
        !store.advance_alert_cursor(now - 1, last).await?,
        "not from a stale position"
    );
    assert!(store.advance_alert_cursor(now, now.max(last)).await?);
    assert_eq!(store.alert_cursor().await?, now.max(last));
    let after: Vec<_> = store.transitions_after(now.max(last), 100_000).await?;
    assert!(
        after.iter().all(|t| t.host != host),
        "nothing handed out twice"
    );
    Ok(())
}

fn fields(host: &str, opened: DateTime<Utc>) -> AlertFields {
    AlertFields {
        host: host.into(),
        check: "wal.main".into(),
        status: Status::Critical,
        severity: Severity::Critical,
        peak_severity: Severity::Critical,
        notified_severity: Some(Severity::Critical),
        summary: "archiving is failing".into(),
        opened_at: opened,
        updated_at: opened,
        last_change_at: opened,
        last_notified_at: Some(opened),
        resolved_at: None,
        flapping: false,
        silenced: false,
    }
}

/// Notification `n` of a scenario's `host`, with a Message-ID of its own.
pub fn message(host: &str, n: u32, created: DateTime<Utc>) -> NewNotification {
    NewNotification {
        kind: "opened".into(),
        route: "dba".into(),
        channel: Channel::Email,
        recipient: format!("dba{n}@example.com"),
        subject: format!("[CRITICAL] {host} wal.main: archiving is failing"),
        body_text: "text".into(),
        body_html: "<p>html</p>".into(),
        payload: String::new(),
        message_id: format!("<{host}-{n}@example.com>"),
        thread_id: Some(format!("<{host}@example.com>")),
        created_at: created,
    }
}

fn event(kind: &'static str, secs: i64) -> NewEvent {
    NewEvent {
        at: at(secs),
        kind,
        summary: kind.into(),
        transition_id: None,
    }
}

/// An alert, its event and its notifications commit together, or not at all when the
/// cursor or the alert's version moved; one open alert per check.
pub async fn alert_write_is_atomic_and_compare_and_set(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("alert");
    let f = fields(&host, at(100));
    let two = |_: i64| vec![message(&host, 1, at(100)), message(&host, 2, at(100))];
    let write = |existing, fields, cursor| AlertWrite {
        cursor,
        existing,
        fields,
        event: event("opened", 100),
        notifications: &two,
    };
    let cursor = store.alert_cursor().await?;
    assert_eq!(
        store
            .write_alert(&write(None, &f, Some((cursor - 1, cursor + 5))))
            .await?,
        None,
        "stale cursor"
    );
    let id = store.write_alert(&write(None, &f, None)).await?;
    assert!(id.is_some(), "alert written");
    let id = id.unwrap_or_default();
    assert_eq!(
        store.write_alert(&write(None, &f, None)).await?,
        None,
        "second open alert"
    );

    let open = store.open_alerts().await?;
    let ours: Vec<_> = open.iter().filter(|a| a.fields.host == host).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!((ours[0].id, ours[0].version, &ours[0].fields), (id, 0, &f));
    let rows = store.notifications(None, Some(id), 10).await?;
    let states: Vec<_> = rows
        .iter()
        .map(|n| (n.recipient.as_str(), n.state))
        .collect();
    assert_eq!(
        states,
        [
            ("dba2@example.com", OutboxState::Pending),
            ("dba1@example.com", OutboxState::Pending)
        ]
    );
    assert_eq!(
        rows[0].thread_id.as_deref(),
        Some(format!("<{host}@example.com>").as_str())
    );

    let mut resolved = f.clone();
    resolved.status = Status::Ok;
    resolved.resolved_at = Some(at(200));
    let none = |_: i64| Vec::new();
    let update = |version| AlertWrite {
        cursor: None,
        existing: Some((id, version)),
        fields: &resolved,
        event: event("resolved", 200),
        notifications: &none,
    };
    assert_eq!(store.write_alert(&update(7)).await?, None, "stale version");
    assert_eq!(store.write_alert(&update(0)).await?, Some(id));
    let a = store.alert(id).await?;
    assert_eq!(
        a.as_ref().map(|a| (a.version, a.fields.resolved_at)),
        Some((1, Some(at(200))))
    );
    assert!(store.open_alerts().await?.iter().all(|a| a.id != id));
    assert!(
        store
            .alerts(AlertFilter::Resolved, 100_000)
            .await?
            .iter()
            .any(|a| a.id == id)
    );
    let events: Vec<_> = store
        .alert_events(id)
        .await?
        .into_iter()
        .map(|e| (e.kind, e.at, e.notified))
        .collect();
    assert_eq!(
        events,
        [
            ("opened".to_string(), at(100), true),
            ("resolved".to_string(), at(200), false)
        ]
    );
    // Resolved, the check may open a new incident.
    let reopen = AlertWrite {
        cursor: None,
        existing: None,
        fields: &f,
        event: event("opened", 300),
        notifications: &none,
    };
    assert!(store.write_alert(&reopen).await?.is_some());
    Ok(())
}

async fn acknowledged_notices(store: &dyn Store, id: i64) -> StoreResult<usize> {
    let rows = store.notifications(None, Some(id), 10).await?;
    Ok(rows.iter().filter(|n| n.kind == "acknowledged").count())
}

/// Acknowledgement and false positive are set once; a false positive only when resolved.
pub async fn marks_are_set_once(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("marks");
    let none = |_: i64| Vec::new();
    let f = fields(&host, at(100));
    let w = AlertWrite {
        cursor: None,
        existing: None,
        fields: &f,
        event: event("opened", 100),
        notifications: &none,
    };
    let id = store.write_alert(&w).await?.unwrap_or_default();
    let alice = Mark {
        by: "alice".into(),
        at: at(160),
        comment: "looking".into(),
    };
    let bob = Mark {
        by: "bob".into(),
        at: at(170),
        comment: String::new(),
    };

    let MarkOutcome::StillOpen(_) = store.mark_false_positive(id, &alice).await? else {
        panic!("a false positive needs a resolved alert");
    };
    // The acknowledgement's notice (PagerDuty's `acknowledge`) is queued with the mark, once.
    let mut notice = message(&host, 1, at(160));
    notice.kind = "acknowledged".into();
    let before = acknowledged_notices(store, id).await?;
    let MarkOutcome::Marked(a) = store
        .acknowledge_alert(id, &alice, std::slice::from_ref(&notice))
        .await?
    else {
        panic!("first acknowledgement is taken");
    };
    assert_eq!(a.acknowledged.as_ref(), Some(&alice));
    assert_eq!(acknowledged_notices(store, id).await?, before + 1);
    let MarkOutcome::AlreadyMarked(a) = store
        .acknowledge_alert(id, &bob, std::slice::from_ref(&notice))
        .await?
    else {
        panic!("second acknowledgement is refused");
    };
    assert_eq!(a.acknowledged.map(|m| m.by), Some("alice".to_string()));
    assert_eq!(
        acknowledged_notices(store, id).await?,
        before + 1,
        "a refused mark queues nothing"
    );
    assert_eq!(
        store.acknowledge_alert(-1, &bob, &[]).await?,
        MarkOutcome::NotFound
    );

    let mut resolved = f.clone();
    resolved.resolved_at = Some(at(300));
    let w = AlertWrite {
        cursor: None,
        existing: Some((id, 0)),
        fields: &resolved,
        event: event("resolved", 300),
        notifications: &none,
    };
    assert_eq!(store.write_alert(&w).await?, Some(id));
    let MarkOutcome::Marked(a) = store.mark_false_positive(id, &bob).await? else {
        panic!("false positive on a resolved alert is taken");
    };
    assert_eq!(
        (a.false_positive.map(|m| m.by), a.acknowledged.map(|m| m.by)),
        (Some("bob".into()), Some("alice".into()))
    );
    let kinds: Vec<_> = store
        .alert_events(id)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["opened", "acknowledged", "resolved", "false_positive"]
    );
    Ok(())
}

/// Silences are listed until they end; ending one early records who did it, and an
/// upcoming one ends before it starts.
pub async fn silences_are_listed_until_they_end(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("silence");
    let new = |starts, ends| NewSilence {
        host: Some(host.clone()),
        group: None,
        check: Some("wal.*".into()),
        created_by: "carol".into(),
        reason: "maintenance".into(),
        created_at: at(0),
        starts_at: at(starts),
        ends_at: at(ends),
    };
    let now_ = store.add_silence(&new(0, 3600)).await?;
    let later = store.add_silence(&new(7200, 9000)).await?;
    assert_eq!(
        (
            now_.host.as_deref(),
            now_.check.as_deref(),
            now_.group.as_deref()
        ),
        (Some(host.as_str()), Some("wal.*"), None)
    );
    let listed = |v: Vec<super::alerts::Silence>| {
        v.into_iter()
            .filter(|s| s.host.as_deref() == Some(&host))
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(store.silences(Some(at(100))).await?),
        [now_.id, later.id]
    );
    assert_eq!(
        listed(store.silences(Some(at(3600))).await?),
        [later.id],
        "ended at ends_at"
    );

    let ended = store.end_silence(now_.id, "dave", at(600)).await?;
    assert_eq!(
        ended.map(|s| (s.ends_at, s.ended_by)),
        Some((at(600), Some("dave".into())))
    );
    let ended = store.end_silence(later.id, "dave", at(700)).await?;
    assert_eq!(
        ended.map(|s| s.ends_at),
        Some(at(7200)),
        "an upcoming silence never starts"
    );
    assert_eq!(
        listed(store.silences(Some(at(7200))).await?),
        Vec::<i64>::new()
    );
    assert_eq!(
        listed(store.silences(None).await?).len(),
        2,
        "history keeps them"
    );
    let again = store.end_silence(now_.id, "erin", at(900)).await?;
    assert_eq!(
        again.and_then(|s| s.ended_by),
        Some("dave".into()),
        "ending twice changes nothing"
    );
    assert_eq!(store.end_silence(-1, "erin", at(900)).await?, None);
    Ok(())
}

/// An alert's notices to one recipient of a route are claimed in the order they were queued:
/// a later one (PagerDuty's `acknowledge`) waits while an earlier one (its `trigger`) waits
/// for a retry, or the receiver would get them the wrong way round. Other routes, and other
/// recipients of the same route, do not wait. Runs after the outbox scenarios: its claims,
/// far ahead in time, take every due row of the database.
pub async fn an_alerts_notices_on_one_route_keep_their_order(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("order");
    let t0 = at(20_000_000);
    let secs = chrono::TimeDelta::seconds;
    let f = fields(&host, t0);
    // One recipient per route, and a second one on "pager" (as an email route has).
    let notice = |n, route: &str, kind: &str, created| {
        let mut m = message(&host, n, created);
        m.recipient = format!("{route}@example.com");
        m.route = route.into();
        m.kind = kind.into();
        m
    };
    let opened = |_: i64| {
        let mut second = notice(5, "pager", "opened", t0);
        second.recipient = "second@example.com".into();
        vec![
            notice(1, "pager", "opened", t0),
            notice(2, "chat", "opened", t0),
            second,
        ]
    };
    let w = AlertWrite {
        cursor: None,
        existing: None,
        fields: &f,
        event: event("opened", 20_000_000),
        notifications: &opened,
    };
    let id = store.write_alert(&w).await?.unwrap_or_default();
    let claim = async |now| -> StoreResult<Vec<Notification>> {
        let claimed = store
            .claim_notifications("w1", now, now + secs(60), 100_000, &[])
            .await?;
        Ok(claimed
            .into_iter()
            .filter(|n| n.alert_id == Some(id))
            .collect())
    };
    let routes = |v: &[Notification]| {
        v.iter()
            .map(|n| (n.route.clone(), n.kind.clone()))
            .collect::<Vec<_>>()
    };
    let pair = |route: &str, kind: &str| (route.to_string(), kind.to_string());

    let first = claim(t0).await?;
    assert_eq!(
        first.len(),
        3,
        "both routes' first notices, to every recipient"
    );
    for n in &first {
        if n.recipient == "pager@example.com" {
            assert!(
                store
                    .mark_attempt_failed(n.id, "w1", "503", Some(t0 + secs(30)), false)
                    .await?
            );
        } else {
            assert!(store.mark_sent(n.id, "w1", t0).await?);
        }
    }
    // Acknowledged while the pager's trigger waits for its retry.
    let mark = Mark {
        by: "alice".into(),
        at: t0 + secs(5),
        comment: String::new(),
    };
    let acks = [
        notice(3, "pager", "acknowledged", t0 + secs(5)),
        notice(4, "chat", "acknowledged", t0 + secs(5)),
    ];
    let MarkOutcome::Marked(_) = store.acknowledge_alert(id, &mark, &acks).await? else {
        panic!("the acknowledgement is taken");
    };
    let claimed = claim(t0 + secs(10)).await?;
    assert_eq!(
        routes(&claimed),
        [pair("chat", "acknowledged")],
        "the pager's acknowledgement waits behind its trigger"
    );
    let claimed = claim(t0 + secs(31)).await?;
    assert_eq!(
        routes(&claimed),
        [pair("pager", "opened")],
        "the trigger's retry, the acknowledgement still behind it"
    );
    assert!(store.mark_sent(claimed[0].id, "w1", t0 + secs(31)).await?);
    let claimed = claim(t0 + secs(32)).await?;
    assert_eq!(routes(&claimed), [pair("pager", "acknowledged")]);
    Ok(())
}
