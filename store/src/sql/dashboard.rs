//! Reads of [`SqlStore`] that only the dashboard needs: change marks for live updates and
//! daily samples for fleet trends. Invariant: both are read-only and bounded by indexes or by
//! the time window, so polling them never blocks ingest.

use super::SqlStore;
use super::read::{get, history_entry};
use super::write::query_error;
use crate::{HistoryEntry, StoreResult};
use backwatch_proto::model::ProbeKind;
use chrono::{DateTime, Utc};

const DAY_MS: i64 = 86_400_000;

impl SqlStore {
    pub(super) async fn read_change_marks(&self) -> StoreResult<(i64, i64)> {
        // Each MAX over a primary key is one index lookup on both databases.
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM transitions) AS transition_id, \
             (SELECT COALESCE(MAX(id), 0) FROM alert_events) AS event_id",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("read change marks"))?;
        Ok((get(&row, "transition_id")?, get(&row, "event_id")?))
    }

    pub(super) async fn read_daily_last_results(
        &self,
        kind: ProbeKind,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, HistoryEntry)>> {
        // Integer division by a day buckets by UTC day on both databases (times are integer
        // milliseconds). Two results of one check measured in the same millisecond both
        // match their day's maximum; the later one in result-id order wins below.
        let rows = sqlx::query(
            "SELECT r.host, r.result_id, r.check_id, r.measured_at, r.received_at, r.status, \
             r.summary, r.error, r.observation FROM results r \
             JOIN (SELECT host, check_id, MAX(measured_at) AS last_at FROM results \
                   WHERE check_id LIKE $1 AND measured_at >= $2 \
                   GROUP BY host, check_id, measured_at / $3) d \
             ON r.host = d.host AND r.check_id = d.check_id AND r.measured_at = d.last_at \
             ORDER BY r.host, r.check_id, r.measured_at, r.result_id",
        )
        .bind(super::kind_checks(kind))
        .bind(since.timestamp_millis())
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read daily samples"))?;
        let mut out: Vec<(String, HistoryEntry)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let host: String = get(row, "host")?;
            let entry = history_entry(row)?;
            if let Some((h, last)) = out.last_mut()
                && *h == host
                && last.check == entry.check
                && last.measured_at == entry.measured_at
            {
                *last = entry;
                continue;
            }
            out.push((host, entry));
        }
        Ok(out)
    }
}
