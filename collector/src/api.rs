//! HTTP JSON API and the dashboard, on their own listener.
//!
//! - `GET /healthz`
//! - `GET /metrics`: Prometheus exposition, same access as `/api/` reads (see `metrics`)
//! - `GET /api/v1/hosts`: every host, its last contact and each check's state
//! - `GET /api/v1/hosts/{host}`: one host
//! - `GET /api/v1/hosts/{host}/history?check=&since=&limit=`: stored results and transitions
//! - `POST /api/v1/hosts/{host}/checks/{check}/run`: ask the host's agent to run that probe now
//!   (a restore drill on demand, a backup check after a backup)
//! - `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of all of this (see `openapi`)
//! - `POST /api/v1/enrollments`: a one-time enrollment token for a new host (see `enrollments`)
//! - `GET /api/v1/recovery?host=`: per cluster, data at risk and recoverable window (see
//!   `recovery`)
//!
//! - alerting (alerts, acknowledgements, silences, notifications): see `alerts`
//! - the dashboard (pages, session, live events, series, trends) and access control: see
//!   `dashboard` and `auth`
//!
//! Documented for users in README.md ("HTTP API", "Dashboard").

mod alerts;
pub mod auth;
pub mod dashboard;
mod enrollments;
mod events;
pub mod fit;
pub mod metrics;
mod openapi;
pub mod recovery;
mod reports;
mod series;
mod trends;
pub mod visibility;

pub use dashboard::Dashboard;

use crate::config::reloadable::Reloadable;
use crate::status::Status;
use crate::store::{CheckState, HistoryEntry, HostRecord, Store, Transition};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub alerting: Reloadable<crate::config::alerting::Alerting>,
    pub dashboard: Arc<Dashboard>,
    /// `[reports]`: time zone and windows of the on-demand reports.
    pub reports: Reloadable<crate::config::reports::Reports>,
    /// `[enroll]`, when enrollment is on (`POST /api/v1/enrollments`).
    pub enroll: Option<Arc<crate::config::enroll::Enroll>>,
    /// The agent streams of this collector, for "run now" (`POST .../run`).
    pub commands: crate::commands::Commands,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/hosts/{host}", get(host))
        .route("/api/v1/hosts/{host}/history", get(history))
        .route(
            "/api/v1/hosts/{host}/retire",
            axum::routing::post(retire).delete(unretire),
        )
        .route("/api/v1/retired-hosts", get(retired_hosts))
        .route(
            "/api/v1/hosts/{host}/checks/{check}/run",
            axum::routing::post(run_now),
        )
        .merge(alerts::routes())
        .merge(dashboard::routes())
        .merge(reports::routes())
        .merge(enrollments::routes())
        .merge(recovery::routes())
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(dashboard::security_headers))
        .with_state(state)
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "api store query failed");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
    }
}

#[derive(Serialize)]
struct CheckView {
    name: String,
    status: Status,
    summary: String,
    observed_at: Option<DateTime<Utc>>,
    received_at: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    interval_secs: u32,
    details: serde_json::Value,
    /// What to do, for a check that is not ok (the alert's response procedure); host page only.
    #[serde(skip_serializing_if = "Option::is_none")]
    procedure: Option<String>,
}

#[derive(Serialize)]
struct HostView {
    host: String,
    /// Worst status over the host's checks (unknown when silent).
    status: Status,
    silent: bool,
    last_contact: DateTime<Utc>,
    first_seen: DateTime<Utc>,
    agent_version: String,
    /// Collector clock minus agent clock at the agent's last hello (ms).
    clock_skew_ms: i64,
    /// The skew is beyond 5 minutes: the agent's times (and backup ages) are suspect.
    clock_suspect: bool,
    /// The `[groups]` the host belongs to.
    groups: Vec<String>,
    /// The agent's `[labels]`.
    labels: backwatch_proto::model::labels::Labels,
    checks: Vec<CheckView>,
    /// Who retired the host, when and why; absent for hosts in the fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    retired: Option<crate::store::RetiredHost>,
}

fn view(h: HostRecord, checks: Vec<CheckState>, groups: Vec<String>) -> HostView {
    let checks: Vec<CheckView> = checks
        .into_iter()
        .map(|c| CheckView {
            name: c.check,
            status: c.status,
            summary: c.summary,
            observed_at: c.observed_at,
            received_at: c.received_at,
            since: c.since,
            interval_secs: c.interval_secs,
            details: c.details,
            procedure: None,
        })
        .collect();
    let worst = checks
        .iter()
        .map(|c| c.status)
        .max_by_key(|s| s.rank())
        .unwrap_or(Status::Unknown);
    HostView {
        status: if h.silent { Status::Unknown } else { worst },
        host: h.host,
        silent: h.silent,
        last_contact: h.last_contact,
        first_seen: h.first_seen,
        agent_version: h.facts.agent_version,
        clock_skew_ms: h.facts.clock_skew_ms,
        clock_suspect: h.facts.clock_skew_ms.abs() > 300_000,
        groups,
        labels: h.facts.labels,
        checks,
        retired: None,
    }
}

/// How long "run now" waits for the agent's answer (a round trip on its stream).
const RUN_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ask a connected agent to run one of its probes now, and wait up to [`RUN_ANSWER_WAIT`] for
/// its answer. 202 when the agent runs it (`"agent": "running"`) or has not answered yet
/// (`"no answer yet"`); 409 with the agent's reason when it refuses (a probe already
/// running, forced again within seconds, or not on that agent), while it is still connecting,
/// or when the host has no stream to this collector; 404 for a check the host does not have
/// (neither reported nor announced at the agent's hello: a drill due next week can run now).
async fn run_now(
    State(s): State<ApiState>,
    Path((host, check)): Path<(String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if !s.commands.announced(&host, &check) && s.store.check_state(&host, &check).await?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("host {host:?} has no check {check:?}"),
        ));
    }
    match s.commands.run_now(&host, &check) {
        crate::commands::Asked::Sent(answers) => {
            let streams = answers.len();
            // A host has one stream, but for a moment after a reconnect two, and one of them
            // may be an agent without the check: it runs when any stream runs it, and is
            // refused only when every stream refused.
            let mut waiting: futures_util::stream::FuturesUnordered<_> =
                answers.into_iter().collect();
            let mut refusals: Vec<String> = Vec::new();
            let answered = tokio::time::timeout(RUN_ANSWER_WAIT, async {
                while let Some(answer) = waiting.next().await {
                    match answer {
                        Ok(refused) if refused.is_empty() => return Some(true),
                        Ok(refused) => refusals.push(refused),
                        // The stream ended first: no word from it.
                        Err(_) => {}
                    }
                }
                Some(false)
            })
            .await
            .unwrap_or(None);
            let answer = match answered {
                Some(true) => "running",
                Some(false) if !refusals.is_empty() => {
                    refusals.dedup();
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!(
                            "the agent of {host} did not run {check}: {}",
                            refusals.join("; ")
                        ),
                    ));
                }
                _ => "no answer yet",
            };
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "host": host, "check": check, "asked_streams": streams, "agent": answer,
                })),
            ))
        }
        crate::commands::Asked::NotConnected => Err(ApiError(
            StatusCode::CONFLICT,
            format!("{host} has no stream to this collector now"),
        )),
        crate::commands::Asked::Busy => Err(ApiError(
            StatusCode::CONFLICT,
            format!("{host}'s stream is not taking requests now; try again"),
        )),
    }
}

async fn healthz(State(s): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    s.store.host("").await?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

fn groups_of(s: &ApiState, host: &str) -> Vec<String> {
    s.dashboard
        .thresholds
        .get()
        .groups_of(host)
        .into_iter()
        .map(String::from)
        .collect()
}

#[derive(Deserialize)]
struct HostsQuery {
    /// `false` leaves out each check's `details`: the fleet page of a large fleet needs only
    /// statuses and summaries.
    details: Option<bool>,
    /// Only hosts a label selector picks (`env=prod`, `cluster=bill*`), as in `[groups]`.
    label: Option<String>,
}

async fn hosts(
    State(s): State<ApiState>,
    Query(q): Query<HostsQuery>,
) -> Result<Json<Vec<HostView>>, ApiError> {
    let selector = q
        .label
        .as_deref()
        .map(crate::labels::Member::selector)
        .transpose()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("label: {e}")))?;
    // Retired hosts are out of the fleet view (their own page and history stay readable).
    let hosts = crate::labels::fleet_hosts(&*s.store, selector.as_ref()).await?;
    let mut by_host: BTreeMap<String, Vec<CheckState>> = BTreeMap::new();
    for mut c in s.store.check_states(None).await? {
        if q.details == Some(false) {
            c.details = serde_json::Value::Null;
        }
        by_host.entry(c.host.clone()).or_default().push(c);
    }
    Ok(Json(
        hosts
            .into_iter()
            .map(|h| {
                let checks = by_host.remove(&h.host).unwrap_or_default();
                let groups = groups_of(&s, &h.host);
                view(h, checks, groups)
            })
            .collect(),
    ))
}

async fn host(
    State(s): State<ApiState>,
    Path(host): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    let h = s
        .store
        .host(&host)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no host {host:?}")))?;
    let checks = s.store.check_states(Some(&host)).await?;
    let groups = groups_of(&s, &host);
    let mut v = view(h, checks, groups);
    for c in v.checks.iter_mut().filter(|c| c.status != Status::Ok) {
        c.procedure = Some(s.alerting.get().procedure(&c.name)).filter(|p| !p.is_empty());
    }
    v.retired = s.store.retired_host(&host).await?;
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetireBody {
    by: Option<String>,
    reason: Option<String>,
}

/// `POST /api/v1/hosts/{host}/retire`: take a host out of the fleet (role `admin`). Its open
/// alerts resolve with the reason at the alert engine's next round; its streams are refused.
async fn retire(
    State(s): State<ApiState>,
    axum::Extension(caller): axum::Extension<auth::Identity>,
    Path(host): Path<String>,
    b: Result<Json<RetireBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<crate::store::RetiredHost>), ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let Json(b) = b.map_err(|e| bad(e.body_text()))?;
    let reason = b
        .reason
        .unwrap_or_default()
        .trim()
        .chars()
        .take(2000)
        .collect::<String>();
    if reason.is_empty() {
        return Err(bad(
            "reason: required (why the host leaves the fleet)".into()
        ));
    }
    // With authentication, the caller's name; in open mode, what the body says.
    let by = alerts::author(&caller, b.by, true)?;
    if s.store.host(&host).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no host {host:?}")));
    }
    let r = crate::store::RetiredHost {
        host: host.clone(),
        retired_at: Utc::now(),
        retired_by: by,
        reason,
    };
    if !s.store.retire_host(&r).await? {
        let first = s.store.retired_host(&host).await?;
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{host} is already retired{}",
                first.map_or(String::new(), |f| format!(
                    " (by {} at {}: {})",
                    f.retired_by, f.retired_at, f.reason
                ))
            ),
        ));
    }
    tracing::info!(host = %host, by = %r.retired_by, reason = %r.reason, "host retired");
    Ok((StatusCode::CREATED, Json(r)))
}

/// `DELETE /api/v1/hosts/{host}/retire`: put a retired host back in the fleet (role `admin`).
async fn unretire(
    State(s): State<ApiState>,
    Path(host): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !s.store.unretire_host(&host).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{host} is not retired"),
        ));
    }
    tracing::info!(host = %host, "host back in the fleet");
    Ok(Json(serde_json::json!({ "host": host, "retired": false })))
}

/// `GET /api/v1/retired-hosts`: the hosts taken out of the fleet.
async fn retired_hosts(
    State(s): State<ApiState>,
) -> Result<Json<Vec<crate::store::RetiredHost>>, ApiError> {
    Ok(Json(s.store.retired_hosts().await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    check: Option<String>,
    /// RFC 3339 time, or a duration back from now ("24h", "7d"). Default 7 days.
    since: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct HistoryView {
    host: String,
    check: Option<String>,
    since: DateTime<Utc>,
    results: Vec<HistoryEntry>,
    transitions: Vec<Transition>,
}

const MAX_LIMIT: u32 = 10_000;

async fn history(
    State(s): State<ApiState>,
    Path(host): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let now = Utc::now();
    let since =
        parse_since(q.since.as_deref(), now).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let limit = q.limit.unwrap_or(1000).min(MAX_LIMIT);
    if s.store.host(&host).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no host {host:?}")));
    }
    let results = s
        .store
        .history(&host, q.check.as_deref(), since, limit)
        .await?;
    let transitions = s
        .store
        .transitions(&host, since)
        .await?
        .into_iter()
        .filter(|t| q.check.as_deref().is_none_or(|c| c == t.check))
        .collect();
    Ok(Json(HistoryView {
        host,
        check: q.check,
        since,
        results,
        transitions,
    }))
}

fn parse_since(s: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let Some(s) = s else {
        return Ok(now - chrono::Duration::days(7));
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = backwatch_common::config::parse_duration(s).map_err(|_| {
        format!("since: {s:?} is neither an RFC 3339 time nor a duration like \"24h\"")
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("since: {s:?} is too far back"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_durations() {
        let now = Utc::now();
        assert_eq!(
            parse_since(Some("24h"), now).unwrap(),
            now - chrono::Duration::hours(24)
        );
        assert_eq!(
            parse_since(Some("2026-11-01T00:00:00Z"), now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(parse_since(Some("yesterday"), now).is_err());
        assert_eq!(
            parse_since(None, now).unwrap(),
            now - chrono::Duration::days(7)
        );
    }
}
