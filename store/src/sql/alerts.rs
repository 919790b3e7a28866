//! [`AlertStore`] for [`SqlStore`]: alerts, their events, silences and the engine's cursor.
//! Invariants are those of [`crate::alerts`]; the compare-and-set writes below are how
//! they hold with several engines on one database.

use super::outbox::insert_notification;
use super::read::{get, opt_time, parse_status, status, time};
use super::write::query_error;
use super::{Backend, SqlStore, TRANSITION_LOG_LOCK, silences};
use crate::alerts::{
    Alert, AlertEvent, AlertFields, AlertFilter, AlertStore, AlertWrite, LoggedTransition, Mark,
    MarkOutcome, NewSilence, Severity, Silence,
};
use crate::outbox::NewNotification;
use crate::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::str::FromStr;

macro_rules! select_alerts {
    ($tail:literal) => {
        concat!(
            "SELECT id, version, host, check_id, status, severity, peak_severity, \
             notified_severity, summary, opened_at, updated_at, last_change_at, \
             last_notified_at, resolved_at, flapping, silenced, acked_at, acked_by, \
             ack_comment, false_positive_at, false_positive_by, false_positive_comment \
             FROM alerts ",
            $tail
        )
    };
}
const INSERT_ALERT: &str = "INSERT INTO alerts (host, check_id, status, severity, \
    peak_severity, notified_severity, summary, opened_at, updated_at, last_change_at, \
    last_notified_at, resolved_at, flapping, silenced, version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0) RETURNING id";
const UPDATE_ALERT: &str = "UPDATE alerts SET host = $1, check_id = $2, status = $3, \
    severity = $4, peak_severity = $5, notified_severity = $6, summary = $7, opened_at = $8, \
    updated_at = $9, last_change_at = $10, last_notified_at = $11, resolved_at = $12, \
    flapping = $13, silenced = $14, version = version + 1 WHERE id = $15 AND version = $16";

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn severity(row: &AnyRow, column: &'static str) -> StoreResult<Severity> {
    parse_severity(column, &get::<String>(row, column)?)
}

fn parse_severity(what: &'static str, text: &str) -> StoreResult<Severity> {
    Severity::from_str(text).map_err(|problem| StoreError::Corrupt { what, problem })
}

fn mark(
    row: &AnyRow,
    at: &'static str,
    by: &'static str,
    comment: &'static str,
) -> StoreResult<Option<Mark>> {
    let Some(at) = opt_time(row, at)? else {
        return Ok(None);
    };
    Ok(Some(Mark {
        at,
        by: get::<Option<String>>(row, by)?.unwrap_or_default(),
        comment: get::<Option<String>>(row, comment)?.unwrap_or_default(),
    }))
}

pub(super) fn alert(row: &AnyRow) -> StoreResult<Alert> {
    Ok(Alert {
        id: get(row, "id")?,
        version: get(row, "version")?,
        fields: AlertFields {
            host: get(row, "host")?,
            check: get(row, "check_id")?,
            status: status(row, "status")?,
            severity: severity(row, "severity")?,
            peak_severity: severity(row, "peak_severity")?,
            notified_severity: get::<Option<String>>(row, "notified_severity")?
                .map(|s| parse_severity("notified_severity", &s))
                .transpose()?,
            summary: get(row, "summary")?,
            opened_at: time(row, "opened_at")?,
            updated_at: time(row, "updated_at")?,
            last_change_at: time(row, "last_change_at")?,
            last_notified_at: opt_time(row, "last_notified_at")?,
            resolved_at: opt_time(row, "resolved_at")?,
            flapping: get::<i64>(row, "flapping")? != 0,
            silenced: get::<i64>(row, "silenced")? != 0,
        },
        acknowledged: mark(row, "acked_at", "acked_by", "ack_comment")?,
        false_positive: mark(
            row,
            "false_positive_at",
            "false_positive_by",
            "false_positive_comment",
        )?,
    })
}

fn event(row: &AnyRow) -> StoreResult<AlertEvent> {
    Ok(AlertEvent {
        id: get(row, "id")?,
        alert_id: get(row, "alert_id")?,
        at: time(row, "at")?,
        kind: get(row, "kind")?,
        status: status(row, "status")?,
        summary: get(row, "summary")?,
        notified: get::<i64>(row, "notified")? != 0,
        transition_id: get(row, "transition_id")?,
    })
}

fn logged_transition(row: &AnyRow) -> StoreResult<LoggedTransition> {
    Ok(LoggedTransition {
        id: get(row, "id")?,
        host: get(row, "host")?,
        check: get(row, "check_id")?,
        at: time(row, "at")?,
        from: get::<Option<String>>(row, "from_status")?
            .map(|s| parse_status("from_status", &s))
            .transpose()?,
        to: status(row, "to_status")?,
        summary: get(row, "summary")?,
    })
}

/// A unique-index violation: another engine opened the same alert first.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn read_alert(conn: &mut AnyConnection, id: i64) -> StoreResult<Option<Alert>> {
    sqlx::query(select_alerts!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(query_error("read alert"))?
        .as_ref()
        .map(alert)
        .transpose()
}

/// The event of a mark, with the alert's status at that moment.
async fn mark_event(conn: &mut AnyConnection, id: i64, kind: &str, m: &Mark) -> StoreResult<()> {
    let summary = if m.comment.is_empty() {
        format!("{kind} by {}", m.by)
    } else {
        format!("{kind} by {}: {}", m.by, m.comment)
    };
    sqlx::query(
        "INSERT INTO alert_events (alert_id, at, kind, status, summary, notified) \
         SELECT id, $2, $3, status, $4, 0 FROM alerts WHERE id = $1",
    )
    .bind(id)
    .bind(ms(m.at))
    .bind(kind.replace(' ', "_"))
    .bind(summary)
    .execute(conn)
    .await
    .map_err(query_error("insert mark event"))?;
    Ok(())
}

impl SqlStore {
    /// The id below which no transition can still appear (see `write::insert_transition`);
    /// `None` when a writer is in flight right now, `Some(None)` for "no bound" (SQLite).
    async fn transition_horizon(&self) -> StoreResult<Option<Option<i64>>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(None));
        }
        let mut tx = self.begin().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(TRANSITION_LOG_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error("try transition log lock"))?
            .try_get(0)
            .map_err(query_error("read transition log lock"))?;
        if !got {
            return Ok(None);
        }
        let max: Option<i64> = sqlx::query("SELECT MAX(id) AS max_id FROM transitions")
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error("read transition horizon"))?
            .try_get("max_id")
            .map_err(query_error("read transition horizon"))?;
        tx.commit()
            .await
            .map_err(query_error("release transition log lock"))?;
        Ok(Some(Some(max.unwrap_or(0))))
    }

    async fn mark(
        &self,
        id: i64,
        m: &Mark,
        set: &'static str,
        kind: &str,
        notices: &[NewNotification],
    ) -> StoreResult<MarkOutcome> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(set)
            .bind(id)
            .bind(ms(m.at))
            .bind(m.by.as_str())
            .bind(m.comment.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_error("mark alert"))?
            .rows_affected();
        if changed == 1 {
            mark_event(&mut tx, id, kind, m).await?;
            for n in notices {
                insert_notification(&mut tx, Some(id), None, n).await?;
            }
        }
        let alert = read_alert(&mut tx, id).await?;
        tx.commit().await.map_err(query_error("commit mark"))?;
        Ok(match alert {
            None => MarkOutcome::NotFound,
            Some(a) if changed == 1 => MarkOutcome::Marked(a),
            Some(a) if kind == "false positive" && a.fields.resolved_at.is_none() => {
                MarkOutcome::StillOpen(a)
            }
            Some(a) => MarkOutcome::AlreadyMarked(a),
        })
    }
}

#[async_trait::async_trait]
impl AlertStore for SqlStore {
    async fn alert_cursor(&self) -> StoreResult<i64> {
        sqlx::query("SELECT position FROM cursors WHERE name = 'alerts'")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("read alert cursor"))
            .and_then(|row| get(&row, "position"))
    }

    async fn advance_alert_cursor(&self, from: i64, to: i64) -> StoreResult<bool> {
        let _gate = self.write_gate().await;
        let n =
            sqlx::query("UPDATE cursors SET position = $2 WHERE name = 'alerts' AND position = $1")
                .bind(from)
                .bind(to)
                .execute(&self.pool)
                .await
                .map_err(query_error("advance alert cursor"))?
                .rows_affected();
        Ok(n == 1)
    }

    async fn transitions_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoggedTransition>> {
        let Some(horizon) = self.transition_horizon().await? else {
            return Ok(Vec::new());
        };
        sqlx::query(
            "SELECT id, host, check_id, at, from_status, to_status, summary FROM transitions \
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(horizon.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read transitions after cursor"))?
        .iter()
        .map(logged_transition)
        .collect()
    }

    async fn change_times(
        &self,
        host: &str,
        check: &str,
        since: DateTime<Utc>,
        up_to: i64,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        sqlx::query(
            "SELECT at FROM transitions WHERE host = $1 AND check_id = $2 AND at >= $3 \
             AND id <= $4 ORDER BY id",
        )
        .bind(host)
        .bind(check)
        .bind(ms(since))
        .bind(up_to)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read change times"))?
        .iter()
        .map(|row| time(row, "at"))
        .collect()
    }

    async fn open_alerts(&self) -> StoreResult<Vec<Alert>> {
        sqlx::query(select_alerts!("WHERE resolved_at IS NULL ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list open alerts"))?
            .iter()
            .map(alert)
            .collect()
    }

    async fn write_alert(&self, w: &AlertWrite<'_>) -> StoreResult<Option<i64>> {
        let mut tx = self.begin().await?;
        if let Some((from, to)) = w.cursor {
            let moved = sqlx::query(
                "UPDATE cursors SET position = $2 WHERE name = 'alerts' AND position = $1",
            )
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .map_err(query_error("advance alert cursor"))?
            .rows_affected();
            if moved != 1 {
                return Ok(None);
            }
        }
        let f = w.fields;
        let sql = match w.existing {
            None => INSERT_ALERT,
            Some(_) => UPDATE_ALERT,
        };
        let query = sqlx::query(sql)
            .bind(f.host.as_str())
            .bind(f.check.as_str())
            .bind(f.status.as_str())
            .bind(f.severity.as_str())
            .bind(f.peak_severity.as_str())
            .bind(f.notified_severity.map(Severity::as_str))
            .bind(f.summary.as_str())
            .bind(ms(f.opened_at))
            .bind(ms(f.updated_at))
            .bind(ms(f.last_change_at))
            .bind(f.last_notified_at.map(ms))
            .bind(f.resolved_at.map(ms))
            .bind(i64::from(f.flapping))
            .bind(i64::from(f.silenced));
        let id = match w.existing {
            None => match query.fetch_one(&mut *tx).await {
                Ok(row) => get::<i64>(&row, "id")?,
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(query_error("insert alert")(e)),
            },
            Some((id, version)) => {
                let n = query
                    .bind(id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("update alert"))?
                    .rows_affected();
                if n != 1 {
                    return Ok(None);
                }
                id
            }
        };
        let notifications = (w.notifications)(id);
        let event_id: i64 = sqlx::query(
            "INSERT INTO alert_events (alert_id, at, kind, status, summary, notified, \
             transition_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(id)
        .bind(ms(w.event.at))
        .bind(w.event.kind)
        .bind(f.status.as_str())
        .bind(w.event.summary.as_str())
        .bind(i64::from(!notifications.is_empty()))
        .bind(w.event.transition_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("insert alert event"))
        .and_then(|row| get(&row, "id"))?;
        for n in &notifications {
            insert_notification(&mut tx, Some(id), Some(event_id), n).await?;
        }
        tx.commit().await.map_err(query_error("commit alert"))?;
        Ok(Some(id))
    }

    async fn alerts(&self, filter: AlertFilter, limit: u32) -> StoreResult<Vec<Alert>> {
        let query = match filter {
            AlertFilter::Open => sqlx::query(select_alerts!(
                "WHERE resolved_at IS NULL ORDER BY id DESC LIMIT $1"
            )),
            AlertFilter::Resolved => sqlx::query(select_alerts!(
                "WHERE resolved_at IS NOT NULL ORDER BY id DESC LIMIT $1"
            )),
            AlertFilter::All => sqlx::query(select_alerts!("ORDER BY id DESC LIMIT $1")),
        };
        query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list alerts"))?
            .iter()
            .map(alert)
            .collect()
    }

    async fn alert(&self, id: i64) -> StoreResult<Option<Alert>> {
        let mut conn = self.pool.acquire().await.map_err(query_error("acquire"))?;
        read_alert(&mut conn, id).await
    }

    async fn alert_events(&self, alert_id: i64) -> StoreResult<Vec<AlertEvent>> {
        sqlx::query(
            "SELECT id, alert_id, at, kind, status, summary, notified, transition_id \
             FROM alert_events WHERE alert_id = $1 ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list alert events"))?
        .iter()
        .map(event)
        .collect()
    }

    async fn acknowledge_alert(
        &self,
        id: i64,
        m: &Mark,
        notices: &[NewNotification],
    ) -> StoreResult<MarkOutcome> {
        const SET: &str = "UPDATE alerts SET acked_at = $2, acked_by = $3, ack_comment = $4 \
                           WHERE id = $1 AND acked_at IS NULL";
        self.mark(id, m, SET, "acknowledged", notices).await
    }

    async fn mark_false_positive(&self, id: i64, m: &Mark) -> StoreResult<MarkOutcome> {
        const SET: &str = "UPDATE alerts SET false_positive_at = $2, false_positive_by = $3, \
                           false_positive_comment = $4 \
                           WHERE id = $1 AND false_positive_at IS NULL AND resolved_at IS NOT NULL";
        self.mark(id, m, SET, "false positive", &[]).await
    }

    async fn add_silence(&self, s: &NewSilence) -> StoreResult<Silence> {
        silences::add(self, s).await
    }

    async fn silences(&self, at: Option<DateTime<Utc>>) -> StoreResult<Vec<Silence>> {
        silences::list(self, at).await
    }

    async fn end_silence(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Silence>> {
        silences::end(self, id, by, at).await
    }
}
