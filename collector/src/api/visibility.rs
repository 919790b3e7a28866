//! What a caller with role `read` does not see: the servers' `archive_command`.
//!
//! The agent masks the credentials it recognises in `archive_command` (see the agent's
//! `redact_command`), but a command names hosts, buckets, paths and tools, and a credential in
//! a form the agent does not know stays. So the command is shown only to callers trusted to
//! act on alerts: role `ack` or `admin`, and open mode (this machine only). For `read`
//! callers every `/api/` JSON answer is filtered before it leaves, whatever the endpoint, so a
//! new endpoint that returns observations is covered by default:
//! - every `"archive_command"` field (in stored observations: `wal`, and `archive.postgres`)
//!   has the value [`HIDDEN`];
//! - a summary quoting the command (the `archive.*` rule's "archive_command '…' reports
//!   success without copying here") says `archive_command (hidden: needs role ack)` instead;
//!   the daily report's HTML and CSV get the same from `reports` before rendering.
//!
//! Notifications already sent (mail, webhooks) are not affected: they go to the people on the
//! alert routes.

use super::auth::Identity;
use crate::config::http_auth::Role;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use serde_json::Value;

/// What a `read` caller sees instead of an `archive_command`.
pub const HIDDEN: &str = "(hidden: needs role ack)";

/// Longest answer filtered (the API's largest, a history of 10 000 results, is far below).
const MAX_BODY: usize = 256 << 20;

/// Whether `id` sees `archive_command`: role `ack` and above (open mode counts as `ack`).
pub fn sees_archive_command(id: &Identity) -> bool {
    id.role() >= Role::Ack
}

/// `v` with every `archive_command` hidden; whether anything changed.
pub fn hide(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (key, value) in map.iter_mut() {
                if key == "archive_command" && value.is_string() {
                    if value.as_str() != Some(HIDDEN) {
                        *value = Value::String(HIDDEN.into());
                        changed = true;
                    }
                } else {
                    changed |= hide(value);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, item| hide(item) | c),
        Value::String(s) => match backwatch_rules::archive::hide_command(s, HIDDEN) {
            Some(hidden) => {
                *s = hidden;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// The answer for a caller who may not see `archive_command`: JSON bodies filtered by
/// [`hide`], anything else (the live event stream, pages) as it is.
pub async fn for_reader(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            // Never hand out an unfiltered answer: fail this one instead.
            tracing::error!(error = %e, "cannot read an api answer to filter it");
            return Response::builder()
                .status(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"error":"answer too large to filter"}"#))
                .unwrap_or_default();
        }
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if !hide(&mut value) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn archive_command_is_hidden_wherever_it_is() {
        let mut v = json!({
            "results": [
                {"observation": {"wal": {"archive_command": "cp %p /a/%f", "failed_count": 0}}},
                {"observation": {"archive": {"postgres": {"archive_command": "rsync %p b:/a"}}}},
                {"summary": "X is not in the archive although PostgreSQL reports it archived \
                             (3 segments archived): archive_command '/bin/true' reports \
                             success without copying here"},
            ],
            "archive_command_count": 1,
        });
        assert!(hide(&mut v));
        let text = v.to_string();
        assert!(
            !text.contains("cp %p") && !text.contains("rsync") && !text.contains("/bin/true"),
            "{text}"
        );
        assert_eq!(
            v["results"][0]["observation"]["wal"]["archive_command"],
            HIDDEN
        );
        assert_eq!(v["results"][0]["observation"]["wal"]["failed_count"], 0);
        assert!(
            v["results"][2]["summary"].as_str().unwrap().ends_with(
                "archive_command (hidden: needs role ack) reports success without copying here"
            ),
            "{v}"
        );
        assert!(!hide(&mut json!({"status": "ok", "n": [1, 2]})));
    }

    #[test]
    fn only_read_callers_lose_it() {
        let token = |role| Identity::Token {
            name: "t".into(),
            role,
        };
        assert!(!sees_archive_command(&token(Role::Read)));
        assert!(sees_archive_command(&token(Role::Ack)));
        assert!(sees_archive_command(&token(Role::Admin)));
        assert!(sees_archive_command(&Identity::Open));
    }
}
