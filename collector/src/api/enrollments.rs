//! `POST /api/v1/enrollments`: a one-time enrollment token for a host, for role `admin` only
//! (`auth::required_role`). The token is in this one answer and nowhere else: the store keeps
//! its SHA-256, the log names the host and the caller. Same as `backwatch-collector enroll`.

use super::auth::Identity;
use super::{ApiError, ApiState};
use crate::enroll::{EnrollError, issue_token};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/enrollments", post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEnrollment {
    host: String,
    /// Token validity in seconds (default `[enroll] token_ttl`, at most 7 days).
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct EnrollmentView {
    host: String,
    /// Shown once; give it to `backwatch-agent enroll --token-file` (a file or `-`).
    token: String,
    expires_at: DateTime<Utc>,
}

async fn create(
    State(s): State<ApiState>,
    Extension(id): Extension<Identity>,
    body: Result<Json<NewEnrollment>, JsonRejection>,
) -> Result<(StatusCode, Json<EnrollmentView>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Some(cfg) = &s.enroll else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "enrollment is off: configure [enroll] with the fleet CA key".into(),
        ));
    };
    let ttl = body.ttl_secs.map_or(cfg.token_ttl, Duration::from_secs);
    let t = issue_token(s.store.as_ref(), &body.host, ttl, id.name(), Utc::now())
        .await
        .map_err(|e| match e {
            EnrollError::Store(e) => ApiError::from(e),
            EnrollError::BadHost(_) => ApiError(StatusCode::BAD_REQUEST, format!("host: {e}")),
            EnrollError::BadTtl(_) => ApiError(StatusCode::BAD_REQUEST, format!("ttl_secs: {e}")),
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentView {
            host: t.host,
            token: t.token,
            expires_at: t.expires_at,
        }),
    ))
}
