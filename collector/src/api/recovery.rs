//! `GET /api/v1/recovery?host=`: per cluster, what a restore could reach now and what a crash
//! would lose (docs/checks.md R31, R32), gathered from the latest verdicts.
//!
//! A cluster is a `[[wal]]` server: its `wal.<name>` check gives the data at risk, and an
//! `archive.<x>` check linked to it (`wal = "<name>"`) gives the recoverable window. An archive
//! without a linked server is a cluster of its own, named `archive.<x>`; so is a pgBackRest
//! stanza or Barman server check (`pgbackrest.<x>`, `barman.<x>`), with the narrowest window
//! of its sets. Nothing is computed
//! here that the rules did not decide: the figures are the checks' details, side by side, so
//! the API, the host page and the reports cannot disagree.

use super::{ApiError, ApiState};
use crate::status::Status;
use crate::store::CheckState;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/recovery", get(recovery))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterRecovery {
    pub host: String,
    /// The `[[wal]]` name, or `archive.<name>` for an archive no server is linked to.
    pub cluster: String,
    /// Worst status of the checks below.
    pub status: Status,
    pub wal_check: Option<String>,
    /// The check that gives the window: `archive.<x>`, `pgbackrest.<x>` or `barman.<x>`.
    pub archive_check: Option<String>,
    /// R31: seconds of committed work a crash would lose now; `None` = not applicable or
    /// unknown (see the WAL check), or no WAL check.
    pub data_at_risk_secs: Option<i64>,
    pub data_at_risk_segment: Option<String>,
    pub max_data_at_risk_secs: Option<i64>,
    /// R32: the window (`start`, `end`, `earliest_backup`, `latest_backup`, `end_segment`,
    /// `cut_at`, ...), as the archive check reported it.
    pub window: Option<Value>,
    pub window_secs: Option<i64>,
    pub window_note: Option<String>,
}

impl ClusterRecovery {
    fn new(host: &str, cluster: String) -> Self {
        ClusterRecovery {
            host: host.to_string(),
            cluster,
            status: Status::Ok,
            wal_check: None,
            archive_check: None,
            data_at_risk_secs: None,
            data_at_risk_segment: None,
            max_data_at_risk_secs: None,
            window: None,
            window_secs: None,
            window_note: None,
        }
    }

    fn worsen(&mut self, s: Status) {
        if s.rank() > self.status.rank() {
            self.status = s;
        }
    }
}

/// The clusters of `checks` (any hosts), by host then cluster name.
pub fn clusters(checks: &[CheckState]) -> Vec<ClusterRecovery> {
    let mut out: BTreeMap<(String, String), ClusterRecovery> = BTreeMap::new();
    let text = |v: &Value| v.as_str().map(String::from);
    for c in checks {
        let Some((kind, name)) = c.check.split_once('.') else {
            continue;
        };
        let d = &c.details;
        let cluster = match kind {
            "wal" => name.to_string(),
            "archive" => text(&d["wal_probe"]).unwrap_or_else(|| c.check.clone()),
            "pgbackrest" | "barman" => c.check.clone(),
            _ => continue,
        };
        let entry = out
            .entry((c.host.clone(), cluster.clone()))
            .or_insert_with(|| ClusterRecovery::new(&c.host, cluster));
        entry.worsen(c.status);
        if kind == "wal" {
            entry.wal_check = Some(c.check.clone());
            entry.data_at_risk_secs = d["data_at_risk_secs"].as_i64();
            entry.data_at_risk_segment = text(&d["data_at_risk_segment"]);
            entry.max_data_at_risk_secs = d["max_data_at_risk_secs"].as_i64();
        } else {
            entry.archive_check = Some(c.check.clone());
            entry.window = Some(d["window"].clone()).filter(|w| w.is_object());
            entry.window_secs = d["window_secs"].as_i64();
            entry.window_note = text(&d["window_note"]);
        }
    }
    out.into_values().collect()
}

#[derive(Deserialize)]
struct RecoveryQuery {
    host: Option<String>,
}

async fn recovery(
    State(s): State<ApiState>,
    Query(q): Query<RecoveryQuery>,
) -> Result<Json<Vec<ClusterRecovery>>, ApiError> {
    let checks = s.store.check_states(q.host.as_deref()).await?;
    Ok(Json(clusters(&checks)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn state(host: &str, check: &str, status: Status, details: Value) -> CheckState {
        CheckState {
            host: host.into(),
            check: check.into(),
            status,
            summary: String::new(),
            since: Utc::now(),
            observed_at: None,
            received_at: None,
            interval_secs: 60,
            last_result_id: None,
            last_result: None,
            details,
        }
    }

    #[test]
    fn a_linked_archive_joins_its_server_and_an_unlinked_one_stands_alone() {
        let window = json!({"start": "2026-12-01T00:00:00Z", "end": "2026-12-04T10:00:00Z"});
        let checks = [
            state(
                "db1",
                "wal.main",
                Status::Ok,
                json!({"data_at_risk_secs": 42, "max_data_at_risk_secs": 900}),
            ),
            state(
                "db1",
                "archive.main",
                Status::Critical,
                json!({"wal_probe": "main", "window": window, "window_secs": 300}),
            ),
            state(
                "db1",
                "archive.copy",
                Status::Ok,
                json!({"window": null, "window_note": "no base backup history file"}),
            ),
            state("db1", "disk.backup", Status::Critical, json!({})),
        ];
        let c = clusters(&checks);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].cluster, "archive.copy");
        assert_eq!(c[0].window, None);
        assert_eq!(
            c[0].window_note.as_deref(),
            Some("no base backup history file")
        );
        let main = &c[1];
        assert_eq!(main.cluster, "main");
        assert_eq!(main.status, Status::Critical);
        assert_eq!(main.data_at_risk_secs, Some(42));
        assert_eq!(main.window_secs, Some(300));
        assert_eq!(main.archive_check.as_deref(), Some("archive.main"));
    }
}
