//! Read-modify-write steps of [`SqlStore`](super::SqlStore), each run inside a transaction
//! the caller owns. Invariant: the state of a check reflects its newest measurement, and a
//! transition row exists exactly when a write changed the status.

use super::{Backend, read};
use crate::status::Status;
use crate::store::{Evaluated, Inserted, StoreError, StoreResult};
use backwatch_proto::model::ProbeResult;
use sqlx::AnyConnection;

const INSERT_RESULT: &str = include_str!("../queries/insert_result.sql");
const UPSERT_CHECK_STATE: &str = include_str!("../queries/upsert_check_state.sql");
const INSERT_TRANSITION: &str = include_str!("../queries/insert_transition.sql");

pub(super) fn query_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// What a write needs to know about the state it replaces.
pub(super) struct PrevState {
    pub(super) status: Status,
    pub(super) summary: String,
    pub(super) since: i64,
    pub(super) observed_at: Option<i64>,
    pub(super) received_at: Option<i64>,
}

pub(super) async fn read_state(
    conn: &mut AnyConnection,
    backend: Backend,
    host: &str,
    check: &str,
) -> StoreResult<Option<PrevState>> {
    let Some(row) = sqlx::query(backend.state_for_update())
        .bind(host)
        .bind(check)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error("read check state"))?
    else {
        return Ok(None);
    };
    Ok(Some(PrevState {
        status: read::status(&row, "status")?,
        summary: read::get(&row, "summary")?,
        since: read::get(&row, "since")?,
        observed_at: read::get(&row, "observed_at")?,
        received_at: read::get(&row, "received_at")?,
    }))
}

pub(super) async fn record_one(
    conn: &mut AnyConnection,
    backend: Backend,
    host: &str,
    item: &Evaluated,
) -> StoreResult<Inserted> {
    let result = &item.result;
    let verdict = &item.verdict;
    let check = result.check_id();
    let kind = kind_name(result)?;
    let measured_at = result.measured_at.timestamp_millis();
    let received_at = item.received_at.timestamp_millis();
    // Order measurements by agent time, but never later than their arrival: one result from
    // an agent whose clock ran ahead must not make every later (correct) result look older
    // and freeze the check's state.
    let ordered_at = measured_at.min(received_at);
    let observation = result
        .observation
        .as_ref()
        .map(|o| to_json("observation", o))
        .transpose()?;
    let inserted = sqlx::query(INSERT_RESULT)
        .bind(result.result_id.as_str())
        .bind(host)
        .bind(check.as_str())
        .bind(kind.as_str())
        .bind(measured_at)
        .bind(received_at)
        .bind(verdict.status.as_str())
        .bind(verdict.summary.as_str())
        .bind(result.error.as_deref())
        .bind(observation)
        .bind(i64::from(result.duration_ms))
        .bind(i64::from(result.interval_secs))
        .execute(&mut *conn)
        .await
        .map_err(query_error("insert result"))?
        .rows_affected();
    if inserted == 0 {
        return Ok(Inserted::Duplicate);
    }
    // Reports read hourly and daily rollups, kept in this same transaction.
    super::rollups::apply(conn, backend, host, &check, &kind, item).await?;

    let prev = read_state(conn, backend, host, &check).await?;
    // The state shows the newest measurement. A result measured before the one the state
    // already holds (replayed from a spool after newer results got through) belongs to
    // history only: applying it would roll the status back and invent two transitions.
    // Equal times are applied: the later arrival wins.
    if let Some(prev) = &prev
        && prev.observed_at.is_some_and(|seen| ordered_at < seen)
    {
        return Ok(Inserted::New);
    }
    let from = prev.as_ref().map(|p| p.status);
    let changed = from != Some(verdict.status);
    let since = match &prev {
        Some(prev) if !changed => prev.since,
        _ => received_at,
    };
    sqlx::query(UPSERT_CHECK_STATE)
        .bind(host)
        .bind(check.as_str())
        .bind(verdict.status.as_str())
        .bind(verdict.summary.as_str())
        .bind(since)
        .bind(ordered_at)
        .bind(received_at)
        .bind(i64::from(result.interval_secs))
        .bind(result.result_id.as_str())
        .bind(to_json("last result", result)?)
        .bind(to_json("verdict details", &verdict.details)?)
        .execute(&mut *conn)
        .await
        .map_err(query_error("upsert check state"))?;
    if changed {
        let change = Change {
            host,
            check: &check,
            at: received_at,
            from,
            to: verdict.status,
            summary: &verdict.summary,
            result_id: Some(&result.result_id),
        };
        insert_transition(conn, backend, &change).await?;
    }
    Ok(Inserted::New)
}

pub(super) struct Change<'a> {
    pub(super) host: &'a str,
    pub(super) check: &'a str,
    pub(super) at: i64,
    pub(super) from: Option<Status>,
    pub(super) to: Status,
    pub(super) summary: &'a str,
    pub(super) result_id: Option<&'a str>,
}

/// Appends to the transition log. On PostgreSQL the writer first takes the log's advisory
/// lock in shared mode, held until it commits: the alert engine reads the log only while it
/// can take that lock exclusively (see `transitions_after`), i.e. when no transaction that
/// drew a transition id is still uncommitted, so a cursor over ids never steps over a row
/// that commits later. Shared holders never wait for each other, and the engine only tries
/// the lock, so this adds no waiting and no deadlock. SQLite writers are serialised anyway.
pub(super) async fn insert_transition(
    conn: &mut AnyConnection,
    backend: Backend,
    c: &Change<'_>,
) -> StoreResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(super::TRANSITION_LOG_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(query_error("lock transition log"))?;
    }
    sqlx::query(INSERT_TRANSITION)
        .bind(c.host)
        .bind(c.check)
        .bind(c.at)
        .bind(c.from.map(Status::as_str))
        .bind(c.to.as_str())
        .bind(c.summary)
        .bind(c.result_id)
        .execute(conn)
        .await
        .map_err(query_error("insert transition"))?;
    Ok(())
}

/// The serde name of the probe kind (`backup_dir`), the spelling the API and JSON use.
pub(super) fn kind_name(result: &ProbeResult) -> StoreResult<String> {
    match serde_json::to_value(result.kind) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        other => Err(StoreError::Corrupt {
            what: "probe kind",
            problem: format!("does not serialise to a string: {other:?}"),
        }),
    }
}

fn to_json(what: &'static str, value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what,
        problem: e.to_string(),
    })
}
