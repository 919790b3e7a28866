//! Alerting endpoints: alerts (list, one, acknowledge, false positive), silences (list,
//! add, end) and the notification outbox (with each delivery's last server answer).
//!
//! Invariants: marks and silences name a person (`by`) and are never overwritten (a second
//! acknowledgement answers 409 with the first); every time is UTC RFC 3339; bodies are
//! bounded. Write endpoints need the `ack` role when authentication is on (`auth`).
//! Documented in README.md ("HTTP API").

use super::auth::Identity;
use super::{ApiError, ApiState};
use crate::store::alerts::{
    Alert, AlertEvent, AlertFilter, Mark, MarkOutcome, NewSilence, Silence,
};
use crate::store::outbox::{Notification, OutboxState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 2000;
const DEFAULT_LIMIT: u32 = 200;
const MAX_LIMIT: u32 = 5000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{id}", get(one))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/alerts/{id}/false-positive", post(false_positive))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(end_silence))
        .route("/api/v1/maintenance", get(maintenance))
        .route("/api/v1/notifications", get(notifications))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| bad(e.body_text()))
}

/// Trimmed, present and bounded.
fn text(field: &str, v: Option<String>, required: bool, max: usize) -> Result<String, ApiError> {
    let v = v.unwrap_or_default().trim().to_string();
    if required && v.is_empty() {
        return Err(bad(format!("{field}: is required")));
    }
    if v.chars().count() > max {
        return Err(bad(format!("{field}: longer than {max} characters")));
    }
    Ok(v)
}

#[derive(Serialize)]
struct AlertView {
    #[serde(flatten)]
    alert: Alert,
    /// `open` or `resolved`.
    state: &'static str,
    /// Open to resolved, or to now while open.
    duration_secs: i64,
    time_to_ack_secs: Option<i64>,
}

fn view(alert: Alert, now: DateTime<Utc>) -> AlertView {
    let f = &alert.fields;
    AlertView {
        state: if f.resolved_at.is_some() {
            "resolved"
        } else {
            "open"
        },
        duration_secs: (f.resolved_at.unwrap_or(now) - f.opened_at).num_seconds(),
        time_to_ack_secs: alert
            .acknowledged
            .as_ref()
            .map(|m| (m.at - f.opened_at).num_seconds()),
        alert,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let filter = match q.state.as_deref().unwrap_or("open") {
        "open" => AlertFilter::Open,
        "resolved" => AlertFilter::Resolved,
        "all" => AlertFilter::All,
        other => {
            return Err(bad(format!(
                "state: {other:?} is not one of open, resolved, all"
            )));
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let now = Utc::now();
    let alerts = s.store.alerts(filter, limit).await?;
    Ok(Json(alerts.into_iter().map(|a| view(a, now)).collect()))
}

#[derive(Serialize)]
struct AlertDetail {
    #[serde(flatten)]
    alert: AlertView,
    events: Vec<AlertEvent>,
    notifications: Vec<Notification>,
}

async fn one(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<AlertDetail>, ApiError> {
    let alert = s.store.alert(id).await?.ok_or_else(|| not_found(id))?;
    let events = s.store.alert_events(id).await?;
    let notifications = s.store.notifications(None, Some(id), MAX_LIMIT).await?;
    Ok(Json(AlertDetail {
        alert: view(alert, Utc::now()),
        events,
        notifications,
    }))
}

fn not_found(id: i64) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no alert {id}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    by: Option<String>,
    comment: Option<String>,
}

/// Who a mark or silence is recorded as: the authenticated caller when there is one (a
/// token's name, the proxy's user), whatever `by` says, so nobody acts in another's name; in
/// open mode (loopback, no authentication configured) the `by` given.
/// Who did it: the authenticated caller, or in open mode what the body says (`by`).
pub(crate) fn author(
    id: &Identity,
    by: Option<String>,
    required: bool,
) -> Result<String, ApiError> {
    match id {
        Identity::Open => text("by", by, required, MAX_NAME),
        known => Ok(known.name().to_string()),
    }
}

fn mark_of(id: &Identity, b: MarkBody) -> Result<Mark, ApiError> {
    Ok(Mark {
        by: author(id, b.by, true)?,
        comment: text("comment", b.comment, false, MAX_TEXT)?,
        at: Utc::now(),
    })
}

fn marked(id: i64, what: &str, outcome: MarkOutcome) -> Result<Json<AlertView>, ApiError> {
    let now = Utc::now();
    match outcome {
        MarkOutcome::Marked(a) => Ok(Json(view(a, now))),
        MarkOutcome::NotFound => Err(not_found(id)),
        MarkOutcome::AlreadyMarked(a) => {
            let by = match what {
                "acknowledged" => a.acknowledged.as_ref(),
                _ => a.false_positive.as_ref(),
            }
            .map_or(String::new(), |m| {
                format!(" by {} at {}", m.by, m.at.to_rfc3339())
            });
            Err(ApiError(
                StatusCode::CONFLICT,
                format!("alert {id} was already {what}{by}"),
            ))
        }
        MarkOutcome::StillOpen(_) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("alert {id} is still open: a false positive is marked once it is resolved"),
        )),
    }
}

async fn ack(
    State(s): State<ApiState>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<i64>,
    b: Result<Json<MarkBody>, JsonRejection>,
) -> Result<Json<AlertView>, ApiError> {
    let mark = mark_of(&caller, body(b)?)?;
    // PagerDuty hears of it too (queued with the mark, so only if this call makes it), on the
    // routes that were told of the alert. The outbox delivers an alert's notices to one
    // recipient in order, so an `acknowledge` waits behind a `trigger` waiting for a retry.
    let notices = match s.store.alert(id).await? {
        Some(a) if a.acknowledged.is_none() => crate::alerts::acknowledgement_notices(
            &s.alerting.get(),
            &s.dashboard.thresholds.get(),
            &a,
            &mark.by,
            mark.at,
        ),
        _ => Vec::new(),
    };
    let outcome = s.store.acknowledge_alert(id, &mark, &notices).await?;
    tracing::info!(alert = id, by = %mark.by, notices = notices.len(), "alert acknowledged");
    marked(id, "acknowledged", outcome)
}

async fn false_positive(
    State(s): State<ApiState>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<i64>,
    b: Result<Json<MarkBody>, JsonRejection>,
) -> Result<Json<AlertView>, ApiError> {
    let mark = mark_of(&caller, body(b)?)?;
    let outcome = s.store.mark_false_positive(id, &mark).await?;
    tracing::info!(alert = id, by = %mark.by, "alert marked false positive");
    marked(id, "marked a false positive", outcome)
}

#[derive(Deserialize)]
struct SilencesQuery {
    /// Include ended silences.
    all: Option<bool>,
}

async fn silences(
    State(s): State<ApiState>,
    Query(q): Query<SilencesQuery>,
) -> Result<Json<Vec<Silence>>, ApiError> {
    let at = if q.all.unwrap_or(false) {
        None
    } else {
        Some(Utc::now())
    };
    Ok(Json(s.store.silences(at).await?))
}

/// One `[[maintenance]]` window as the API shows it: its definition, whether it is open now,
/// and its current or next occurrence.
#[derive(Serialize)]
struct WindowView<'a> {
    #[serde(flatten)]
    window: &'a crate::config::maintenance::Window,
    open: bool,
    current: Option<crate::config::maintenance::Occurrence>,
    next: Option<crate::config::maintenance::Occurrence>,
}

async fn maintenance(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let now = Utc::now();
    let alerting = s.alerting.get();
    let views: Vec<WindowView> = alerting
        .maintenance
        .iter()
        .map(|w| {
            let current = w.open_at(now);
            WindowView {
                window: w,
                open: current.is_some(),
                current,
                next: w.next_after(now),
            }
        })
        .collect();
    Json(serde_json::json!(views))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    host: Option<String>,
    group: Option<String>,
    check: Option<String>,
    by: Option<String>,
    reason: Option<String>,
    /// RFC 3339 time, or a duration from `starts` ("2h").
    until: Option<String>,
    /// RFC 3339 time; default now.
    starts: Option<String>,
}

/// An RFC 3339 time, or a duration after `from`.
fn time_or_after(field: &str, v: &str, from: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    backwatch_common::config::parse_duration(v)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| from.checked_add_signed(d))
        .ok_or_else(|| {
            bad(format!(
                "{field}: {v:?} is neither an RFC 3339 time nor a duration like \"2h\""
            ))
        })
}

/// A pattern made of `*` and `.` only (`*`, `*.*`) names nothing: every check id has a dot,
/// so it matches every check of every host.
fn names_something(pattern: &Option<String>) -> bool {
    pattern
        .as_deref()
        .is_some_and(|p| p.chars().any(|c| c != '*' && c != '.'))
}

async fn add_silence(
    State(s): State<ApiState>,
    Extension(caller): Extension<Identity>,
    b: Result<Json<SilenceBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let b = body(b)?;
    let now = Utc::now();
    let matcher = |field: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        let v = text(field, v, false, MAX_NAME)?;
        Ok((!v.is_empty()).then_some(v))
    };
    let (host, group, check) = (
        matcher("host", b.host)?,
        matcher("group", b.group)?,
        matcher("check", b.check)?,
    );
    // A silence of every check of every host would blind the whole fleet: refused, as
    // `host = "*"` with `check = "*"` is.
    if !(names_something(&host) || group.is_some() || names_something(&check)) {
        return Err(bad(
            "a silence needs host, group or check, and may not cover every check of every host",
        ));
    }
    if let Some(g) = &group
        && !s.alerting.get().group_names.contains(g)
    {
        return Err(bad(format!(
            "group: no group {g:?} in the collector's [groups]"
        )));
    }
    let starts_at = match b.starts.as_deref() {
        Some(v) => time_or_after("starts", v, now)?,
        None => now,
    };
    let until = b
        .until
        .ok_or_else(|| bad("until: is required (\"2h\" or an RFC 3339 time)"))?;
    let ends_at = time_or_after("until", &until, starts_at)?;
    if ends_at <= starts_at || ends_at <= now {
        return Err(bad("until: must be in the future and after starts"));
    }
    let max = s.alerting.get().max_silence;
    // Bounded in start too: back-to-back silences planned ahead would add up to no end.
    if chrono::Duration::from_std(max).is_ok_and(|max| starts_at - now > max) {
        return Err(bad(format!(
            "starts: a silence starts at most {} ahead (alerts.max_silence)",
            backwatch_common::config::fmt_duration(max)
        )));
    }
    if chrono::Duration::from_std(max).is_ok_and(|max| ends_at - starts_at.max(now) > max) {
        return Err(bad(format!(
            "until: a silence lasts at most {} (alerts.max_silence); add another when it ends",
            backwatch_common::config::fmt_duration(max)
        )));
    }
    let new = NewSilence {
        host,
        group,
        check,
        created_by: author(&caller, b.by, true)?,
        reason: text("reason", b.reason, true, MAX_TEXT)?,
        created_at: now,
        starts_at,
        ends_at,
    };
    let silence = s.store.add_silence(&new).await?;
    tracing::info!(silence = silence.id, by = %silence.created_by, until = %silence.ends_at, "silence added");
    Ok((StatusCode::CREATED, Json(silence)))
}

#[derive(Deserialize)]
struct EndQuery {
    by: Option<String>,
}

async fn end_silence(
    State(s): State<ApiState>,
    Extension(caller): Extension<Identity>,
    Path(id): Path<i64>,
    Query(q): Query<EndQuery>,
) -> Result<Json<Silence>, ApiError> {
    let by = author(&caller, q.by, false)?;
    let by = if by.is_empty() { "api".to_string() } else { by };
    let silence = s
        .store
        .end_silence(id, &by, Utc::now())
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no silence {id}")))?;
    tracing::info!(silence = id, by = %by, "silence ended");
    Ok(Json(silence))
}

#[derive(Deserialize)]
struct NotificationsQuery {
    state: Option<String>,
    alert: Option<i64>,
    limit: Option<u32>,
}

async fn notifications(
    State(s): State<ApiState>,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Vec<Notification>>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<OutboxState>)
        .transpose()
        .map_err(|e| bad(format!("state: {e}")))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    Ok(Json(s.store.notifications(state, q.alert, limit).await?))
}
