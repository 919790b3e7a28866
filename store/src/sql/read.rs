//! Row decoders of [`SqlStore`](super::SqlStore). Invariant: whatever the database holds
//! comes back as a value or as `StoreError::Corrupt` naming the column, never as a panic.

use crate::{CheckState, HistoryEntry, HostFacts, HostRecord, StoreError, StoreResult, Transition};
use backwatch_proto::model::labels::Labels;
use backwatch_proto::model::{Observation, ProbeResult};
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use std::str::FromStr;

pub(super) fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(|e| StoreError::Corrupt {
        what: column,
        problem: e.to_string(),
    })
}

pub(super) fn time(row: &AnyRow, column: &'static str) -> StoreResult<DateTime<Utc>> {
    millis_to_time(column, get(row, column)?)
}

pub(super) fn opt_time(row: &AnyRow, column: &'static str) -> StoreResult<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, column)?
        .map(|ms| millis_to_time(column, ms))
        .transpose()
}

fn millis_to_time(what: &'static str, ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        what,
        problem: format!("{ms} ms is not a representable time"),
    })
}

pub(super) fn status(row: &AnyRow, column: &'static str) -> StoreResult<Status> {
    parse_status(column, &get::<String>(row, column)?)
}

pub(super) fn parse_status(what: &'static str, text: &str) -> StoreResult<Status> {
    Status::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        problem: e.to_string(),
    })
}

fn json(row: &AnyRow, column: &'static str) -> StoreResult<Option<serde_json::Value>> {
    get::<Option<String>>(row, column)?
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: column,
                problem: e.to_string(),
            })
        })
        .transpose()
}

/// A host's stored labels (a JSON object; `{}` for a host that never sent any).
fn labels(row: &AnyRow) -> StoreResult<Labels> {
    let text: String = get(row, "labels")?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        what: "labels",
        problem: e.to_string(),
    })
}

pub(super) fn host_record(row: &AnyRow) -> StoreResult<HostRecord> {
    Ok(HostRecord {
        host: get(row, "host")?,
        first_seen: time(row, "first_seen")?,
        last_contact: time(row, "last_contact")?,
        silent: get::<i64>(row, "silent")? != 0,
        facts: HostFacts {
            agent_version: get(row, "agent_version")?,
            hostname: get(row, "hostname")?,
            os: get(row, "os")?,
            instance_id: get(row, "instance_id")?,
            clock_skew_ms: get(row, "clock_skew_ms")?,
            labels: labels(row)?,
        },
    })
}

pub(super) fn check_state(row: &AnyRow) -> StoreResult<CheckState> {
    let host: String = get(row, "host")?;
    let check: String = get(row, "check_id")?;
    let interval: i64 = get(row, "interval_secs")?;
    // The previous result only feeds rules that compare with it. JSON written by an older
    // collector may no longer parse as today's `ProbeResult`; that costs one comparison, so
    // it is logged and dropped instead of failing every read of the fleet's state.
    let last_result = get::<Option<String>>(row, "last_result")?.and_then(|text| {
        serde_json::from_str::<ProbeResult>(&text)
            .inspect_err(|e| {
                tracing::warn!(host = %host, check = %check, error = %e,
                    "stored last result does not parse, ignoring it");
            })
            .ok()
    });
    Ok(CheckState {
        status: status(row, "status")?,
        summary: get(row, "summary")?,
        since: time(row, "since")?,
        observed_at: opt_time(row, "observed_at")?,
        received_at: opt_time(row, "received_at")?,
        interval_secs: u32::try_from(interval).map_err(|_| StoreError::Corrupt {
            what: "interval_secs",
            problem: format!("{interval} is out of range"),
        })?,
        last_result_id: get(row, "last_result_id")?,
        last_result,
        details: json(row, "details")?.unwrap_or(serde_json::Value::Null),
        host,
        check,
    })
}

pub(super) fn history_entry(row: &AnyRow) -> StoreResult<HistoryEntry> {
    Ok(HistoryEntry {
        result_id: get(row, "result_id")?,
        check: get(row, "check_id")?,
        measured_at: time(row, "measured_at")?,
        received_at: time(row, "received_at")?,
        status: status(row, "status")?,
        summary: get(row, "summary")?,
        error: get(row, "error")?,
        observation: observation(row)?,
    })
}

/// A stored observation, decoded once into its type (older kind names included). One written
/// by a newer collector of a shared store may not decode here: the result is still shown, its
/// observation left out, as a chart point without a value.
fn observation(row: &AnyRow) -> StoreResult<Option<Observation>> {
    Ok(get::<Option<String>>(row, "observation")?.and_then(|text| {
        serde_json::from_str(&text)
            .inspect_err(|e| tracing::debug!(error = %e, "stored observation does not parse"))
            .ok()
    }))
}

pub(super) fn transition(row: &AnyRow) -> StoreResult<Transition> {
    Ok(Transition {
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
