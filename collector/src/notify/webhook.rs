//! Generic JSON webhook: one POST per notification, for chat and paging tools.
//!
//! Invariants: TLS is rustls with ring and the webpki roots, built here rather than taken
//! from a process-wide default, so no other crypto provider can sneak in; the body is the
//! document rendered when the notification was queued; `Idempotency-Key` carries the stable
//! Message-ID so a receiver can drop the copy a retry in doubt may produce.

use super::Failure;
use crate::store::outbox::Notification;
use std::sync::Arc;
use std::time::Duration;

/// Longest part of a refusal's body kept as the failure's text.
const ANSWER_MAX: usize = 500;

pub struct Poster {
    client: reqwest::Client,
}

/// An HTTP client for outgoing deliveries (webhooks, Alertmanager): rustls with ring and the
/// webpki roots, `timeout` per request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("webhook TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .user_agent(concat!("backwatch-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("webhook client: {e}"))
}

impl Poster {
    pub fn new(timeout: Duration) -> Result<Poster, String> {
        Ok(Poster {
            client: client(timeout)?,
        })
    }

    /// POST the notification's document; the answer's status line on success.
    pub async fn send(&self, n: &Notification) -> Result<String, Failure> {
        let sent = self
            .client
            .post(&n.recipient)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &n.message_id)
            .body(n.payload.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let (permanent, in_doubt) = (e.is_builder(), !(e.is_connect() || e.is_builder()));
                let unreachable = e.is_connect() || e.is_timeout();
                return Err(Failure {
                    // The chain says why: "connection refused", "timed out". Without the URL:
                    // this text is stored, logged and shown, and the URL holds the secret.
                    text: backwatch_common::error::chain(&e.without_url()),
                    permanent,
                    // Refused before connecting: certainly not received.
                    in_doubt,
                    unreachable,
                });
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let answer = format!(
            "HTTP {status} {}",
            body.chars().take(ANSWER_MAX).collect::<String>()
        );
        if status.is_success() {
            return Ok(answer.trim_end().to_string());
        }
        // Asking again later can help with these: the server's trouble, a rate limit, and what
        // refuses every message alike until someone fixes the endpoint or its key (a rotated
        // token: 401, 403; a receiver being redeployed: 404). Any other 4xx refuses this
        // message and will refuse it again.
        use reqwest::StatusCode as S;
        let transient = status.is_server_error()
            || matches!(
                status,
                S::REQUEST_TIMEOUT
                    | S::TOO_MANY_REQUESTS
                    | S::UNAUTHORIZED
                    | S::FORBIDDEN
                    | S::NOT_FOUND
            );
        Err(Failure {
            text: answer.trim_end().to_string(),
            permanent: !transient,
            in_doubt: false,
            unreachable: false,
        })
    }
}
