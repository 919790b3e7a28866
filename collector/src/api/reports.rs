//! Reports on demand: `GET /api/v1/reports/daily?at=&format=` and
//! `GET /api/v1/reports/monthly?month=YYYY-MM&format=json|html|csv`.
//!
//! Read role, like every GET under `/api/` (`auth::guard`); a `read` caller's daily report
//! does not quote `archive_command` (see `visibility`). JSON by default; HTML is the
//! standalone file (charts as `data:` URIs), CSV the long form of `report::render_csv`.

use super::auth::Identity;
use super::visibility;
use super::{ApiError, ApiState};
use crate::report::{self, Format, Month, Report};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/reports/daily", get(daily))
        .route("/api/v1/reports/monthly", get(monthly))
}

#[derive(Deserialize)]
struct ReportQuery {
    format: Option<String>,
    /// Daily: RFC 3339 time (default now).
    at: Option<String>,
    /// Monthly: `YYYY-MM` (default the previous month).
    month: Option<String>,
    /// Only the hosts a label selector picks (`env=prod`).
    label: Option<String>,
}

fn only(q: &ReportQuery) -> Result<Option<crate::labels::Member>, ApiError> {
    q.label
        .as_deref()
        .map(crate::labels::Member::selector)
        .transpose()
        .map_err(|e| bad(format!("label: {e}")))
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

fn format(q: &ReportQuery) -> Result<Format, ApiError> {
    q.format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|e| bad(format!("format: {e}")))
}

async fn respond(s: &ApiState, r: Report, f: Format) -> Result<Response, ApiError> {
    let cfg = s.reports.get();
    let text = report::off_runtime(move || r.render(&cfg, f))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(([(header::CONTENT_TYPE, f.content_type())], text).into_response())
}

async fn daily(
    State(s): State<ApiState>,
    Extension(caller): Extension<Identity>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = format(&q)?;
    let now = Utc::now();
    let at = match q.at.as_deref() {
        None => now,
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|_| bad(format!("at: {t:?} is not an RFC 3339 time")))?
            .with_timezone(&Utc),
    };
    let mut r = report::daily(&*s.store, &s.reports.get(), at, now, only(&q)?.as_ref()).await?;
    // HTML and CSV are not filtered on the way out like JSON (see `visibility`): hide the
    // command in the open alerts' summaries here, before rendering, for every format.
    if !visibility::sees_archive_command(&caller) {
        for a in &mut r.open_alerts {
            if let Some(hidden) =
                backwatch_rules::archive::hide_command(&a.summary, visibility::HIDDEN)
            {
                a.summary = hidden;
            }
        }
    }
    respond(&s, Report::Daily(r), f).await
}

async fn monthly(
    State(s): State<ApiState>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let f = format(&q)?;
    let now = Utc::now();
    let month = match q.month.as_deref() {
        None => Month::previous(now, &s.reports.get()),
        Some(m) => m.parse::<Month>().map_err(|e| bad(format!("month: {e}")))?,
    };
    let r = report::monthly(&*s.store, &s.reports.get(), month, now, only(&q)?.as_ref()).await?;
    respond(&s, Report::Monthly(r), f).await
}
