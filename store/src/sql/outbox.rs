//! [`OutboxStore`] for [`SqlStore`]. Invariants are those of [`crate::outbox`]: every
//! step after the claim is conditional on the claim still being the caller's.

use super::read::{get, opt_time, time};
use super::write::query_error;
use super::{Backend, SqlStore};
use crate::outbox::{
    Channel, Destination, NewNotification, Notification, OutboxState, OutboxStore,
};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::str::FromStr;
use std::sync::OnceLock;

macro_rules! outbox_columns {
    () => {
        "id, alert_id, event_id, kind, route, channel, recipient, subject, body_text, \
         body_html, payload, message_id, thread_id, state, attempts, created_at, \
         next_attempt_at, claimed_by, lease_until, handed_over_at, sent_at, last_error, \
         attachments"
    };
}

/// Due rows, oldest first, except one whose alert has an earlier row to the same recipient of
/// the same route still unfinished: an alert's notices reach each receiver in order (a
/// PagerDuty `acknowledge` or `resolve` overtaking its `trigger` that waits for a retry would
/// be dropped there, and the late trigger would page), and one failing recipient of an email
/// route holds back no other. Index `outbox_unfinished` answers the `NOT EXISTS`. Rows of
/// busy destinations are left for later: emails when `$5` is 1, webhooks to the URLs in the
/// `webhooks` parameters from `$6` on.
fn due_rows(webhooks: usize) -> String {
    let mut sql = String::from(
        "SELECT id FROM outbox o \
         WHERE ((o.state = 'pending' AND o.next_attempt_at <= $2) \
         OR (o.state = 'sending' AND o.lease_until <= $2)) \
         AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.alert_id = o.alert_id \
         AND e.route = o.route AND e.recipient = o.recipient AND e.id < o.id \
         AND e.state IN ('pending', 'sending') AND e.alert_id IS NOT NULL) \
         AND ($5 = 0 OR o.channel <> 'email')",
    );
    if webhooks > 0 {
        let params: Vec<String> = (6..6 + webhooks).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(
            " AND NOT (o.channel = 'webhook' AND o.recipient IN ({}))",
            params.join(", ")
        ));
    }
    sql.push_str(" ORDER BY o.id LIMIT $4");
    sql
}

/// Busy webhook URLs one claim leaves out: the statement is spelt for 0, 1, 2, 4, … of them
/// (the list padded with its last URL), each spelling built once, as sqlx takes a
/// `&'static str` as safe SQL and a few spellings share its statement cache. Beyond the last
/// (a collector with more webhook routes than this hanging at once) the rest stay claimable.
const BUSY_SPELLINGS: [usize; 8] = [0, 1, 2, 4, 8, 16, 32, 64];

/// The claim for `webhooks` busy URLs, and how many URL parameters its spelling takes (the
/// list is padded up to that). PostgreSQL skips rows another collector is claiming this moment
/// instead of waiting for them; SQLite has one writer at a time (`BEGIN IMMEDIATE`).
fn claim_sql(backend: Backend, webhooks: usize) -> (&'static str, usize) {
    static SPELLINGS: OnceLock<[Vec<&'static str>; 2]> = OnceLock::new();
    let spellings = SPELLINGS.get_or_init(|| {
        [Backend::Sqlite, Backend::Postgres].map(|b| {
            let lock = match b {
                Backend::Sqlite => "",
                Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
            };
            BUSY_SPELLINGS
                .iter()
                .map(|&n| {
                    let sql = format!(
                        "UPDATE outbox SET state = 'sending', claimed_by = $1, claimed_at = $2, \
                         lease_until = $3, attempts = attempts + 1 WHERE id IN ({}{lock}) \
                         RETURNING {}",
                        due_rows(n),
                        outbox_columns!()
                    );
                    &*Box::leak(sql.into_boxed_str())
                })
                .collect()
        })
    });
    let slot = BUSY_SPELLINGS
        .iter()
        .position(|&n| n >= webhooks)
        .unwrap_or(BUSY_SPELLINGS.len() - 1);
    (
        spellings[usize::from(backend == Backend::Postgres)][slot],
        BUSY_SPELLINGS[slot],
    )
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn parsed<T: FromStr<Err = String>>(row: &AnyRow, column: &'static str) -> StoreResult<T> {
    T::from_str(&get::<String>(row, column)?).map_err(|problem| StoreError::Corrupt {
        what: column,
        problem,
    })
}

fn notification(row: &AnyRow) -> StoreResult<Notification> {
    let attempts: i64 = get(row, "attempts")?;
    Ok(Notification {
        id: get(row, "id")?,
        alert_id: get(row, "alert_id")?,
        event_id: get(row, "event_id")?,
        kind: get(row, "kind")?,
        route: get(row, "route")?,
        channel: parsed::<Channel>(row, "channel")?,
        recipient: get(row, "recipient")?,
        subject: get(row, "subject")?,
        body_text: get(row, "body_text")?,
        body_html: get(row, "body_html")?,
        payload: get(row, "payload")?,
        message_id: get(row, "message_id")?,
        thread_id: get(row, "thread_id")?,
        state: parsed::<OutboxState>(row, "state")?,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt {
            what: "attempts",
            problem: format!("{attempts} is out of range"),
        })?,
        created_at: time(row, "created_at")?,
        next_attempt_at: time(row, "next_attempt_at")?,
        claimed_by: get(row, "claimed_by")?,
        lease_until: opt_time(row, "lease_until")?,
        handed_over_at: opt_time(row, "handed_over_at")?,
        sent_at: opt_time(row, "sent_at")?,
        last_error: get(row, "last_error")?,
        attachments: get(row, "attachments")?,
    })
}

/// Queue one message inside the caller's transaction; due at once.
pub(super) async fn insert_notification(
    conn: &mut AnyConnection,
    alert_id: Option<i64>,
    event_id: Option<i64>,
    n: &NewNotification,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (alert_id, event_id, kind, route, channel, recipient, subject, \
         body_text, body_html, payload, message_id, thread_id, state, attempts, created_at, \
         next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', 0, $13, $13)",
    )
    .bind(alert_id)
    .bind(event_id)
    .bind(n.kind.as_str())
    .bind(n.route.as_str())
    .bind(n.channel.as_str())
    .bind(n.recipient.as_str())
    .bind(n.subject.as_str())
    .bind(n.body_text.as_str())
    .bind(n.body_html.as_str())
    .bind(n.payload.as_str())
    .bind(n.message_id.as_str())
    .bind(n.thread_id.as_deref())
    .bind(ms(n.created_at))
    .execute(conn)
    .await
    .map_err(query_error("insert notification"))?;
    Ok(())
}

#[async_trait::async_trait]
impl OutboxStore for SqlStore {
    async fn enqueue_notifications(&self, items: &[NewNotification]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for n in items {
            insert_notification(&mut tx, None, None, n).await?;
        }
        tx.commit()
            .await
            .map_err(query_error("commit notifications"))
    }

    async fn claim_notifications(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        busy: &[Destination],
    ) -> StoreResult<Vec<Notification>> {
        let webhooks: Vec<&str> = busy
            .iter()
            .filter_map(|d| match d {
                Destination::Webhook(url) => Some(url.as_str()),
                Destination::Smtp => None,
            })
            .take(BUSY_SPELLINGS[BUSY_SPELLINGS.len() - 1])
            .collect();
        let (sql, spelt) = claim_sql(self.backend, webhooks.len());
        let mut query = sqlx::query(sql)
            .bind(worker)
            .bind(ms(now))
            .bind(ms(lease_until))
            .bind(i64::from(limit))
            .bind(i64::from(busy.contains(&Destination::Smtp)));
        for i in 0..spelt {
            query = query.bind(webhooks[i.min(webhooks.len() - 1)]);
        }
        let mut tx = self.begin().await?;
        let mut claimed = query
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error("claim notifications"))?
            .iter()
            .map(notification)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(query_error("commit claim"))?;
        // RETURNING promises no order.
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    async fn release_claims(&self, worker: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE outbox SET state = 'pending', next_attempt_at = $2, lease_until = NULL \
             WHERE state = 'sending' AND claimed_by = $1",
        )
        .bind(worker)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(query_error("release claims"))?
        .rows_affected();
        Ok(n)
    }

    async fn renew_claim(
        &self,
        id: i64,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE outbox SET lease_until = $3 \
             WHERE id = $1 AND claimed_by = $2 AND state = 'sending'",
        )
        .bind(id)
        .bind(worker)
        .bind(ms(lease_until))
        .execute(&self.pool)
        .await
        .map_err(query_error("renew claim"))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn mark_handed_over(
        &self,
        id: i64,
        worker: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE outbox SET handed_over_at = $3 \
             WHERE id = $1 AND claimed_by = $2 AND state = 'sending'",
        )
        .bind(id)
        .bind(worker)
        .bind(ms(at))
        .execute(&self.pool)
        .await
        .map_err(query_error("mark handed over"))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn mark_sent(&self, id: i64, worker: &str, at: DateTime<Utc>) -> StoreResult<bool> {
        let _gate = self.write_gate().await;
        let n = sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $3, lease_until = NULL \
             WHERE id = $1 AND claimed_by = $2 AND state = 'sending'",
        )
        .bind(id)
        .bind(worker)
        .bind(ms(at))
        .execute(&self.pool)
        .await
        .map_err(query_error("mark sent"))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn mark_attempt_failed(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        in_doubt: bool,
    ) -> StoreResult<bool> {
        let _gate = self.write_gate().await;
        // 0 stands for "no retry" (sentinel rather than a typed NULL, as in `notifications`).
        let query = sqlx::query(
            "UPDATE outbox SET \
             state = CASE WHEN $4 = 0 THEN 'failed' ELSE 'pending' END, \
             next_attempt_at = CASE WHEN $4 = 0 THEN next_attempt_at ELSE $4 END, \
             last_error = $3, lease_until = NULL, \
             handed_over_at = CASE WHEN $5 = 1 THEN handed_over_at ELSE NULL END \
             WHERE id = $1 AND claimed_by = $2 AND state = 'sending'",
        );
        let n = query
            .bind(id)
            .bind(worker)
            .bind(error)
            .bind(retry_at.map_or(0, ms))
            .bind(i64::from(in_doubt))
            .execute(&self.pool)
            .await
            .map_err(query_error("mark attempt failed"))?
            .rows_affected();
        Ok(n == 1)
    }

    async fn prune_notifications(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        // In batches, each its own statement: the first pass after an upgrade may find years
        // of rows, and one statement deleting them all would hold SQLite's write lock (and
        // ingest behind it) for as long as it takes.
        const BATCH: i64 = 1000;
        let mut deleted = 0;
        loop {
            let _gate = self.write_gate().await;
            let n = sqlx::query(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
                 WHERE state IN ('sent', 'failed') AND created_at < $1 LIMIT $2)",
            )
            .bind(before.timestamp_millis())
            .bind(BATCH)
            .execute(&self.pool)
            .await
            .map_err(query_error("prune notifications"))?
            .rows_affected();
            deleted += n;
            if n < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    async fn outbox_counts(&self) -> StoreResult<Vec<(OutboxState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("count notifications"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let state: String = get(row, "state")?;
            let n: i64 = get(row, "n")?;
            // A state this version does not know is not a backlog it can describe.
            if let Ok(st) = state.parse::<OutboxState>() {
                out.push((st, n));
            }
        }
        Ok(out)
    }

    async fn notifications(
        &self,
        state: Option<OutboxState>,
        alert_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        // '' and 0 stand for "any": sentinels keep one statement without typed NULLs.
        sqlx::query(concat!(
            "SELECT ",
            outbox_columns!(),
            " FROM outbox WHERE ($1 = '' OR state = $1) AND ($2 = 0 OR alert_id = $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(state.map_or("", OutboxState::as_str))
        .bind(alert_id.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list notifications"))?
        .iter()
        .map(notification)
        .collect()
    }
}
