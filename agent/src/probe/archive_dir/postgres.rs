//! What the linked server says it archived, asked over the `[[wal]]` probe's connection
//! settings (same DSN, timeouts and role) just before the directory is listed.
//!
//! Two statements: the archiver's statistics and settings (required), then the control data
//! (optional: `pg_control_system()` and `pg_control_checkpoint()` are open to every role by
//! default, but a hardened server may revoke them; then the cluster's age is unknown).

use crate::probe::wal_archive::{WalProbe, get, redact_command, time};
use backwatch_common::error::chain;
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

/// The facts, or why they could not be read ("cannot connect: ...").
pub type Answer = Result<Facts, String>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub in_recovery: bool,
    pub archive_mode: String,
    /// Credentials masked.
    pub archive_command: String,
    pub archive_library: String,
    pub wal_segment_size: u64,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    /// The current timeline: from the current WAL file on a primary, from the latest
    /// checkpoint on a standby; `None` when the control data could not be read.
    pub timeline: Option<u32>,
    /// When `initdb` ran: the system identifier's upper 32 bits are its Unix time.
    pub cluster_created_at: Option<DateTime<Utc>>,
}

/// pg_stat_archiver with the settings that explain it, in one statement. The segment size is
/// read as in the WAL probe (PG 10 reports 8 kB blocks, later versions bytes).
const ARCHIVER_SQL: &str = "
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('archive_mode') AS archive_mode,
       current_setting('archive_command') AS archive_command,
       coalesce(current_setting('archive_library', true), '') AS archive_library,
       (SELECT setting::int8 * CASE unit WHEN '8kB' THEN 8192 WHEN 'kB' THEN 1024
                                         WHEN 'MB' THEN 1048576 ELSE 1 END
          FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size_bytes,
       a.archived_count,
       a.last_archived_wal,
       (extract(epoch FROM a.last_archived_time) * 1000000)::int8 AS last_archived_us,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal_file
  FROM pg_stat_archiver a";

const CONTROL_SQL: &str = "
SELECT (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline";

pub async fn ask(wal: &WalProbe) -> Answer {
    wal.with_session(query).await
}

async fn query(client: &Client) -> Answer {
    let failed = |e: tokio_postgres::Error| format!("query failed: {}", chain(&e));
    let row = client.query_one(ARCHIVER_SQL, &[]).await.map_err(failed)?;
    let bad = |e: String| format!("query failed: {e}");
    let current_wal_file: Option<String> = get(&row, "current_wal_file").map_err(bad)?;
    let mut facts = Facts {
        in_recovery: get(&row, "in_recovery").map_err(bad)?,
        archive_mode: get(&row, "archive_mode").map_err(bad)?,
        archive_command: redact_command(&get::<String>(&row, "archive_command").map_err(bad)?),
        archive_library: get(&row, "archive_library").map_err(bad)?,
        wal_segment_size: u64::try_from(get::<i64>(&row, "wal_segment_size_bytes").map_err(bad)?)
            .unwrap_or(0),
        archived_count: get(&row, "archived_count").map_err(bad)?,
        last_archived_wal: get(&row, "last_archived_wal").map_err(bad)?,
        last_archived_time: time(&row, "last_archived_us").map_err(bad)?,
        timeline: current_wal_file
            .as_deref()
            .and_then(|f| f.get(0..8))
            .and_then(|t| u32::from_str_radix(t, 16).ok()),
        cluster_created_at: None,
    };
    // Optional: a server that revoked these still gets the archive checked.
    match client.query_one(CONTROL_SQL, &[]).await {
        Ok(row) => {
            if let Ok(id) = get::<i64>(&row, "system_identifier") {
                facts.cluster_created_at = created_at(id);
            }
            if facts.timeline.is_none()
                && let Ok(t) = get::<i32>(&row, "checkpoint_timeline")
            {
                facts.timeline = u32::try_from(t).ok();
            }
        }
        Err(e) => tracing::debug!(error = %chain(&e), "control data not readable"),
    }
    Ok(facts)
}

/// `initdb` builds the system identifier from its clock: seconds << 32 | microseconds << 12 |
/// pid. A time before 2000 is not a real initdb time (a hand-made identifier): unknown.
pub fn created_at(system_identifier: i64) -> Option<DateTime<Utc>> {
    let secs = (system_identifier as u64) >> 32;
    let t = DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    (t.timestamp() >= 946_684_800).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_identifier_dates_initdb() {
        // What initdb would build at 2023-11-14 22:13:20.123456 UTC as pid 42.
        let id = (1_700_000_000_i64 << 32) | (123_456 << 12) | 42;
        let t = created_at(id).expect("a time");
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20+00:00");
        assert_eq!(created_at(42), None);
    }
}
