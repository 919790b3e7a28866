//! [`ReportStore`] for [`SqlStore`]. Invariants are those of [`crate::reports`]; the
//! claim of a report run and the queueing of its messages share one transaction.

use super::SqlStore;
use super::outbox::insert_notification;
use super::read::{get, time};
use super::rollups::{decode, rollup_columns, upsert_many};
use super::write::query_error;
use crate::StoreResult;
use crate::alerts::Alert;
use crate::outbox::NewNotification;
use crate::reports::{Attachment, DAY_MS, Period, ReportRun, ReportStore, Rollup};
use chrono::{DateTime, Utc};

const SELECT_ALERTS_OPENED: &str = "SELECT id, version, host, check_id, status, severity, \
    peak_severity, notified_severity, summary, opened_at, updated_at, last_change_at, \
    last_notified_at, resolved_at, flapping, silenced, acked_at, acked_by, ack_comment, \
    false_positive_at, false_positive_by, false_positive_comment FROM alerts \
    WHERE opened_at >= $1 AND opened_at < $2 ORDER BY opened_at, id";

fn run(row: &sqlx::any::AnyRow) -> StoreResult<ReportRun> {
    Ok(ReportRun {
        key: get(row, "run_key")?,
        kind: get(row, "kind")?,
        period: get(row, "period")?,
        scheduled_at: time(row, "scheduled_at")?,
        claimed_at: time(row, "claimed_at")?,
        claimed_by: get(row, "claimed_by")?,
        baseline: get::<i64>(row, "baseline")? != 0,
        notifications: get(row, "notifications")?,
    })
}

#[async_trait::async_trait]
impl ReportStore for SqlStore {
    async fn rollups(
        &self,
        period: Period,
        from_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<Rollup>> {
        sqlx::query(concat!(
            "SELECT ",
            rollup_columns!(),
            " FROM rollups WHERE period = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             ORDER BY host, check_id, bucket_start"
        ))
        .bind(period.as_str())
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read rollups"))?
        .iter()
        .map(decode)
        .collect()
    }

    async fn put_rollups(&self, rows: &[Rollup]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // One statement cannot upsert a row twice: the last copy of a key wins, as it would
        // one statement at a time.
        let mut last = std::collections::BTreeMap::new();
        for r in rows {
            last.insert(
                (r.host.as_str(), r.check.as_str(), r.period, r.bucket_start),
                r,
            );
        }
        let rows: Vec<&Rollup> = last.into_values().collect();
        upsert_many(&mut tx, &rows).await?;
        tx.commit().await.map_err(query_error("commit rollups"))
    }

    async fn prune_rollups(&self, period: Period, before_ms: i64) -> StoreResult<u64> {
        // A day of buckets per statement, oldest first, along the (period, bucket_start)
        // index: a first pass over years of hourly rows never holds the write lock for long.
        let mut deleted = 0;
        loop {
            let oldest = sqlx::query(
                "SELECT bucket_start FROM rollups WHERE period = $1 AND bucket_start < $2 \
                 ORDER BY bucket_start LIMIT 1",
            )
            .bind(period.as_str())
            .bind(before_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("look for rollups to prune"))?;
            let Some(oldest) = oldest else {
                return Ok(deleted);
            };
            let oldest: i64 = get(&oldest, "bucket_start")?;
            let until = before_ms.min(oldest.saturating_add(DAY_MS));
            let _gate = self.write_gate().await;
            deleted += sqlx::query("DELETE FROM rollups WHERE period = $1 AND bucket_start < $2")
                .bind(period.as_str())
                .bind(until)
                .execute(&self.pool)
                .await
                .map_err(query_error("prune rollups"))?
                .rows_affected();
        }
    }

    async fn alerts_opened_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<Alert>> {
        sqlx::query(SELECT_ALERTS_OPENED)
            .bind(from.timestamp_millis())
            .bind(until.timestamp_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list alerts opened"))?
            .iter()
            .map(super::alerts::alert)
            .collect()
    }

    async fn latest_report_runs(&self) -> StoreResult<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT kind, MAX(run_key) AS run_key FROM report_runs GROUP BY kind")
                .fetch_all(&self.pool)
                .await
                .map_err(query_error("latest report runs"))?;
        rows.iter()
            .map(|r| Ok((get(r, "kind")?, get(r, "run_key")?)))
            .collect()
    }

    async fn claim_report_run(
        &self,
        r: &ReportRun,
        notifications: &[(NewNotification, Vec<Attachment>)],
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // On PostgreSQL a concurrent claim of the same key waits here for the first to
        // commit, then inserts nothing: the loser queues no message.
        let claimed = sqlx::query(
            "INSERT INTO report_runs (run_key, kind, period, scheduled_at, claimed_at, \
             claimed_by, baseline, notifications) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (run_key) DO NOTHING",
        )
        .bind(r.key.as_str())
        .bind(r.kind.as_str())
        .bind(r.period.as_str())
        .bind(r.scheduled_at.timestamp_millis())
        .bind(r.claimed_at.timestamp_millis())
        .bind(r.claimed_by.as_str())
        .bind(i64::from(r.baseline))
        .bind(i64::try_from(notifications.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(query_error("claim report run"))?
        .rows_affected();
        if claimed == 0 {
            return Ok(false); // dropping the transaction rolls it back
        }
        for (n, parts) in notifications {
            insert_notification(&mut tx, None, None, n).await?;
            if !parts.is_empty() {
                let json =
                    serde_json::to_string(parts).map_err(|e| crate::StoreError::Corrupt {
                        what: "attachments",
                        problem: e.to_string(),
                    })?;
                sqlx::query("UPDATE outbox SET attachments = $1 WHERE message_id = $2")
                    .bind(json)
                    .bind(n.message_id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("store attachments"))?;
            }
        }
        tx.commit()
            .await
            .map_err(query_error("commit report run"))?;
        Ok(true)
    }

    async fn report_runs(&self, limit: u32) -> StoreResult<Vec<ReportRun>> {
        sqlx::query(
            "SELECT run_key, kind, period, scheduled_at, claimed_at, claimed_by, baseline, \
             notifications FROM report_runs ORDER BY claimed_at DESC, run_key DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list report runs"))?
        .iter()
        .map(run)
        .collect()
    }
}
