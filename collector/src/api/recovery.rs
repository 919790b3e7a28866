//! `GET /api/v1/recovery?host=`: per cluster, what a restore could reach now and what a crash
//! would lose (docs/checks.md R31, R32), gathered from the latest verdicts.
//!
//! A cluster is a `[[wal]]` server: its `wal.<name>` check gives the data at risk, and an
//! `archive.<x>` check linked to it (`wal = "<name>"`) gives the recoverable window (of several,
//! the one reaching furthest). An archive
//! without a linked server is a cluster of its own, named `archive.<x>`; so is a pgBackRest
//! stanza or Barman server check (`pgbackrest.<x>`, `barman.<x>`); a check of several stanzas
//! is a cluster per stanza (`pgbackrest.<x>/<stanza>`), each with its own window. Nothing is computed
//! here that the rules did not decide: the figures are the checks' details, side by side, so
//! the API, the host page and the reports cannot disagree; except that a window's end is
//! capped by the linked server's data at risk (see `cap_window_end`).
//!
//! A restore drill (`drill.<x>`, R33) proves a cluster when the cluster it recovered has the
//! cluster's system identifier (`pg_control_system()`): the identifier is kept by standbys and
//! by every restore of a backup, whichever host ran the drill. The latest such drill is shown
//! with the cluster (its recovered point on the timeline).

use super::{ApiError, ApiState};
use crate::status::Status;
use crate::store::CheckState;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use backwatch_proto::model::ProbeKind;
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
    /// The data at risk is only the current, unswitched segment's (no segment waiting).
    #[serde(skip)]
    data_at_risk_unswitched: bool,
    pub max_data_at_risk_secs: Option<i64>,
    /// R32: the window (`start`, `end`, `earliest_backup`, `latest_backup`, `end_segment`,
    /// `cut_at`, ...), as the archive check reported it.
    pub window: Option<Value>,
    pub window_secs: Option<i64>,
    pub window_note: Option<String>,
    /// The cluster's system identifier (decimal), as its WAL check read it.
    pub system_identifier: Option<String>,
    /// When the figures above were measured (agent clock): the WAL check's sample and the
    /// window check's. A silent agent's last figures stay, with these times (and the status
    /// unknown) saying how old they are.
    pub wal_observed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub window_observed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest restore drill of this cluster, on any host.
    pub drill: Option<DrillPoint>,
}

/// A drill's latest result, as far as the cluster's timeline needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillPoint {
    pub host: String,
    pub check: String,
    pub status: Status,
    pub summary: String,
    /// When the drill started (agent clock), else when its result was measured.
    pub at: Option<Value>,
    /// Commit time of the last transaction the drill replayed: the point it restored to.
    pub recovered_at: Option<Value>,
    pub target_time: Option<Value>,
    pub rto_secs: Option<f64>,
}

impl DrillPoint {
    fn of(d: &CheckState) -> Self {
        let v = &d.details;
        let time = |k: &str| Some(v[k].clone()).filter(|t| t.is_string());
        DrillPoint {
            host: d.host.clone(),
            check: d.check.clone(),
            status: d.status,
            summary: d.summary.clone(),
            at: time("started_at").or_else(|| d.observed_at.map(|t| Value::from(t.to_rfc3339()))),
            recovered_at: time("recovered_at"),
            target_time: time("target_time"),
            rto_secs: v["rto_secs"].as_f64(),
        }
    }
}

/// For each WAL check of `wal_checks` that read its cluster's system identifier, the drills
/// among `drills` (`drill.*` states of any host) that recovered a cluster with that
/// identifier, as (host, check) pairs, keyed by (host, WAL check).
pub fn drills_of(
    wal_checks: &[CheckState],
    drills: &[CheckState],
) -> BTreeMap<(String, String), Vec<(String, String)>> {
    wal_checks
        .iter()
        .filter(|w| ProbeKind::of_check(&w.check) == Some(ProbeKind::Wal))
        .filter_map(|w| {
            let id = w.details["system_identifier"].as_str()?;
            let linked = drills
                .iter()
                .filter(|d| d.details["system_identifier"].as_str() == Some(id))
                .map(|d| (d.host.clone(), d.check.clone()))
                .collect();
            Some(((w.host.clone(), w.check.clone()), linked))
        })
        .collect()
}

/// Attach to each cluster with a system identifier the latest of `drills` (`drill.*` states of
/// any host) that recovered a cluster with the same identifier.
pub fn link_drills(clusters: &mut [ClusterRecovery], drills: &[CheckState]) {
    for c in clusters.iter_mut() {
        let Some(id) = c.system_identifier.as_deref() else {
            continue;
        };
        c.drill = drills
            .iter()
            .filter(|d| d.details["system_identifier"].as_str() == Some(id))
            .max_by_key(|d| d.observed_at)
            .map(DrillPoint::of);
    }
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
            data_at_risk_unswitched: false,
            max_data_at_risk_secs: None,
            window: None,
            window_secs: None,
            window_note: None,
            system_identifier: None,
            wal_observed_at: None,
            window_observed_at: None,
            drill: None,
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
        let Some((kind, name)) = c
            .check
            .split_once('.')
            .and_then(|(k, n)| Some((ProbeKind::from_name(k)?, n)))
        else {
            continue;
        };
        let d = &c.details;
        // A backup tool's check of several stanzas (a repository host's `[[pgbackrest]]`
        // without `stanza`): a cluster each, with its own window and status, so a young
        // stanza's narrow window hides no other stanza's stale end (the check's own `window`
        // is the narrowest), and a stanza without a window (no backup, no longer listed) is
        // there too.
        if matches!(kind, ProbeKind::PgBackRest | ProbeKind::Barman)
            && let Some(stanzas) = d["stanzas"].as_array().filter(|s| s.len() > 1)
        {
            let own = |v: &Value| v["status"].as_str().and_then(|t| t.parse::<Status>().ok());
            // What the check found beyond any one stanza (a tool too old for the server, its
            // agent silent): every stanza wears it.
            let every = stanzas
                .iter()
                .filter_map(own)
                .max_by_key(|s| s.rank())
                .filter(|worst| worst.rank() >= c.status.rank())
                .map_or(c.status, |_| Status::Ok);
            for st in stanzas {
                let set = st["set"].as_str().unwrap_or_default();
                let cluster = format!("{}/{set}", c.check);
                let entry = out
                    .entry((c.host.clone(), cluster.clone()))
                    .or_insert_with(|| ClusterRecovery::new(&c.host, cluster));
                entry.worsen(own(st).unwrap_or(c.status));
                entry.worsen(every);
                entry.archive_check = Some(c.check.clone());
                entry.window_observed_at = c.observed_at;
                let window = d["windows"]
                    .as_array()
                    .and_then(|w| w.iter().find(|w| w["set"] == set));
                match window {
                    Some(w) => {
                        entry.window = Some(w.clone());
                        entry.window_secs = w["secs"].as_i64();
                    }
                    None => {
                        entry.window_note = Some(
                            "the tool gives this stanza no successful backup, or not when its newest WAL was stored"
                                .into(),
                        )
                    }
                }
            }
            continue;
        }
        let cluster = match kind {
            ProbeKind::Wal => name.to_string(),
            ProbeKind::Archive => text(&d["wal_probe"]).unwrap_or_else(|| c.check.clone()),
            ProbeKind::PgBackRest | ProbeKind::Barman => c.check.clone(),
            _ => continue,
        };
        let entry = out
            .entry((c.host.clone(), cluster.clone()))
            .or_insert_with(|| ClusterRecovery::new(&c.host, cluster));
        entry.worsen(c.status);
        if kind == ProbeKind::Wal {
            entry.wal_check = Some(c.check.clone());
            entry.data_at_risk_secs = d["data_at_risk_secs"].as_i64();
            entry.data_at_risk_segment = text(&d["data_at_risk_segment"]);
            entry.data_at_risk_unswitched = d["data_at_risk_unswitched"] == true;
            entry.max_data_at_risk_secs = d["max_data_at_risk_secs"].as_i64();
            entry.system_identifier = text(&d["system_identifier"]);
            entry.wal_observed_at = c.observed_at;
        } else {
            // Several archives of one server (a local and an offsite copy): the window is the
            // one reaching furthest, what a restore would use; the status is the worst of all.
            let window = Some(d["window"].clone()).filter(|w| w.is_object());
            let end = |w: &Option<Value>| {
                let at = w.as_ref()?["end"].as_str()?;
                chrono::DateTime::parse_from_rfc3339(at).ok()
            };
            let further = entry.archive_check.is_none()
                || (window.is_some()
                    && (entry.window.is_none() || end(&window) > end(&entry.window)));
            if further {
                entry.archive_check = Some(c.check.clone());
                entry.window = window;
                entry.window_secs = d["window_secs"].as_i64();
                entry.window_note = text(&d["window_note"]);
                entry.window_observed_at = c.observed_at;
            }
        }
    }
    let mut out: Vec<ClusterRecovery> = out.into_values().collect();
    for c in &mut out {
        cap_window_end(c);
    }
    out
}

/// A window's end is when the archive stored its newest segment, which after a backlog copied
/// in a burst (an `archive_command` that hung for two hours, then caught up in a minute) is
/// long after the WAL in it was written. What the linked server's data at risk says is not
/// archived cannot be restored: the end is at most the WAL sample's time less the data at
/// risk. The stored time stays as `end_stored`. Only from a WAL sample at least as recent
/// as the window's (the archive may have caught up since an older one) and with segments
/// waiting to be archived.
fn cap_window_end(c: &mut ClusterRecovery) {
    let (Some(risk), Some(at), Some(w)) = (c.data_at_risk_secs, c.wal_observed_at, &mut c.window)
    else {
        return;
    };
    // Work only in the current segment is the normal state of a primary between switches:
    // the archive is caught up, and its end is what it says.
    if risk <= 0 || c.data_at_risk_unswitched || c.window_observed_at.is_some_and(|seen| seen > at)
    {
        return;
    }
    let cap = at - chrono::Duration::seconds(risk.max(0));
    let end = w["end"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let start = w["start"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    if let Some(end) = end
        && end > cap
    {
        w["end_stored"] = w["end"].clone();
        w["end"] = Value::from(cap.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Some(start) = start {
            c.window_secs = Some(
                (cap - start.with_timezone(&chrono::Utc))
                    .num_seconds()
                    .max(0),
            );
        }
    }
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
    let mut out = clusters(&checks);
    if out.iter().any(|c| c.system_identifier.is_some()) {
        let drills = s.store.check_states_of_kind(ProbeKind::Drill).await?;
        link_drills(&mut out, &drills);
    }
    Ok(Json(out))
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
    fn of_two_archives_of_a_server_the_window_reaching_furthest_is_shown_with_the_worst_status() {
        let w = |end: &str| json!({"window": {"start": "2026-12-01T00:00:00Z", "end": end}, "wal_probe": "main"});
        let mut offsite = state(
            "db1",
            "archive.offsite",
            Status::Ok,
            w("2026-12-04T10:00:00Z"),
        );
        offsite.observed_at = Some(Utc::now());
        let checks = [
            state(
                "db1",
                "archive.local",
                Status::Critical,
                w("2026-12-03T08:00:00Z"),
            ),
            offsite,
            state(
                "db1",
                "wal.main",
                Status::Ok,
                json!({"data_at_risk_secs": 0}),
            ),
        ];
        let c = clusters(&checks);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].archive_check.as_deref(), Some("archive.offsite"));
        assert_eq!(c[0].window.as_ref().unwrap()["end"], "2026-12-04T10:00:00Z");
        assert_eq!(c[0].status, Status::Critical);
        assert!(c[0].window_observed_at.is_some());
    }

    /// A backlog copied in a burst stores old WAL late: the window ends no later than what the
    /// server's data at risk says is archived.
    #[test]
    fn the_window_ends_before_the_data_at_risk() {
        let mut wal = state(
            "db1",
            "wal.main",
            Status::Critical,
            json!({"data_at_risk_secs": 6600}),
        );
        wal.observed_at = Some("2026-12-04T11:00:00Z".parse().unwrap());
        let archive = state(
            "db1",
            "archive.main",
            Status::Ok,
            json!({"wal_probe": "main", "window_secs": 7200,
                   "window": {"start": "2026-12-04T09:00:00Z", "end": "2026-12-04T11:00:00Z"}}),
        );
        let c = clusters(&[wal.clone(), archive.clone()]);
        let w = c[0].window.as_ref().unwrap();
        assert_eq!(w["end"], "2026-12-04T09:10:00Z");
        assert_eq!(w["end_stored"], "2026-12-04T11:00:00Z");
        assert_eq!(c[0].window_secs, Some(600));
        // A window measured after the WAL sample: the archive may have caught up since.
        let mut later = archive.clone();
        later.observed_at = Some("2026-12-04T11:05:00Z".parse().unwrap());
        let c = clusters(&[wal.clone(), later]);
        assert_eq!(c[0].window.as_ref().unwrap()["end"], "2026-12-04T11:00:00Z");
        // Only the current segment's work at risk: a caught-up archive, its end stands.
        let mut unswitched = wal.clone();
        unswitched.details = json!({"data_at_risk_secs": 6600, "data_at_risk_unswitched": true});
        let c = clusters(&[unswitched, archive.clone()]);
        assert_eq!(c[0].window.as_ref().unwrap()["end"], "2026-12-04T11:00:00Z");
        // Nothing at risk: the archive's own end stands.
        wal.details = json!({"data_at_risk_secs": 0});
        let c = clusters(&[wal, archive]);
        assert_eq!(c[0].window.as_ref().unwrap()["end"], "2026-12-04T11:00:00Z");
    }

    /// A repository host's check of every stanza: each stanza is a cluster with its window,
    /// so the stale end of one is seen beside the fresh, narrow window of a young one.
    #[test]
    fn each_stanza_of_a_tool_check_is_a_cluster_of_its_own() {
        let set = |name: &str, start: &str, end: &str, secs: i64| {
            let status = if name == "stale" { "warning" } else { "ok" };
            json!({"set": name, "status": status, "start": start, "end": end, "secs": secs})
        };
        let stanzas = json!([{"set": "young", "status": "ok"}, {"set": "stale", "status": "warning"},
                             {"set": "gone", "status": "critical"}]);
        let young = set(
            "young",
            "2026-12-04T08:00:00Z",
            "2026-12-04T10:00:00Z",
            7200,
        );
        let stale = set(
            "stale",
            "2026-11-20T00:00:00Z",
            "2026-12-01T10:00:00Z",
            900_000,
        );
        let checks = [state(
            "repo1",
            "pgbackrest.all",
            Status::Critical,
            json!({"windows": [young, stale], "stanzas": stanzas, "window": young, "window_secs": 7200}),
        )];
        let c = clusters(&checks);
        let names: Vec<&str> = c.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(
            names,
            [
                "pgbackrest.all/gone",
                "pgbackrest.all/stale",
                "pgbackrest.all/young"
            ]
        );
        // A stanza without a window is there, with its own status.
        assert_eq!(c[0].status, Status::Critical);
        assert_eq!(c[0].window, None);
        let c = &c[1..];
        assert_eq!(c[0].window.as_ref().unwrap()["end"], "2026-12-01T10:00:00Z");
        assert_eq!(c[0].window_secs, Some(900_000));
        assert_eq!(c[0].archive_check.as_deref(), Some("pgbackrest.all"));
        // Each stanza with its own status, not the check's worst.
        assert_eq!(c[0].status, Status::Warning);
        assert_eq!(c[1].status, Status::Ok);
        // A finding of the check beyond its stanzas (a tool too old for the server): every
        // stanza wears it.
        let too_old = [state(
            "repo1",
            "pgbackrest.all",
            Status::Critical,
            json!({"windows": [young], "stanzas": [{"set": "young", "status": "ok"}, {"set": "b", "status": "ok"}]}),
        )];
        assert!(
            clusters(&too_old)
                .iter()
                .all(|c| c.status == Status::Critical)
        );
        // One stanza: the check is the cluster, as before.
        let one = [state(
            "db1",
            "pgbackrest.main",
            Status::Ok,
            json!({"windows": [young], "stanzas": [{"set": "young", "status": "ok"}], "window": young, "window_secs": 7200}),
        )];
        assert_eq!(clusters(&one)[0].cluster, "pgbackrest.main");
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

    #[test]
    fn a_drill_proves_the_cluster_whose_system_identifier_it_recovered() {
        let at = |h: i64| Some(Utc::now() - chrono::Duration::hours(h));
        let mut c = clusters(&[
            state(
                "db1",
                "wal.main",
                Status::Ok,
                json!({"system_identifier": "7301"}),
            ),
            state(
                "db2",
                "wal.main",
                Status::Ok,
                json!({"system_identifier": "9999"}),
            ),
            state("db3", "wal.main", Status::Ok, json!({})),
        ]);
        let drill = |host: &str, check: &str, id: &str, hours: i64| {
            let mut d = state(
                host,
                check,
                Status::Ok,
                json!({"system_identifier": id, "recovered_at": "2026-12-04T09:00:00Z",
                       "started_at": "2026-12-04T10:00:00Z", "rto_secs": 12.5}),
            );
            d.observed_at = at(hours);
            d
        };
        let drills = [
            drill("backup1", "drill.old", "7301", 48),
            drill("backup1", "drill.main", "7301", 1),
            drill("backup2", "drill.other", "4242", 0),
        ];
        link_drills(&mut c, &drills);
        let d = c[0].drill.as_ref().expect("db1 is drilled");
        assert_eq!(
            (d.host.as_str(), d.check.as_str()),
            ("backup1", "drill.main")
        );
        assert_eq!(d.recovered_at, Some(json!("2026-12-04T09:00:00Z")));
        assert_eq!(d.rto_secs, Some(12.5));
        assert_eq!(c[1].drill, None, "no drill recovered db2's cluster");
        assert_eq!(c[2].drill, None, "no identifier, no link");
        let walls = [
            state(
                "db1",
                "wal.main",
                Status::Ok,
                json!({"system_identifier": "7301"}),
            ),
            state("db3", "wal.main", Status::Ok, json!({})),
        ];
        let pair = |h: &str, c: &str| (h.to_string(), c.to_string());
        let of = drills_of(&walls, &drills);
        assert_eq!(
            of.get(&pair("db1", "wal.main")),
            Some(&vec![
                pair("backup1", "drill.old"),
                pair("backup1", "drill.main")
            ])
        );
        assert_eq!(
            of.len(),
            1,
            "a check without identifier is not judged: {of:?}"
        );
    }
}
