//! Raw results are kept for `store.retention`; older ones are deleted host by host.
//!
//! What outlives them: check states, the transition log, alerts and the hourly and daily
//! report rollups, which are small and are what the monthly review reads. Run by the leading
//! collector only (see `leader`); deleting is idempotent, so an overlap at a leadership change
//! costs only a repeated delete.

use crate::leader::Leader;
use crate::store::{Store, StoreResult};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// How often retention runs. Hourly keeps each pass small (an hour of results per host).
pub const EVERY: Duration = Duration::from_secs(3600);

/// Delete every host's results measured before `now - keep`; returns how many went.
pub async fn prune(store: &dyn Store, keep: Duration, now: DateTime<Utc>) -> StoreResult<u64> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let Some(before) = now.checked_sub_signed(keep) else {
        return Ok(0);
    };
    let mut deleted = 0;
    for h in store.hosts().await? {
        deleted += store.prune_results(&h.host, before).await?;
    }
    Ok(deleted)
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
            Ok(0) => {}
            Ok(n) => info!(
                deleted = n,
                "retention: deleted results older than the limit"
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
    use crate::store::suite::{at, evaluated, probe_result, unique_host};
    use backwatch_proto::model::ProbeKind;

    #[tokio::test]
    async fn prunes_every_host_before_the_limit() {
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
        // Keep one day and a half, measured from day two plus an hour: days 0 and 1 go.
        let now = at(2 * 86_400 + 3600);
        let keep = Duration::from_secs(86_400 + 43_200);
        assert_eq!(prune(&store, keep, now).await.unwrap(), 2);
        for h in &hosts {
            assert_eq!(store.history(h, None, at(0), 10).await.unwrap().len(), 2);
        }
        assert_eq!(prune(&store, Duration::MAX, now).await.unwrap(), 0);
    }
}
