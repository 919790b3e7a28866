//! Silences of [`SqlStore`], called by its `AlertStore` implementation. A silence is never
//! deleted: ending one moves `ends_at` and records who ended it.

use super::SqlStore;
use super::read::{get, time};
use super::write::query_error;
use crate::StoreResult;
use crate::alerts::{NewSilence, Silence};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

macro_rules! select_silences {
    ($tail:literal) => {
        concat!(
            "SELECT id, host, group_name, check_id, created_by, reason, created_at, starts_at, \
             ends_at, ended_by FROM silences ",
            $tail
        )
    };
}

fn silence(row: &AnyRow) -> StoreResult<Silence> {
    Ok(Silence {
        id: get(row, "id")?,
        host: get(row, "host")?,
        group: get(row, "group_name")?,
        check: get(row, "check_id")?,
        created_by: get(row, "created_by")?,
        reason: get(row, "reason")?,
        created_at: time(row, "created_at")?,
        starts_at: time(row, "starts_at")?,
        ends_at: time(row, "ends_at")?,
        ended_by: get(row, "ended_by")?,
    })
}

pub(super) async fn add(store: &SqlStore, s: &NewSilence) -> StoreResult<Silence> {
    let _gate = store.write_gate().await;
    sqlx::query(
        "INSERT INTO silences (host, group_name, check_id, created_by, reason, created_at, \
         starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING id, host, group_name, check_id, created_by, reason, created_at, \
         starts_at, ends_at, ended_by",
    )
    .bind(s.host.as_deref())
    .bind(s.group.as_deref())
    .bind(s.check.as_deref())
    .bind(s.created_by.as_str())
    .bind(s.reason.as_str())
    .bind(ms(s.created_at))
    .bind(ms(s.starts_at))
    .bind(ms(s.ends_at))
    .fetch_one(&store.pool)
    .await
    .map_err(query_error("insert silence"))
    .and_then(|row| silence(&row))
}

pub(super) async fn list(store: &SqlStore, at: Option<DateTime<Utc>>) -> StoreResult<Vec<Silence>> {
    let query = match at {
        Some(at) => sqlx::query(select_silences!("WHERE ends_at > $1 ORDER BY id")).bind(ms(at)),
        None => sqlx::query(select_silences!("ORDER BY id")),
    };
    query
        .fetch_all(&store.pool)
        .await
        .map_err(query_error("list silences"))?
        .iter()
        .map(silence)
        .collect()
}

pub(super) async fn end(
    store: &SqlStore,
    id: i64,
    by: &str,
    at: DateTime<Utc>,
) -> StoreResult<Option<Silence>> {
    let mut tx = store.begin().await?;
    // An upcoming silence ends where it would have started (ends_at >= starts_at).
    sqlx::query(
        "UPDATE silences SET ends_at = CASE WHEN starts_at > $2 THEN starts_at ELSE $2 END, \
         ended_by = $3 WHERE id = $1 AND ends_at > $2",
    )
    .bind(id)
    .bind(ms(at))
    .bind(by)
    .execute(&mut *tx)
    .await
    .map_err(query_error("end silence"))?;
    let s = sqlx::query(select_silences!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("read silence"))?
        .as_ref()
        .map(silence)
        .transpose()?;
    tx.commit()
        .await
        .map_err(query_error("commit silence end"))?;
    Ok(s)
}
