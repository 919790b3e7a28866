//! The agent's one outbound connection: a bidirectional gRPC stream over mutual TLS.
//!
//! - No inbound ports: the agent dials the collector and keeps the stream open.
//! - Sends from the spool, oldest first; removes results only on the collector's Ack. After
//!   any reconnect everything still in the spool is sent again (the collector deduplicates).
//! - Reconnects with exponential backoff and full jitter, so a collector restart is not met by
//!   the whole fleet in the same second: 1 s to 60 s before the first session worked, 1 s to
//!   10 s after, so an outage is followed by seconds of delay, not up to a minute.
//! - Certificates are read at every connection attempt, so replaced files take effect without
//!   a restart.
//! - Failures are logged with their whole error chain: with TLS 1.3 a refused client
//!   certificate surfaces only as "transport error" at the first call, and the reason
//!   (`CertificateRequired`, `UnknownCA`) is deep in the chain.

use crate::config::CollectorLink;
use crate::schedule::{Sink, Trigger};
use backwatch_common::backoff::Backoff;
use backwatch_common::error::chain;
use backwatch_proto::convert::{from_ts, to_ts};
use backwatch_proto::wire::{
    AgentMessage, AgentPayload, CollectorPayload, CommandAction, CommandReply, Hello, IngestClient,
    Ping, ResultBatch, Unsupported,
};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};

const PING_EVERY: Duration = Duration::from_secs(30);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
/// A collector that answers neither results nor pings for this long is stuck (a store that
/// hangs, a half-open connection): drop the stream and reconnect.
const SILENCE_LIMIT: Duration = Duration::from_secs(3 * 30);
/// Results sent but not yet acknowledged, at most (bounds memory and replay work).
const MAX_IN_FLIGHT: usize = 2000;
/// Most encoded bytes of results in one batch. The collector refuses messages over 4 MiB and
/// holds a stream's whole message before admitting it, so a batch stays well under that
/// whatever its results hold (a backup directory's listing, a long error); a single result
/// over it is sent as an error result saying so (see `Spool::read_after`).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("reading {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("collector URL {url}: {source}")]
    Endpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("collector refused the stream: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("collector did not answer hello within {0:?}")]
    NoWelcome(Duration),
    #[error("collector closed the stream")]
    Closed,
    #[error("collector said nothing for {0:?}; reconnecting")]
    Silent(Duration),
}

/// What an operator should look at, for the failures whose message alone does not say.
fn hint(error: &str) -> &'static str {
    if error.contains("fatal alert") || error.contains("CertificateRequired") {
        "the collector refused this agent's certificate: it must be signed by the fleet CA, unexpired, and name this host"
    } else if error.contains("UnknownIssuer") || error.contains("NotValidForName") {
        "this agent does not trust the collector's certificate: check collector.ca and collector.server_name"
    } else if error.contains("Connection refused") || error.contains("tcp connect") {
        "nothing listens at the collector URL"
    } else {
        ""
    }
}

pub struct HostFacts {
    pub instance_id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    /// Every check id this configuration produces, sent in Hello so the collector retires the
    /// checks of probes that were removed.
    pub checks: Vec<String>,
    /// `[labels]`, sent in Hello.
    pub labels: backwatch_proto::model::labels::Labels,
}

impl HostFacts {
    pub fn gather(
        checks: Vec<String>,
        labels: backwatch_proto::model::labels::Labels,
    ) -> HostFacts {
        HostFacts {
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
            hostname: sysinfo::System::host_name().unwrap_or_default(),
            os: sysinfo::System::long_os_version().unwrap_or_default(),
            kernel: sysinfo::System::kernel_version().unwrap_or_default(),
            checks,
            labels,
        }
    }
}

pub async fn run(
    cfg: CollectorLink,
    renewed: Arc<Notify>,
    sink: Sink,
    trigger: Trigger,
    facts: HostFacts,
) {
    let mut backoff = Backoff::agent();
    loop {
        let mut welcomed = false;
        match session(&cfg, &renewed, &sink, &trigger, &facts, &mut welcomed).await {
            Ok(()) => info!("collector stream ended"),
            Err(e) => {
                let (waiting, held) = sink
                    .spool
                    .call(|s| (s.len(), s.held()))
                    .await
                    .unwrap_or((0, 0));
                let error = chain(&e);
                warn!(error = %error, hint = hint(&error), spooled = waiting, held_in_memory = held, "collector unreachable; results stay in the spool");
            }
        }
        if welcomed {
            backoff.session_worked();
        }
        tokio::time::sleep(backoff.next_with(fastrand::f64())).await;
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::ReadFile {
        path: path.display().to_string(),
        source,
    })
}

async fn connect(
    cfg: &CollectorLink,
) -> Result<IngestClient<tonic::transport::Channel>, LinkError> {
    let (cert, key) = {
        // Never a new key with an old certificate: renewal replaces both under this lock.
        let _held = crate::enroll::IDENTITY_FILES
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (read(&cfg.cert)?, read(&cfg.key)?)
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.ca)?))
        .identity(Identity::from_pem(cert, key));
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    let endpoint_err = |source| LinkError::Endpoint {
        url: cfg.url.clone(),
        source,
    };
    let channel = Endpoint::from_shared(cfg.url.clone())
        .map_err(endpoint_err)?
        .tls_config(tls)
        .map_err(endpoint_err)?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|source| LinkError::Connect {
            url: cfg.url.clone(),
            source,
        })?;
    Ok(IngestClient::new(channel))
}

struct Out {
    tx: mpsc::Sender<AgentMessage>,
    seq: u64,
}

impl Out {
    async fn send(&mut self, payload: AgentPayload) -> Result<(), LinkError> {
        self.seq += 1;
        self.tx
            .send(AgentMessage {
                seq: self.seq,
                payload: Some(payload),
            })
            .await
            .map_err(|_| LinkError::Closed)
    }
}

async fn session(
    cfg: &CollectorLink,
    renewed: &Notify,
    sink: &Sink,
    trigger: &Trigger,
    facts: &HostFacts,
    welcomed: &mut bool,
) -> Result<(), LinkError> {
    let mut client = connect(cfg).await?;
    let (tx, rx) = mpsc::channel(32);
    let mut out = Out { tx, seq: 0 };
    let (spooled, dropped) = sink
        .spool
        .call(|s| (s.len() as u64, s.dropped))
        .await
        .unwrap_or((0, 0));
    out.send(AgentPayload::Hello(Hello {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        hostname: facts.hostname.clone(),
        os: facts.os.clone(),
        kernel: facts.kernel.clone(),
        agent_time: Some(to_ts(Utc::now())),
        instance_id: facts.instance_id.clone(),
        spooled_results: spooled,
        spool_dropped: dropped,
        capabilities: vec!["run-now".into()],
        checks: facts.checks.clone(),
        labels: facts
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }))
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();

    let max_batch = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
        Err(_) => return Err(LinkError::NoWelcome(WELCOME_TIMEOUT)),
        Ok(msg) => match msg?.and_then(|m| m.payload) {
            Some(CollectorPayload::Welcome(w)) => {
                info!(host = %w.host, collector = %w.collector_version, spooled, "connected to collector");
                w.max_batch.clamp(1, 1000) as usize
            }
            Some(_) => 100,
            None => return Err(LinkError::Closed),
        },
    };
    *welcomed = true;

    let mut sent_upto = 0u64;
    let mut in_flight = 0usize;
    let mut last_heard = std::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        if in_flight < MAX_IN_FLIGHT {
            let take = max_batch.min(MAX_IN_FLIGHT - in_flight);
            let batch = sink
                .spool
                .call(move |s| s.read_after(sent_upto, take, MAX_BATCH_BYTES))
                .await
                .unwrap_or_default();
            if let Some((last, _)) = batch.last() {
                sent_upto = *last;
                in_flight += batch.len();
                debug!(count = batch.len(), "sending results");
                let results = batch.into_iter().map(|(_, r)| r).collect();
                out.send(AgentPayload::Results(ResultBatch { results }))
                    .await?;
                continue;
            }
        }
        tokio::select! {
            _ = sink.notify.notified() => {}
            _ = renewed.notified() => {
                info!("certificate renewed; reconnecting with the new identity");
                return Ok(());
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return Err(LinkError::Silent(SILENCE_LIMIT));
                }
                out.send(AgentPayload::Ping(Ping { agent_time: Some(to_ts(Utc::now())) })).await?;
            }
            msg = inbound.message() => {
                let Some(msg) = msg? else { return Ok(()) };
                last_heard = std::time::Instant::now();
                match msg.payload {
                    Some(CollectorPayload::Ack(ack)) => {
                        for r in &ack.rejected {
                            warn!(result_id = %r.result_id, reason = %r.reason, "collector rejected a result; dropping it");
                        }
                        let ids: Vec<String> = ack
                            .result_ids
                            .into_iter()
                            .chain(ack.rejected.into_iter().map(|r| r.result_id))
                            .collect();
                        let (removed, still_out) = sink
                            .spool
                            .call(move |s| {
                                let removed = s.ack(ids.iter().map(String::as_str));
                                (removed, s.count_through(sent_upto))
                            })
                            .await
                            .unwrap_or((0, 0));
                        in_flight = still_out;
                        debug!(removed, in_flight, "collector acknowledged results");
                    }
                    Some(CollectorPayload::Pong(p)) => {
                        if let (Some(sent), Some(server)) = (p.agent_time.as_ref().and_then(|t| from_ts(t).ok()), p.server_time.as_ref().and_then(|t| from_ts(t).ok())) {
                            let now = Utc::now();
                            let rtt = now - sent;
                            let skew = server - (sent + rtt / 2);
                            debug!(rtt_ms = rtt.num_milliseconds(), skew_ms = skew.num_milliseconds(), "pong");
                        }
                    }
                    Some(CollectorPayload::Command(c)) => {
                        let error = match c.action {
                            Some(CommandAction::RunProbeNow(r)) => match trigger.run_now(&r.check) {
                                Ok(()) => {
                                    info!(check = %r.check, "collector asked to run probes now");
                                    String::new()
                                }
                                Err(e) => {
                                    warn!(check = %r.check, error = %e, "collector asked to run probes now; refused");
                                    e
                                }
                            },
                            None => "unknown command".to_string(),
                        };
                        out.send(AgentPayload::CommandReply(CommandReply { command_id: c.command_id, error })).await?;
                    }
                    Some(CollectorPayload::Welcome(_)) => {}
                    Some(CollectorPayload::Unsupported(u)) => {
                        warn!(seq = u.seq, reason = %u.reason, "collector did not understand a message");
                    }
                    None => {
                        out.send(AgentPayload::Unsupported(Unsupported { seq: msg.seq, reason: "unknown payload".into() })).await?;
                    }
                }
            }
        }
    }
}
