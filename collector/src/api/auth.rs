//! Access to `/api/`: who is calling ([`authenticate`]) and whether they may ([`authorize`]),
//! as pure functions, plus the middleware that applies them.
//!
//! Invariants:
//! - with authentication configured (see `config::http_auth`), every `/api/` request carries
//!   a known bearer token, or comes from a trusted proxy address with the user header; the
//!   header from anywhere else is ignored;
//! - reading needs role `read`, anything else (POST, DELETE: acknowledge, false positive,
//!   silences) role `ack`, decided by method so a new write endpoint is protected by default;
//!   issuing enrollment tokens (`/api/v1/enrollments`) needs role `admin`, which only a
//!   configured token can hold (not open mode, not a proxy user);
//! - open mode (loopback, nothing configured) answers only requests addressed to a loopback
//!   name, so a web page that rebinds its own DNS name to 127.0.0.1 cannot use the API;
//! - a token is compared by its SHA-256 and never logged; the log names its holder;
//! - a `read` caller's answers do not show `archive_command` (see `visibility`);
//! - over plain HTTP on a non-loopback address without a trusted proxy, a request carrying
//!   a bearer token is refused (403), whatever the token: it crossed the network in clear,
//!   and refusing it makes the setup fail loudly rather than leak tokens quietly;
//! - the pages and scripts themselves (outside `/api/`), `/healthz` and the OpenAPI document
//!   hold no fleet data and are served to everyone, so the login form can load and tools can
//!   read the API's description.

use super::ApiState;
use crate::config::http_auth::{HttpAuth, Role, digest};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// Longest user name believed from the proxy header.
const MAX_USER: usize = 200;

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Open mode: anyone on this machine.
    Open,
    Token {
        name: String,
        role: Role,
    },
    Proxy {
        user: String,
        role: Role,
    },
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Open => "local",
            Identity::Token { name, .. } => name,
            Identity::Proxy { user, .. } => user,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Identity::Open => Role::Ack,
            Identity::Token { role, .. } | Identity::Proxy { role, .. } => *role,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Open => "open",
            Identity::Token { .. } => "token",
            Identity::Proxy { .. } => "proxy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no or unknown credentials.
    Unauthenticated(String),
    /// 403: known caller, not allowed.
    Forbidden(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthenticated(m) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"backwatch\"")],
                Json(serde_json::json!({ "error": m })),
            )
                .into_response(),
            Denied::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({ "error": m })),
            )
                .into_response(),
        }
    }
}

/// The host part of a `Host` header value (`[::1]:7080` -> `::1`, `localhost:7080` ->
/// `localhost`).
fn host_name(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    value.rsplit_once(':').map_or(value, |(h, _)| h)
}

fn loopback_host(value: &str) -> bool {
    let h = host_name(value).trim_end_matches('.');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Who is calling, from the configured access, the peer address and the request headers.
pub fn authenticate(
    auth: &HttpAuth,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<Identity, Denied> {
    if auth.open {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        return match host {
            Some(h) if !loopback_host(h) => Err(Denied::Forbidden(
                "this collector answers only at a loopback address (localhost, 127.0.0.1, \
                 [::1]) while no authentication is configured"
                    .into(),
            )),
            _ => Ok(Identity::Open),
        };
    }
    if let Some(token) = bearer(headers) {
        if auth.plain_bearer_refused {
            return Err(Denied::Forbidden(
                "bearer tokens are refused over plain HTTP on a non-loopback address (the token \
                 crossed the network in clear): use HTTPS (http.tls_cert, http.tls_key) or a \
                 TLS proxy listed in http.trusted_proxies"
                    .into(),
            ));
        }
        let d = digest(token);
        return auth
            .tokens
            .iter()
            .find(|t| t.digest == d)
            .map(|t| Identity::Token {
                name: t.name.clone(),
                role: t.role,
            })
            .ok_or_else(|| Denied::Unauthenticated("unknown token".into()));
    }
    if let (Some(proxy), Some(peer)) = (&auth.proxy, peer)
        && proxy.proxies.iter().any(|n| n.contains(peer))
        && let Some(user) = headers.get(proxy.header.as_str())
    {
        let user = user.to_str().unwrap_or("").trim();
        if user.is_empty() || user.chars().count() > MAX_USER || user.chars().any(char::is_control)
        {
            return Err(Denied::Unauthenticated(format!(
                "the proxy sent an unusable {} header",
                proxy.header
            )));
        }
        return Ok(Identity::Proxy {
            user: user.to_string(),
            role: proxy.role_of(user),
        });
    }
    Err(Denied::Unauthenticated(
        "authentication required: send `Authorization: Bearer <token>`".into(),
    ))
}

/// Paths whose every method needs role `admin`.
const ADMIN_PATHS: &[&str] = &["/api/v1/enrollments"];

/// The role a request needs: `admin` under [`ADMIN_PATHS`] and for retiring a host (every
/// method of `/api/v1/hosts/{host}/retire`), else `read` for reads and `ack` for everything
/// else.
pub fn required_role(method: &Method, path: &str) -> Role {
    let path = path.trim_end_matches('/');
    // Retiring a host (or bringing it back) changes the fleet: admin, like enrollment.
    let retire = path.starts_with("/api/v1/hosts/") && path.ends_with("/retire");
    if retire
        || ADMIN_PATHS
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        Role::Admin
    } else if is_read(method) {
        Role::Read
    } else {
        Role::Ack
    }
}

/// Whether `id` may make a request with `method`: reads need `read`, everything else `ack`.
pub fn authorize(id: &Identity, method: &Method) -> Result<(), Denied> {
    authorize_path(id, method, "")
}

/// Whether `id` may make a request with `method` to `path` (see [`required_role`]).
pub fn authorize_path(id: &Identity, method: &Method, path: &str) -> Result<(), Denied> {
    let needs = required_role(method, path);
    if id.role() >= needs {
        Ok(())
    } else if needs == Role::Admin {
        Err(Denied::Forbidden(format!(
            "{} has role \"{}\"; this needs role \"admin\" (a [[http.tokens]] entry with \
             role = \"admin\"), or use the CLI on the collector (`backwatch-collector enroll`, \
             `backwatch-collector hosts retire`)",
            id.name(),
            id.role().as_str()
        )))
    } else {
        Err(Denied::Forbidden(format!(
            "{} may only read; this needs role \"ack\"",
            id.name()
        )))
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: guards `/api/`, hands the [`Identity`] to handlers, logs every write with
/// its caller and tells live pages about it.
pub async fn guard(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") || req.uri().path() == super::openapi::PATH {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let id = match authenticate(&s.dashboard.auth.get(), peer, req.headers())
        .and_then(|id| authorize_path(&id, req.method(), req.uri().path()).map(|()| id))
    {
        Ok(id) => id,
        Err(denied) => {
            tracing::info!(peer = ?peer, method = %req.method(), path = %req.uri().path(),
                denied = ?denied, "api request refused");
            return denied.into_response();
        }
    };
    let write = !is_read(req.method());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    req.extensions_mut().insert(id.clone());
    let mut resp = next.run(req).await;
    if !super::visibility::sees_archive_command(&id) {
        resp = super::visibility::for_reader(resp).await;
    }
    if write && resp.status().is_success() {
        tracing::info!(user = %id.name(), auth = id.kind(), method = %method, path = %path,
            "change through the api");
        s.dashboard.changes.bump();
    }
    resp
}

#[derive(Serialize)]
pub struct SessionView {
    /// `open`, `token` or `proxy`.
    auth: &'static str,
    name: String,
    /// `read`, `ack` or `admin`.
    role: &'static str,
}

/// `GET /api/v1/session`: who the dashboard is talking as (401 when nobody).
pub async fn session(Extension(id): Extension<Identity>) -> Json<SessionView> {
    Json(SessionView {
        auth: id.kind(),
        name: id.name().to_string(),
        role: id.role().as_str(),
    })
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
