//! The outbox part of the store contract (`OutboxStore`), run by `suite_alerts::run_all`;
//! the same rules as `suite`: own rows only, shared database, whole milliseconds.

use super::outbox::{Channel, Destination, Notification, OutboxState};
use super::suite::{at, unique_host};
use super::suite_alerts::message;
use super::{Store, StoreResult};
use chrono::TimeDelta;

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    outbox_claims_are_exclusive_leased_and_conditional(store).await?;
    concurrent_claims_never_share_a_row(store).await?;
    busy_destinations_are_left_for_later(store).await?;
    finished_notifications_are_pruned(store).await?;
    Ok(())
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// The notifications of `host`'s scenario (their message ids start with it), in given order.
fn of_host(host: &str, v: Vec<Notification>) -> Vec<Notification> {
    let prefix = format!("<{host}-");
    v.into_iter()
        .filter(|n| n.message_id.starts_with(&prefix))
        .collect()
}

/// A claim is exclusive until its lease ends; every later step needs the claim; retries wait
/// for their time; a worker starting again releases its own claims.
pub async fn outbox_claims_are_exclusive_leased_and_conditional(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("outbox");
    // Far ahead of every other scenario's rows, so claims at these times see them too but
    // the assertions look only at ours.
    let t0 = at(10_000_000);
    let ours: Vec<_> = (1..=3).map(|n| message(&host, n, t0)).collect();
    store.enqueue_notifications(&ours).await?;
    let mine = |v: Vec<Notification>| of_host(&host, v);

    let claimed = mine(
        store
            .claim_notifications("w1", t0, t0 + secs(60), 100_000, &[])
            .await?,
    );
    let ids: Vec<_> = claimed.iter().map(|n| n.id).collect();
    assert_eq!(claimed.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(claimed.iter().all(|n| n.attempts == 1
        && n.state == OutboxState::Sending
        && n.claimed_by.as_deref() == Some("w1")));
    assert!(
        mine(
            store
                .claim_notifications("w2", t0 + secs(10), t0 + secs(70), 100_000, &[])
                .await?
        )
        .is_empty(),
        "leased"
    );

    let (a, b, c) = (ids[0], ids[1], ids[2]);
    assert!(!store.mark_sent(a, "w2", t0).await?, "only the holder");
    assert!(store.renew_claim(a, "w1", t0 + secs(120)).await?);
    assert!(store.mark_handed_over(a, "w1", t0 + secs(1)).await?);
    assert!(store.mark_sent(a, "w1", t0 + secs(2)).await?);
    assert!(!store.mark_sent(a, "w1", t0 + secs(3)).await?, "sent once");

    assert!(store.mark_handed_over(b, "w1", t0 + secs(1)).await?);
    assert!(
        store
            .mark_attempt_failed(b, "w1", "451 4.3.0 try later", Some(t0 + secs(30)), false)
            .await?
    );
    assert!(
        store
            .mark_attempt_failed(c, "w1", "550 5.1.1 no such user", None, false)
            .await?
    );

    let all = mine(store.notifications(None, None, 100_000).await?);
    let by_id = |id| all.iter().find(|n| n.id == id).cloned();
    let (na, nb, nc) = (by_id(a), by_id(b), by_id(c));
    assert_eq!(
        na.as_ref().map(|n| (n.state, n.sent_at)),
        Some((OutboxState::Sent, Some(t0 + secs(2))))
    );
    assert_eq!(
        nb.as_ref()
            .map(|n| (n.state, n.next_attempt_at, n.handed_over_at)),
        Some((OutboxState::Pending, t0 + secs(30), None)),
        "a definite answer clears the doubt"
    );
    assert_eq!(
        nb.as_ref().and_then(|n| n.last_error.clone()),
        Some("451 4.3.0 try later".into())
    );
    assert_eq!(nc.as_ref().map(|n| n.state), Some(OutboxState::Failed));
    let failed = mine(
        store
            .notifications(Some(OutboxState::Failed), None, 100_000)
            .await?,
    );
    assert_eq!(failed.iter().map(|n| n.id).collect::<Vec<_>>(), [c]);

    assert!(
        mine(
            store
                .claim_notifications("w2", t0 + secs(29), t0 + secs(90), 100_000, &[])
                .await?
        )
        .is_empty(),
        "not due yet"
    );
    let retry = mine(
        store
            .claim_notifications("w2", t0 + secs(30), t0 + secs(90), 100_000, &[])
            .await?,
    );
    assert_eq!(
        retry.iter().map(|n| (n.id, n.attempts)).collect::<Vec<_>>(),
        [(b, 2)]
    );
    assert!(store.mark_handed_over(b, "w2", t0 + secs(31)).await?);
    // w2 dies here. Its next start releases the claim at once, keeping the doubt.
    assert!(store.release_claims("w2", t0 + secs(40)).await? >= 1);
    let again = mine(
        store
            .claim_notifications("w3", t0 + secs(40), t0 + secs(100), 100_000, &[])
            .await?,
    );
    assert_eq!(
        again
            .iter()
            .map(|n| (n.id, n.attempts, n.handed_over_at))
            .collect::<Vec<_>>(),
        [(b, 3, Some(t0 + secs(31)))]
    );
    // w3 dies too, and nobody restarts it: the lease runs out and anyone may take it.
    assert!(
        mine(
            store
                .claim_notifications("w4", t0 + secs(99), t0 + secs(200), 100_000, &[])
                .await?
        )
        .is_empty()
    );
    let late = mine(
        store
            .claim_notifications("w4", t0 + secs(100), t0 + secs(200), 100_000, &[])
            .await?,
    );
    assert_eq!(
        late.iter()
            .map(|n| (n.id, n.claimed_by.clone()))
            .collect::<Vec<_>>(),
        [(b, Some("w4".into()))]
    );
    assert!(
        !store.mark_sent(b, "w3", t0 + secs(101)).await?,
        "the dead worker's claim is gone"
    );
    assert!(store.mark_sent(b, "w4", t0 + secs(101)).await?);
    Ok(())
}

/// Two workers claiming at the same moment get disjoint rows (on PostgreSQL through
/// `FOR UPDATE SKIP LOCKED`).
pub async fn concurrent_claims_never_share_a_row(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("race");
    let t0 = at(20_000_000);
    let ours: Vec<_> = (1..=6).map(|n| message(&host, n, t0)).collect();
    store.enqueue_notifications(&ours).await?;
    let mut seen = Vec::new();
    for round in 0..6 {
        let now = t0 + secs(round);
        let (x, y) = futures_util::join!(
            store.claim_notifications("wx", now, now + secs(3600), 1, &[]),
            store.claim_notifications("wy", now, now + secs(3600), 1, &[]),
        );
        for n in x?.into_iter().chain(y?) {
            assert!(!seen.contains(&n.id), "row {} claimed twice", n.id);
            seen.push(n.id);
        }
    }
    Ok(())
}

/// A claim leaves the rows of busy destinations (the SMTP relay, a webhook URL) for later and
/// takes the others.
pub async fn busy_destinations_are_left_for_later(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("busy");
    let t0 = at(30_000_000);
    let hook = |n: u32, url: &str| {
        let mut m = message(&host, n, t0);
        m.channel = Channel::Webhook;
        m.recipient = url.into();
        m
    };
    let (a, b) = (
        "https://a.example.com/hook/s3cret",
        "https://b.example.com/x?key=k",
    );
    let ours = vec![
        message(&host, 1, t0),
        hook(2, a),
        hook(3, b),
        message(&host, 4, t0),
        hook(5, a),
    ];
    store.enqueue_notifications(&ours).await?;
    let ids = |v: Vec<Notification>| -> Vec<String> {
        of_host(&host, v)
            .into_iter()
            .map(|n| n.message_id)
            .collect()
    };
    let busy = [Destination::Smtp, Destination::Webhook(a.into())];
    let first = ids(store
        .claim_notifications("wb", t0, t0 + secs(60), 100_000, &busy)
        .await?);
    assert_eq!(first, [format!("<{host}-3@example.com>")], "only b's row");
    let rest = ids(store
        .claim_notifications(
            "wb",
            t0,
            t0 + secs(60),
            100_000,
            &[Destination::Webhook(b.into())],
        )
        .await?);
    let want: Vec<_> = [1, 2, 4, 5]
        .iter()
        .map(|n| format!("<{host}-{n}@example.com>"))
        .collect();
    assert_eq!(rest, want, "the rest once their destinations are free");
    Ok(())
}

/// Retention deletes sent and given-up rows created before the cut; a row still to be
/// delivered stays however old, and so do newer ones. Far in the past, so the claims here
/// see no other scenario's rows.
pub async fn finished_notifications_are_pruned(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("outbox-prune");
    let old = at(-400 * 86_400);
    let newer = at(-100 * 86_400);
    store
        .enqueue_notifications(&(1..=3).map(|n| message(&host, n, old)).collect::<Vec<_>>())
        .await?;
    let mine = |v: Vec<Notification>| of_host(&host, v);
    let claimed = mine(
        store
            .claim_notifications("wp", old + secs(1), old + secs(61), 100_000, &[])
            .await?,
    );
    assert_eq!(claimed.len(), 3);
    let (sent, given_up, waiting) = (claimed[0].id, claimed[1].id, claimed[2].id);
    assert!(store.mark_sent(sent, "wp", old + secs(2)).await?);
    assert!(
        store
            .mark_attempt_failed(given_up, "wp", "550 no such user", None, false)
            .await?
    );
    assert!(
        store
            .mark_attempt_failed(waiting, "wp", "451 try later", Some(newer), false)
            .await?
    );
    store
        .enqueue_notifications(&[message(&host, 4, newer)])
        .await?;
    let fresh = mine(
        store
            .claim_notifications("wp", newer + secs(1), newer + secs(61), 100_000, &[])
            .await?,
    );
    let recent = fresh
        .iter()
        .find(|n| n.created_at == newer)
        .map(|n| n.id)
        .expect("the newer row is claimed");
    assert!(store.mark_sent(recent, "wp", newer + secs(2)).await?);

    let deleted = store.prune_notifications(at(-200 * 86_400)).await?;
    assert!(deleted >= 2, "the sent and the given-up row, got {deleted}");
    let mut left: Vec<_> = mine(store.notifications(None, None, 100_000).await?)
        .into_iter()
        .map(|n| n.id)
        .collect();
    left.sort_unstable();
    assert_eq!(
        left,
        [waiting, recent],
        "the undelivered and the newer row stay"
    );
    Ok(())
}
