//! Runs the collector: store, mTLS gRPC ingest, HTTP API and dashboard, the silence sweeper,
//! the alert engine and notification delivery.

use crate::api::{self, ApiState};
use crate::config::alerting::Alerting;
use crate::config::http_auth::HttpAuth;
use crate::config::reloadable::Reloadable;
use crate::config::reports::Reports;
use crate::config::{Access, Config, Thresholds};
use crate::ingest::IngestService;
use crate::labels::HostLabels;
use crate::listen::{Gate, Guarded};
use crate::silence;
use crate::store::{SqlStore, Store};
use crate::tls;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, info};

/// Largest gRPC message accepted (bytes): a full batch of results fits many times over.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// HTTP/2 flow-control window of one agent stream (bytes); see `run`. It also caps the DATA
/// frames an agent sends (HTTP/2's smallest frame limit is 16 KiB), and so how far each
/// stream's frame and message buffers grow: in a fleet-wide spool drain every stream grows
/// them at once. 10,000 agents draining 300 results each peaked at 1.22 GiB with 16 KiB, 1.01
/// with 8 and 0.84 with 4 at the same throughput, and at 0.88 with 8 once the session read
/// its own messages (`docs/benchmarks.md`, 2026-12-05). Not smaller than 8 KiB: an agent's
/// largest batch (1 MiB, `MAX_BATCH_BYTES`) then takes 128 round trips, 45 s over a 350 ms
/// link, inside the agent's 90 s limit for a collector that says nothing (it hears nothing
/// while its batch is still going out).
const STREAM_WINDOW_BYTES: u32 = 8 << 10;
/// HTTP/2 flow-control window of one agent connection (bytes): an agent opens one stream, and
/// HTTP/2 starts every connection at 64 KiB anyway.
const CONNECTION_WINDOW_BYTES: u32 = 64 << 10;

/// What SIGHUP reloads without a restart: the TLS files (certificate rotation, a new CA bundle),
/// the access lists (deny a lost agent) and the [`Settings`] (thresholds, groups, overrides,
/// alerting, routes, delivery, maintenance, reports, dashboard tokens). Listen addresses, the
/// store, `[silence]`, `[enroll]`, listener limits, `alerts.evaluate_every`,
/// `delivery.alertmanager_every` and `delivery.worker_id` need a restart; a file changing
/// `http.listen` or HTTPS is refused whole.
pub struct Live {
    acceptor: RwLock<TlsAcceptor>,
    pub access: RwLock<Access>,
    /// The HTTPS certificate, when `http.tls_cert` is set.
    http_cert: Option<Arc<crate::http_serve::CertSlot>>,
    settings: Settings,
    /// The HTTP listener as started: the access rules of a reloaded file were checked against
    /// its own `http.listen` and HTTPS, so a file that changes them is refused (a restart).
    http_listen: std::net::SocketAddr,
    https: bool,
}

/// The reloadable parts of the configuration that the engine, ingest, delivery, reports and
/// the API read; a reload replaces all of them together.
#[derive(Clone)]
pub struct Settings {
    pub thresholds: Reloadable<Thresholds>,
    pub alerting: Reloadable<Alerting>,
    pub reports: Reloadable<Reports>,
    pub http_auth: Reloadable<HttpAuth>,
    /// The fleet's labels: not configuration, kept across reloads.
    pub labels: HostLabels,
}

impl Settings {
    pub fn new(config: &Config, labels: HostLabels) -> Settings {
        Settings {
            thresholds: Reloadable::new(config.thresholds.clone().with_labels(labels.clone())),
            alerting: Reloadable::new(config.alerting.clone()),
            reports: Reloadable::new(config.reports.clone()),
            http_auth: Reloadable::new(config.http_auth.clone()),
            labels,
        }
    }

    fn replace(&self, config: Config) {
        self.thresholds
            .set(config.thresholds.with_labels(self.labels.clone()));
        self.alerting.set(config.alerting);
        self.reports.set(config.reports);
        self.http_auth.set(config.http_auth);
    }
}

impl Live {
    fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .map_or_else(|p| p.into_inner().clone(), |a| a.clone())
    }

    pub fn access(&self) -> Access {
        self.access
            .read()
            .map_or_else(|p| p.into_inner().clone(), |a| a.clone())
    }

    fn reload(&self, path: &Path) {
        let cfg = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "reload refused: configuration has problems; keeping the running one");
                return;
            }
        };
        // Open access and the refusal of bearer tokens over plain HTTP were decided for the
        // file's own listener; applied to another (the running one) they could open the API.
        if cfg.http_listen != self.http_listen || cfg.http.tls.is_some() != self.https {
            error!(file = %path.display(),
                "reload refused: http.listen or http.tls_cert/tls_key changed, which takes a restart (the access rules depend on them); keeping the running configuration");
            return;
        }
        // A new [smtp] that cannot be used (its CA file, say) is refused here, not found by
        // the delivery worker at its next message.
        if let Some(smtp) = &cfg.alerting.smtp
            && let Err(e) = crate::notify::email::Mailer::new(smtp)
        {
            error!(error = %e, "reload refused: [smtp] unusable; keeping the running configuration");
            return;
        }
        match tls::server_config(&cfg.tls) {
            Ok(tls) => {
                if let Ok(mut a) = self.acceptor.write() {
                    *a = TlsAcceptor::from(tls);
                }
            }
            Err(e) => {
                error!(error = %e, "reload refused: TLS files unusable; keeping the running ones");
                return;
            }
        }
        if let Some(slot) = &self.http_cert
            && let Err(e) = crate::http_serve::reload(slot, cfg.http.tls.as_ref())
        {
            error!(error = %e, "reload refused: HTTPS certificate unusable; keeping the running one");
            return;
        }
        if let Ok(mut a) = self.access.write() {
            *a = cfg.access.clone();
        }
        self.settings.replace(cfg);
        info!(
            "configuration reloaded: TLS files, access lists, thresholds, groups, overrides, \
             alerting, routes, delivery, maintenance windows, reports and dashboard tokens \
             (listen addresses, store, [silence], [enroll], listener limits, \
             alerts.evaluate_every, delivery.alertmanager_every and delivery.worker_id take \
             effect on restart)"
        );
    }
}

pub async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    crate::listen::raise_open_files();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(&config.store_url).await?);
    info!(store = %crate::store::redact_url(&config.store_url), "store ready");
    let tls_config = tls::server_config(&config.tls)?;
    let labels = HostLabels::default();
    if let Err(e) = labels.load(store.as_ref()).await {
        tracing::warn!(error = %e, "cannot read host labels yet; groups by label fill in as agents say hello");
    }
    tokio::spawn(labels.clone().refresh(store.clone()));
    let settings = Settings::new(&config, labels);

    let grpc = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC listener {}", config.grpc_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding HTTP listener {}", config.http_listen))?;
    info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, "collector listening");

    let http_cert = match &config.http.tls {
        Some(files) => Some(
            crate::http_serve::CertSlot::load(files)
                .map_err(|e| anyhow::anyhow!("HTTPS certificate: {e}"))?,
        ),
        None => None,
    };
    let http_tls = match &http_cert {
        Some(slot) => Some(TlsAcceptor::from(
            slot.server_config()
                .map_err(|e| anyhow::anyhow!("HTTPS configuration: {e}"))?,
        )),
        None => None,
    };
    crate::http_serve::warn_plaintext(config.http_listen, &config.http, &config.http_auth);
    let live = Arc::new(Live {
        acceptor: RwLock::new(TlsAcceptor::from(tls_config)),
        access: RwLock::new(config.access.clone()),
        http_cert,
        settings: settings.clone(),
        http_listen: config.http_listen,
        https: config.http.tls.is_some(),
    });
    tokio::spawn(reload_on_sighup(live.clone(), config_path));
    if let Some(enroll) = &config.enroll {
        crate::enroll::spawn(enroll, &config.tls, store.clone(), live.clone()).await?;
    }
    let (conn_tx, conn_rx) = mpsc::channel(64);
    let grpc_gate = crate::listen::Gate::new("grpc", config.grpc_limits);
    tokio::spawn(accept_loop(grpc, live.clone(), grpc_gate, conn_tx));
    let changed = Arc::new(tokio::sync::Notify::new());
    // SQLite takes one writer at a time; PostgreSQL merges the flushes of a few.
    let writers = if crate::leader::is_postgres(&config.store_url) {
        4
    } else {
        1
    };
    let writer = crate::group_commit::GroupWriter::start(store.clone(), writers);
    let supersede_grace = config
        .enroll
        .as_ref()
        .map_or(crate::config::enroll::DEFAULT_SUPERSEDE_GRACE, |e| {
            e.supersede_grace
        });
    let commands = crate::commands::Commands::default();
    let ingest = IngestService::new(
        store.clone(),
        settings.thresholds.clone(),
        live,
        changed.clone(),
        writer,
        supersede_grace,
        commands.clone(),
    );
    let grpc_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // What an agent may send before the collector reads it: a stream waiting for
        // admission holds at most this much unread (hyper's default is 1 MiB per stream and
        // per connection, times 10,000 agents). An agent needs far less per round trip.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .add_service(crate::ingest::IngestServer::new(ingest, MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(
            ReceiverStream::new(conn_rx).map(Ok::<_, std::io::Error>),
            shutdown_signal(),
        );

    // Fleet-wide duties run on one collector of those sharing the store (see `leader`).
    let leader = crate::leader::Leader::start(&config.store_url);
    tokio::spawn(silence::run(
        store.clone(),
        config.silence.clone(),
        leader.clone(),
    ));
    tokio::spawn(crate::retention::run(
        store.clone(),
        config.store_retention,
        leader.clone(),
    ));

    let queued = Arc::new(tokio::sync::Notify::new());
    let engine = crate::alerts::Engine::new(
        store.clone(),
        settings.alerting.clone(),
        settings.thresholds.clone(),
        queued.clone(),
    );
    tokio::spawn(engine.run(leader.clone(), changed));
    let worker = crate::notify::Worker::new(store.clone(), settings.alerting.clone(), queued)
        .map_err(|e| anyhow::anyhow!("starting notification delivery: {e}"))?;
    tokio::spawn(worker.run());
    let sync = crate::notify::alertmanager::Sync::new(
        store.clone(),
        settings.alerting.clone(),
        settings.thresholds.clone(),
        config.alerting.delivery.webhook_timeout,
    )
    .map_err(|e| anyhow::anyhow!("starting Alertmanager delivery: {e}"))?;
    tokio::spawn(sync.run(leader.clone()));
    tokio::spawn(crate::report::task::run(
        store.clone(),
        settings.reports.clone(),
        settings.alerting.clone(),
    ));

    let dashboard = Arc::new(api::Dashboard::start(
        store.clone(),
        settings.http_auth.clone(),
        settings.thresholds.clone(),
    ));
    let app = api::router(ApiState {
        store,
        alerting: settings.alerting.clone(),
        dashboard,
        reports: settings.reports.clone(),
        enroll: config.enroll.clone().map(Arc::new),
        commands,
    });
    let http_gate = crate::listen::Gate::new("http", config.http.limits);
    let http_server = crate::http_serve::serve(
        http,
        app,
        config.http.clone(),
        http_tls,
        http_gate,
        shutdown_signal(),
    );

    tokio::select! {
        r = grpc_server => r.context("gRPC server")?,
        () = http_server => {}
    }
    info!("collector stopped");
    Ok(())
}

async fn reload_on_sighup(live: Arc<Live>, path: PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler: reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        live.reload(&path);
    }
}

async fn accept_loop(
    listener: TcpListener,
    live: Arc<Live>,
    gate: Arc<Gate>,
    out: mpsc::Sender<Guarded<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over either cap the connection is dropped (closed) before any TLS work.
        let Some(slot) = gate.admit() else {
            continue;
        };
        let Some(handshake) = gate.handshake() else {
            continue;
        };
        let acceptor = live.acceptor();
        let (out, gate) = (out.clone(), gate.clone());
        tokio::spawn(async move {
            let accept = acceptor.accept(tcp).into_fallible();
            let accepted = tokio::time::timeout(crate::listen::HANDSHAKE_TIMEOUT, accept).await;
            drop(handshake);
            match accepted {
                Ok(Ok(stream)) => {
                    // Agents keep their stream for good: no idle timeout here (HTTP/2
                    // keepalive finds the dead ones).
                    let _ = out.send(Guarded::new(stream, slot, None)).await;
                }
                Ok(Err((e, tcp))) => {
                    gate.handshake_failed(peer, &e);
                    linger_close(tcp).await;
                }
                Err(_) => gate.handshake_failed(peer, &"handshake timed out"),
            }
        });
    }
}

/// Close a refused connection without a reset. With TLS 1.3 the client believes the handshake
/// is done and is already sending when its certificate is refused; closing with its data
/// unread would send a TCP reset, and the reset can destroy the alert that tells the agent
/// *why* ("UnknownCA") before it reads it. So: shut down our side, then drain briefly.
async fn linger_close(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
