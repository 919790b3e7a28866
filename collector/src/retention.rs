//! What is kept for `store.retention` and then deleted: raw results (host by host), the
//! hourly rollups (only the daily report, which reads the last 24 hours, uses them) and the
//! notifications that are finished (sent, or given up), whose bodies and report charts are
//! most of the outbox's size. Without this the hourly rollups alone grow by a row per check
//! and hour, tens of millions a year on a fleet of hundreds of hosts.
//!
//! What outlives them: check states, the transition log, alerts, the daily rollups the
//! monthly review reads, and notifications still to be delivered. Run by the leading
//! collector only (see `leader`); deleting is idempotent, so an overlap at a leadership change
//! costs only a repeated delete.

use crate::leader::Leader;
use crate::store::reports::Period;
use crate::store::{Store, StoreResult};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// How often retention runs. Hourly keeps each pass small (an hour of results per host).
pub const EVERY: Duration = Duration::from_secs(3600);

/// How many rows one pass deleted, by what they were.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub results: u64,
    pub hourly_rollups: u64,
    pub notifications: u64,
}

/// Delete what is older than `now - keep`: every host's results measured before it, hourly
/// rollups of hours that began before it, finished notifications created before it.
pub async fn prune(store: &dyn Store, keep: Duration, now: DateTime<Utc>) -> StoreResult<Pruned> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let Some(before) = now.checked_sub_signed(keep) else {
        return Ok(Pruned::default());
    };
    let mut pruned = Pruned::default();
    for h in store.hosts().await? {
        pruned.results += store.prune_results(&h.host, before).await?;
    }
    pruned.hourly_rollups = store
        .prune_rollups(Period::Hour, before.timestamp_millis())
        .await?;
    pruned.notifications = store.prune_notifications(before).await?;
    Ok(pruned)
}

pub async fn run(store: Arc<dyn Store>, keep: Duration, leader: Leader) {
    // Shortly after start (a collector that was down a day catches up at once), then hourly.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(60), EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !leader.is_leader() {
            continue;
        }
        match prune(store.as_ref(), keep, Utc::now()).await {
            Ok(p) if p == Pruned::default() => {}
            Ok(p) => info!(
                results = p.results,
                hourly_rollups = p.hourly_rollups,
                notifications = p.notifications,
                "retention: deleted what is older than the limit"
            ),
            Err(e) => error!(error = %e, "retention pass failed; retrying next hour"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use crate::store::SqlStore;
    use crate::store::outbox::{OutboxState, OutboxStore};
    use crate::store::reports::ReportStore;
    use crate::store::suite::{at, evaluated, probe_result, unique_host};
    use crate::store::suite_alerts::message;
    use backwatch_proto::model::ProbeKind;

    #[tokio::test]
    async fn prunes_results_hourly_rollups_and_finished_notifications_before_the_limit() {
        let store = SqlStore::open("sqlite::memory:").await.unwrap();
        let hosts = [unique_host("a"), unique_host("b")];
        for h in &hosts {
            store.touch_host(h, at(0), None).await.unwrap();
            for (n, secs) in [(1, 0), (2, 86_400), (3, 2 * 86_400)] {
                let r = probe_result(h, n, ProbeKind::Disk, "root", secs);
                store
                    .record_results(h, &[evaluated(r, Status::Ok, "fine")])
                    .await
                    .unwrap();
            }
        }
        // Day 0: one delivered and one still pending; day 2: one delivered.
        let old = [message(&hosts[0], 1, at(0)), message(&hosts[0], 2, at(0))];
        let new = message(&hosts[0], 3, at(2 * 86_400));
        store.enqueue_notifications(&old).await.unwrap();
        let claimed = store
            .claim_notifications("w", at(1), at(61), 1, &[])
            .await
            .unwrap();
        assert!(store.mark_sent(claimed[0].id, "w", at(2)).await.unwrap());
        store.enqueue_notifications(&[new]).await.unwrap();
        let claimed = store
            .claim_notifications("w", at(2 * 86_400 + 1), at(2 * 86_400 + 61), 10, &[])
            .await
            .unwrap();
        for n in claimed.iter().filter(|n| n.created_at == at(2 * 86_400)) {
            assert!(
                store
                    .mark_sent(n.id, "w", at(2 * 86_400 + 2))
                    .await
                    .unwrap()
            );
        }

        // Keep one day and a half, measured from day two plus an hour: day 0 goes.
        let now = at(2 * 86_400 + 3600);
        let keep = Duration::from_secs(86_400 + 43_200);
        let pruned = prune(&store, keep, now).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                results: 2,
                hourly_rollups: 2,
                notifications: 1
            }
        );
        for h in &hosts {
            assert_eq!(store.history(h, None, at(0), 10).await.unwrap().len(), 2);
        }
        let span = (
            at(-86_400).timestamp_millis(),
            at(3 * 86_400).timestamp_millis(),
        );
        let hours = store.rollups(Period::Hour, span.0, span.1).await.unwrap();
        assert_eq!(hours.len(), 4, "days 1 and 2 of both hosts: {hours:?}");
        let days = store.rollups(Period::Day, span.0, span.1).await.unwrap();
        assert_eq!(days.len(), 6, "daily rollups are kept");
        let left: Vec<_> = store
            .notifications(None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.created_at, n.state))
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&(at(2 * 86_400), OutboxState::Sent)));
        assert!(
            left.iter()
                .any(|(t, s)| *t == at(0) && *s != OutboxState::Sent),
            "the undelivered one stays: {left:?}"
        );
        assert_eq!(
            prune(&store, Duration::MAX, now).await.unwrap(),
            Pruned::default()
        );
    }
}
