//! WAL configuration compliance probe (`settings.<name>`): the settings the operations
//! procedure asks of a cluster, read over the connection of a `[[wal]]` probe (same DSN,
//! timeouts and role: `current_setting()` needs no privilege).
//!
//! Invariants: one statement, bounded like every PostgreSQL probe (see
//! [`WalProbe::with_session`]); archive_command is reported only as set or not, since its text
//! may hold credentials; `archive_library` (PostgreSQL 15 and later) is read with
//! `missing_ok`, so older servers answer too. The rules compare with the procedure.

use super::wal_archive::{WalProbe, get};
use super::{Outcome, Probe};
use backwatch_common::error::chain;
use backwatch_proto::model::{Observation, ProbeKind, SettingsObs};
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct SettingsProbe {
    pub name: String,
    /// The `[[wal]]` probe whose server this is.
    pub wal: WalProbe,
}

const SETTINGS_SQL: &str = "
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('server_version_num')::int4 AS server_version_num,
       current_setting('wal_level') AS wal_level,
       current_setting('archive_mode') AS archive_mode,
       current_setting('archive_command') <> '' AS archive_command_set,
       coalesce(current_setting('archive_library', true), '') AS archive_library,
       (SELECT setting::int8 FROM pg_settings WHERE name = 'archive_timeout')
         AS archive_timeout_secs";

#[async_trait::async_trait]
impl Probe for SettingsProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Settings
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn target(&self) -> String {
        format!("the server of wal.{}", self.wal.name)
    }

    async fn observe(&self) -> Outcome {
        self.wal
            .with_session(query)
            .await
            .map(Observation::Settings)
    }
}

async fn query(client: &Client) -> Result<SettingsObs, String> {
    let failed = |e: tokio_postgres::Error| format!("query failed: {}", chain(&e));
    let row = client.query_one(SETTINGS_SQL, &[]).await.map_err(failed)?;
    let bad = |e: String| format!("query failed: {e}");
    Ok(SettingsObs {
        in_recovery: get(&row, "in_recovery").map_err(bad)?,
        server_version_num: get(&row, "server_version_num").map_err(bad)?,
        wal_level: get(&row, "wal_level").map_err(bad)?,
        archive_mode: get(&row, "archive_mode").map_err(bad)?,
        archive_command_set: get(&row, "archive_command_set").map_err(bad)?,
        archive_library: get(&row, "archive_library").map_err(bad)?,
        archive_timeout_secs: get(&row, "archive_timeout_secs").map_err(bad)?,
    })
}
