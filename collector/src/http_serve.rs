//! How the HTTP listener (API, dashboard, `/metrics`) is served: plain HTTP or HTTPS
//! (`http.tls_cert` / `http.tls_key`, reloaded on SIGHUP), each connection under the
//! listener's [`Gate`], with a header read timeout and an idle timeout.
//!
//! Invariants:
//! - a request's headers must arrive within `http.header_timeout` (HTTP/1.1, also between
//!   requests on a kept-alive connection): a slowloris client or an idle connection is closed;
//! - a connection that has started no request for `http.idle_timeout` is shut down
//!   gracefully (HTTP/1.1 and HTTP/2 alike): a response in progress (the live events stream,
//!   a large report) finishes, nothing new is accepted on it;
//! - the certificate is read at start and again on SIGHUP; a reload that fails keeps the
//!   running certificate.

use crate::listen::{Gate, Guarded};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

/// HTTP/2: the collector pings a quiet peer this often and drops it when the ping is not
/// answered within [`KEEPALIVE_TIMEOUT`] (a peer gone without closing).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[http]` settings of the listener itself.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpListen {
    pub limits: crate::listen::Limits,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// `http.tls_cert` and `http.tls_key`: HTTPS when set.
    pub tls: Option<HttpTlsFiles>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The HTTPS certificate in use, replaced on SIGHUP.
#[derive(Debug)]
pub struct CertSlot {
    current: RwLock<Arc<CertifiedKey>>,
}

/// Certificate chain and key read and checked to belong together; errors name the file.
pub fn load_certified(files: &HttpTlsFiles) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> =
        crate::tls::read_certs(&files.cert).map_err(|e| e.to_string())?;
    let key = crate::tls::read_key(&files.key).map_err(|e| e.to_string())?;
    CertifiedKey::from_der(certs, key, &crate::tls::provider()).map_err(|e| {
        format!(
            "{} and {} do not make a usable certificate and key: {e}",
            files.cert.display(),
            files.key.display()
        )
    })
}

impl CertSlot {
    pub fn load(files: &HttpTlsFiles) -> Result<Arc<CertSlot>, String> {
        Ok(Arc::new(CertSlot {
            current: RwLock::new(Arc::new(load_certified(files)?)),
        }))
    }

    pub fn reload(&self, files: &HttpTlsFiles) -> Result<(), String> {
        let key = Arc::new(load_certified(files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    /// TLS 1.2 and 1.3 (what browsers speak), no client certificate, ALPN h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Serve `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpListen,
    tls: Option<TlsAcceptor>,
    gate: Arc<Gate>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let settings = Arc::new(settings);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = gate.admit() else {
            continue; // dropped: closed at once
        };
        let (app, settings, tls, gate) = (app.clone(), settings.clone(), tls.clone(), gate.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(Guarded::new(tcp, slot, None), peer, app, &settings).await,
                Some(acceptor) => {
                    let Some(handshake) = gate.handshake() else {
                        return;
                    };
                    if let Some(stream) = gate.tls(handshake, &acceptor, tcp, peer).await {
                        serve_connection(Guarded::new(stream, slot, None), peer, app, &settings)
                            .await
                    }
                }
            }
        });
    }
}

/// Milliseconds since `origin` at the start of the connection's last request.
struct LastRequest {
    origin: Instant,
    at_ms: AtomicU64,
}

impl LastRequest {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let at = self.origin + Duration::from_millis(self.at_ms.load(Ordering::Relaxed));
        at.elapsed()
    }
}

async fn serve_connection<IO>(io: IO, peer: SocketAddr, app: Router, settings: &HttpListen)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(LastRequest {
        origin: Instant::now(),
        at_ms: AtomicU64::new(0),
    });
    let seen = last.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            seen.touch();
            // The peer address decides whether a trusted proxy's user header is believed.
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                use tower::ServiceExt;
                app.oneshot(req).await
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(settings.idle_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(peer = %peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = tick.tick(), if !closing => {
                if last.quiet_for() >= settings.idle_timeout {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Say at start what plain HTTP means for credentials.
pub fn warn_plaintext(
    listen: SocketAddr,
    settings: &HttpListen,
    auth: &crate::config::http_auth::HttpAuth,
) {
    if settings.tls.is_none() && auth.plain_bearer_refused && !auth.tokens.is_empty() {
        tracing::warn!(http = %listen,
            "plain HTTP on a non-loopback address without a trusted proxy: requests carrying a \
             bearer token (API, dashboard login, enrollment tokens) are refused; set \
             http.tls_cert and http.tls_key, or put a TLS proxy in front (http.trusted_proxies)");
    } else if settings.tls.is_some() {
        info!(http = %listen, "HTTPS on the HTTP listener");
    }
}

/// Reload the HTTPS certificate (SIGHUP).
pub fn reload(slot: &CertSlot, files: Option<&HttpTlsFiles>) -> Result<(), String> {
    match files {
        Some(f) => slot.reload(f),
        None => Err("http.tls_cert was removed: switching HTTPS off needs a restart".into()),
    }
}
