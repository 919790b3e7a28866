//! Read-modify-write steps of [`SqlStore`](super::SqlStore) for one check at a time (silence,
//! overdue), each run inside a transaction the caller owns, and what they share with the
//! group write (`group`). Invariant: a transition row exists exactly when a write changed the
//! status.

use super::{Backend, read};
use crate::{StoreError, StoreResult};
use backwatch_rules::status::Status;
use sqlx::AnyConnection;

const INSERT_TRANSITION: &str = include_str!("../queries/insert_transition.sql");

pub(super) fn query_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// What a write needs to know about the state it replaces.
pub(super) struct PrevState {
    pub(super) status: Status,
    pub(super) summary: String,
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
        received_at: read::get(&row, "received_at")?,
    }))
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
        lock_transition_log(conn).await?;
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

/// Takes the transition log's advisory lock in shared mode until commit (PostgreSQL only; see
/// [`insert_transition`]).
pub(super) async fn lock_transition_log(conn: &mut AnyConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(super::TRANSITION_LOG_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(query_error("lock transition log"))?;
    Ok(())
}

pub(super) fn to_json(what: &'static str, value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what,
        problem: e.to_string(),
    })
}
