//! The dashboard: static pages and scripts compiled into the binary, the JSON endpoints only
//! the dashboard needs (session, live events, series, trends) and the security headers.
//!
//! Invariants:
//! - no build step and no files at run time: every asset is `include_str!`-ed, so the binary
//!   and its pages can never disagree;
//! - the scripts render data only through DOM APIs (`textContent`, `setAttribute`), and the
//!   Content-Security-Policy forbids inline script, other origins and, with Trusted Types,
//!   every HTML-parsing sink (`innerHTML` throws) — untrusted text cannot become markup;
//! - page paths (`/`, `/hosts/{host}`, `/alerts`, `/trends`) all serve the same page, which
//!   routes by path, so the links in notifications (`{public_url}/hosts/{host}`) open it.

use super::{ApiState, auth, events, series, trends};
use crate::config::Thresholds;
use crate::config::http_auth::HttpAuth;
use crate::config::reloadable::Reloadable;
use crate::store::Store;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// What the dashboard endpoints share.
pub struct Dashboard {
    /// Tokens and proxy users: SIGHUP replaces them.
    pub auth: Reloadable<HttpAuth>,
    /// For host groups and labels (fleet filter) and chart thresholds.
    pub thresholds: Reloadable<Thresholds>,
    pub changes: Arc<events::Changes>,
    pub trends: trends::Cache,
}

impl Dashboard {
    /// Starts the change feed over `store` (needs a tokio runtime).
    pub fn start(
        store: Arc<dyn Store>,
        auth: Reloadable<HttpAuth>,
        thresholds: Reloadable<Thresholds>,
    ) -> Self {
        Dashboard {
            auth,
            thresholds,
            changes: events::Changes::start(store),
            trends: trends::Cache::default(),
        }
    }
}

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

const INDEX: &str = include_str!("../../assets/dashboard/index.html");

/// `(name, content type, content)` of every file under `/static/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/app.css"),
    ),
    (
        "main.js",
        JS,
        include_str!("../../assets/dashboard/main.js"),
    ),
    ("api.js", JS, include_str!("../../assets/dashboard/api.js")),
    ("dom.js", JS, include_str!("../../assets/dashboard/dom.js")),
    (
        "chart.js",
        JS,
        include_str!("../../assets/dashboard/chart.js"),
    ),
    (
        "fleet.js",
        JS,
        include_str!("../../assets/dashboard/fleet.js"),
    ),
    (
        "host.js",
        JS,
        include_str!("../../assets/dashboard/host.js"),
    ),
    (
        "alerts.js",
        JS,
        include_str!("../../assets/dashboard/alerts.js"),
    ),
    (
        "trends.js",
        JS,
        include_str!("../../assets/dashboard/trends.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../assets/dashboard/favicon.svg"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(page))
        .route("/alerts", get(page))
        .route("/trends", get(page))
        .route("/hosts/{host}", get(page))
        .route("/static/{file}", get(asset))
        .route("/api/v1/session", get(auth::session))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/hosts/{host}/series", get(series::series))
        .route("/api/v1/trends", get(trends::trends))
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Headers on every answer: the policy above, no sniffing, no framing, no referrer; API
/// answers are not cached (they may be fleet data behind a token).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    } else {
        set(h, header::CACHE_CONTROL, "no-cache");
    }
    resp
}
