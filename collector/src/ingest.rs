//! gRPC ingest: one bidirectional stream per agent.
//!
//! Invariants:
//! - the host is the one named by the client certificate ([`crate::tls::host_of`]); nothing in
//!   the messages can change it;
//! - a denied certificate, one renewed from a denied one, or one superseded by a newer
//!   certificate for its host (see [`crate::enroll::standing`]) gets no stream; an open stream
//!   is cut at its next message once a deny is reloaded, and within [`RECHECK_STANDING`] of
//!   being superseded;
//! - a certificate's first stream records its first use, from which on it supersedes the
//!   older certificates of its host (after the grace);
//! - a result is acknowledged only after the store committed it (or found it already stored),
//!   so an ack means durable; on a store error the stream ends without ack and the agent
//!   replays from its spool;
//! - a result the collector cannot understand is rejected by id with a reason, never stored
//!   half-read and never allowed to block the results behind it;
//! - a message is decoded only once admitted (`GroupWriter::admit_bytes`): a waiting stream
//!   holds its message encoded, in a buffer of its size (see `raw`).

use crate::config::Thresholds;
use crate::config::reloadable::Reloadable;
use crate::enroll::standing::{self, Presented};
use crate::group_commit::GroupWriter;
use crate::rules;
use crate::server::Live;
use crate::status::Verdict;
use crate::store::{Evaluated, HostFacts, Store};
use crate::tls::{fingerprint, host_of, validity_of};
use backwatch_proto::convert::{ConvertError, from_ts, to_ts};
use backwatch_proto::model::ProbeResult;
use backwatch_proto::wire::{
    Ack, AgentMessage, AgentPayload, CollectorMessage, CollectorPayload, Command, CommandAction,
    Message, Pong, Rejected, ResultBatch, RunProbeNow, Unsupported, Welcome,
};
use chrono::Utc;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::Bytes;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

mod limits;
mod previous;
mod raw;
use limits::{CHECKS_CHECK, HostChecks, StreamRate, clip};
use previous::{Known, Pending, Previous};
pub use raw::IngestServer;

/// Most results the agent may send in one batch (told to it in Welcome; the agent also keeps a
/// batch under 1 MiB encoded). Batches of 50 already reach the store's full rate; the agent
/// keeps several in flight.
pub const MAX_BATCH: usize = 100;

/// New check names one stream may have refused before it is cut: a broken or hostile agent
/// inventing names costs this much memory per stream at most.
const MAX_REFUSED_CHECKS: usize = 1_000;

/// A result measured further than this in the future (agent clock ahead) is flagged.
const CLOCK_AHEAD_TOLERANCE_SECS: i64 = 300;

/// How often an open stream asks the store whether its certificate was superseded: one
/// indexed query a minute per stream, so a copied key holding a stream open loses it soon
/// after the grace.
pub const RECHECK_STANDING: Duration = Duration::from_secs(60);

pub struct IngestService {
    store: Arc<dyn Store>,
    thresholds: Reloadable<Thresholds>,
    live: Arc<Live>,
    /// Open streams per agent identity, to bound what one (possibly stolen) identity can hold.
    streams: Arc<Mutex<HashMap<String, u32>>>,
    /// New streams per identity per minute (see `limits`).
    stream_rate: StreamRate,
    /// Checks per host, shared by the host's streams (see `limits`).
    host_checks: Arc<HostChecks>,
    /// Wakes the alert engine when a stored result changed a check's status, so an alert
    /// does not wait for the engine's next tick.
    changed: Arc<Notify>,
    /// Results and contact go through group commit (see `group_commit`).
    writer: GroupWriter,
    /// Where the HTTP API's "run now" requests reach this collector's agent streams.
    commands: crate::commands::Commands,
    /// `enroll.supersede_grace` (its default without `[enroll]`: certificates recorded
    /// while enrollment was on still supersede).
    supersede_grace: Duration,
}

impl IngestService {
    pub fn new(
        store: Arc<dyn Store>,
        thresholds: Reloadable<Thresholds>,
        live: Arc<Live>,
        changed: Arc<Notify>,
        writer: GroupWriter,
        supersede_grace: Duration,
        commands: crate::commands::Commands,
    ) -> Self {
        IngestService {
            store,
            thresholds,
            live,
            streams: Arc::default(),
            stream_rate: StreamRate::default(),
            host_checks: Arc::default(),
            changed,
            writer,
            commands,
            supersede_grace,
        }
    }
}

/// Holds one of an agent's stream slots; gives it back when the stream ends.
struct StreamSlot {
    host: String,
    streams: Arc<Mutex<HashMap<String, u32>>>,
}

impl StreamSlot {
    fn take(streams: &Arc<Mutex<HashMap<String, u32>>>, host: &str, max: u32) -> Option<Self> {
        let mut map = streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(host.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            host: host.to_string(),
            streams: streams.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.host);
            }
        }
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

/// What a session queues for its agent. Boxed: the queue allocates room for 32 items up front
/// (tokio's block), 32 × 88 bytes unboxed, in each of 10,000 idle sessions.
type Queued = Result<Box<CollectorMessage>, Status>;

impl IngestService {
    /// One agent stream: `backwatch.v1.Ingest/Session`, its messages still encoded (see `raw`).
    async fn session(
        &self,
        request: Request<Streaming<Bytes>>,
        inbound: raw::Inbound,
    ) -> Result<Response<Outbound>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let cert = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let host = host_of(cert).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let (not_before, _) =
            validity_of(cert).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let fingerprint = fingerprint(cert);
        let access = self.live.access();
        if access.denies(&host, &fingerprint) {
            warn!(agent = %host, peer = %peer, fingerprint = %fingerprint, "refusing a denied agent");
            return Err(Status::permission_denied(format!(
                "agent {host} is denied by the collector's configuration"
            )));
        }
        // Before any store query: a reconnect loop costs a token, not round trips.
        if let Err(wait) =
            self.stream_rate
                .take(&host, access.max_streams_per_minute, Instant::now())
        {
            crate::api::metrics::COLLECTOR.refused_stream();
            debug!(agent = %host, peer = %peer, "stream refused: opened too many per minute");
            return Err(Status::resource_exhausted(format!(
                "agent {host} opened more than {} streams in a minute (grpc.max_streams_per_minute); retry in {} s",
                access.max_streams_per_minute,
                wait.as_secs() + 1
            )));
        }
        // Per stream, not per message: what a certificate was renewed from never changes.
        let renewed_from = standing::renewed_from(&*self.store, &fingerprint)
            .await
            .map_err(store_unavailable)?;
        if let Some(denied) = access.denied_ancestor(&renewed_from) {
            warn!(agent = %host, peer = %peer, fingerprint = %fingerprint, denied_ancestor = %denied,
                "refusing a certificate renewed from a denied one");
            return Err(Status::permission_denied(standing::lineage_message(&host)));
        }
        let presented = Presented {
            host: &host,
            fingerprint: &fingerprint,
            not_before,
        };
        if let Some(by) =
            standing::superseded(&*self.store, &presented, Utc::now(), self.supersede_grace)
                .await
                .map_err(store_unavailable)?
        {
            warn!(agent = %host, peer = %peer, fingerprint = %fingerprint, newer = %by.fingerprint,
                "refusing a superseded certificate");
            return Err(Status::permission_denied(standing::superseded_message(
                &host, &by,
            )));
        }
        if let Some(r) = retired(&*self.store, &host).await? {
            warn!(agent = %host, peer = %peer, "refusing a retired host");
            return Err(Status::permission_denied(retired_message(&r)));
        }
        let slot = StreamSlot::take(&self.streams, &host, access.max_streams_per_agent)
            .ok_or_else(|| {
                warn!(agent = %host, peer = %peer, "too many open streams for one agent");
                Status::resource_exhausted(format!(
                    "too many open streams for agent {host} (limit {})",
                    access.max_streams_per_agent
                ))
            })?;
        // Per stream, not per message. From this first use on the certificate supersedes
        // older ones of its host (after the grace) and blocks a second renewal of its parent
        // (see `standing`); a no-op read after the first stream.
        if self
            .store
            .mark_certificate_used(&fingerprint, Utc::now())
            .await
            .map_err(store_unavailable)?
        {
            info!(agent = %host, peer = %peer, fingerprint = %fingerprint,
                "certificate used for the first time");
        }
        let (tx, rx) = mpsc::channel(16);
        let session = Session {
            host: host.clone(),
            fingerprint,
            not_before,
            renewed_from,
            supersede_grace: self.supersede_grace,
            standing_checked: Instant::now(),
            store: self.store.clone(),
            thresholds: self.thresholds.clone(),
            live: self.live.clone(),
            changed: self.changed.clone(),
            writer: self.writer.clone(),
            tx,
            seq: 0,
            greeted: false,
            known: Known::default(),
            checks: self.host_checks.clone(),
            refused_checks: Default::default(),
            over_limit_raised: false,
            commands: self.commands.register(&host),
            admitted: None,
            _slot: slot,
        };
        let span = info_span!("stream", agent = %host, peer = %peer);
        tokio::spawn(session.run(inbound).instrument(span));
        let outbound = ReceiverStream::new(rx).map(|queued: Queued| queued.map(|m| *m));
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// `host`'s retirement, when it was taken out of the fleet (its streams are refused).
async fn retired(
    store: &dyn Store,
    host: &str,
) -> Result<Option<crate::store::RetiredHost>, Status> {
    store.retired_host(host).await.map_err(store_unavailable)
}

fn retired_message(r: &crate::store::RetiredHost) -> String {
    format!(
        "host {} was retired by {} at {} ({}); `backwatch-collector hosts unretire {}` lets it \
         report again",
        r.host,
        r.retired_by,
        r.retired_at.to_rfc3339(),
        r.reason,
        r.host
    )
}

struct Session {
    host: String,
    fingerprint: String,
    /// The certificate's `not_before`: its issue time when the store did not record it.
    not_before: chrono::DateTime<Utc>,
    /// The certificates this one was renewed from, nearest first.
    renewed_from: Vec<String>,
    supersede_grace: Duration,
    /// When the store last said this certificate was not superseded.
    standing_checked: Instant,
    store: Arc<dyn Store>,
    thresholds: Reloadable<Thresholds>,
    live: Arc<Live>,
    changed: Arc<Notify>,
    writer: GroupWriter,
    tx: mpsc::Sender<Queued>,
    seq: u64,
    greeted: bool,
    /// The previous state of every check this stream has seen (see `previous`).
    known: Known,
    /// How many checks the host has, shared by its streams on this collector.
    checks: Arc<HostChecks>,
    /// Checks whose results this stream refused (over the check limit), at most
    /// [`MAX_REFUSED_CHECKS`].
    refused_checks: std::collections::HashSet<String>,
    /// This stream already raised `agent.checks`.
    over_limit_raised: bool,
    /// "Run now" requests from the HTTP API for this host.
    commands: crate::commands::Registration,
    /// The admission of the message being handled (see `run` and `send`).
    admitted: Option<tokio::sync::OwnedSemaphorePermit>,
    _slot: StreamSlot,
}

impl Session {
    async fn run(mut self, mut inbound: raw::Inbound) {
        info!("agent stream opened");
        loop {
            let next = tokio::select! {
                m = inbound.next_message() => m,
                Some(request) = self.commands.rx.recv() => {
                    if let Err(status) = Box::pin(self.run_now(request)).await {
                        warn!(error = %status.message(), "ending agent stream");
                        break;
                    }
                    continue;
                }
            };
            let raw = match next {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(status) => {
                    // The agent went away, or sent what is not a message this collector
                    // reads (compressed, too large, cut short).
                    debug!(error = %status.message(), "ending agent stream");
                    self.end_stream(status).await;
                    break;
                }
            };
            // Admitted before decoding: while the fleet drains its spools, a stream waits here
            // holding only the encoded message (and reads no more, so HTTP/2 flow control holds
            // its agent back); the decoded form, many times larger, exists only for admitted
            // messages. Held until the message is handled (its results written), and never
            // while waiting on the agent (see `send`).
            // Its arrival, for the clock skew: the wait for admission is the collector's.
            let arrived = Utc::now();
            self.admitted = Some(self.writer.admit_bytes(raw.len()).await);
            let msg = match AgentMessage::decode(raw) {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "ending agent stream: undecodable message");
                    let status = Status::invalid_argument(format!("undecodable message: {e}"));
                    self.end_stream(status).await;
                    break;
                }
            };
            // Boxed: handling is the largest state of this task by far (7 KiB in all, against
            // under 1 KiB to wait for the next message), and every idle session is that task.
            let handled = Box::pin(self.handle(msg, arrived)).await;
            self.admitted = None;
            if let Err(status) = handled {
                warn!(error = %status.message(), "ending agent stream");
                self.end_stream(status).await;
                break;
            }
        }
        info!("agent stream closed");
    }

    /// Ends the stream with `status`, told to the agent if it still listens (the queue may be
    /// full: nothing shared is held meanwhile, see `send`).
    async fn end_stream(&mut self, status: Status) {
        self.admitted = None;
        let _ = self.tx.send(Err(status)).await;
    }

    /// Ask the agent to run `check` now (after Hello only: before it, the agent is not
    /// listening for commands yet).
    async fn run_now(&mut self, request: crate::commands::Request) -> Result<(), Status> {
        if !self.greeted {
            let _ = request
                .reply
                .send("its agent is still connecting; try again in a moment".into());
            return Ok(());
        }
        let check = request.check;
        info!(check = %clip(&check), "asking the agent to run a probe now");
        let command_id = format!("run-now-{}", self.seq + 1);
        self.commands.sent(command_id.clone(), request.reply);
        self.send(CollectorPayload::Command(Command {
            command_id,
            action: Some(CommandAction::RunProbeNow(RunProbeNow { check })),
        }))
        .await
    }

    /// Queues `payload` for the agent. An agent that does not read its answers makes this
    /// wait, so the message's admission is released first: a session waiting on its agent
    /// holds nothing the fleet shares (it held a whole 2 MiB budget for a large message, and
    /// every other agent's results waited behind it). Every payload is sent once the work
    /// of its message is done.
    async fn send(&mut self, payload: CollectorPayload) -> Result<(), Status> {
        self.admitted = None;
        self.seq += 1;
        let msg = CollectorMessage {
            seq: self.seq,
            payload: Some(payload),
        };
        self.tx
            .send(Ok(Box::new(msg)))
            .await
            .map_err(|_| Status::cancelled("agent went away"))
    }

    /// `arrived`: when the message was read, before it waited for admission.
    async fn handle(
        &mut self,
        msg: AgentMessage,
        arrived: chrono::DateTime<Utc>,
    ) -> Result<(), Status> {
        // A deny added by SIGHUP cuts streams that are already open, at their next message.
        let access = self.live.access();
        if access.denies(&self.host, &self.fingerprint) {
            return Err(Status::permission_denied(format!(
                "agent {} is denied by the collector's configuration",
                self.host
            )));
        }
        if let Some(denied) = access.denied_ancestor(&self.renewed_from) {
            warn!(fingerprint = %self.fingerprint, denied_ancestor = %denied,
                "cutting a stream of a certificate renewed from a denied one");
            return Err(Status::permission_denied(standing::lineage_message(
                &self.host,
            )));
        }
        if self.standing_checked.elapsed() >= RECHECK_STANDING {
            self.recheck_standing().await?;
        }
        let now = Utc::now();
        match msg.payload {
            Some(AgentPayload::Hello(h)) => {
                // Against its arrival: a wait for admission (a fleet-wide spool drain) is
                // not the agent's clock being behind.
                let skew_ms = h
                    .agent_time
                    .as_ref()
                    .and_then(|t| from_ts(t).ok())
                    .map_or(0, |t| (arrived - t).num_milliseconds());
                let (labels, refused) = crate::labels::accept(h.labels);
                if !refused.is_empty() {
                    warn!(labels = %clip(&refused.join(", ")),
                        "agent sent labels the collector refuses (bad or reserved names, empty or long values, too many); ignoring them");
                }
                let facts = HostFacts {
                    agent_version: h.agent_version.chars().take(64).collect(),
                    hostname: h.hostname.chars().take(253).collect(),
                    os: h.os.chars().take(128).collect(),
                    instance_id: h.instance_id.chars().take(64).collect(),
                    clock_skew_ms: skew_ms,
                    labels,
                };
                self.store
                    .touch_host(&self.host, now, Some(&facts))
                    .await
                    .map_err(store_unavailable)?;
                self.thresholds
                    .get()
                    .labels()
                    .set(&self.host, facts.labels.clone());
                self.store
                    .set_host_silent(&self.host, false)
                    .await
                    .map_err(store_unavailable)?;
                self.retire_unconfigured(&h.checks, now).await?;
                self.commands.announce(&h.checks);
                self.checks_back_under_limit(now).await?;
                info!(
                    version = %clip(&facts.agent_version),
                    spooled = h.spooled_results,
                    dropped = h.spool_dropped,
                    skew_ms,
                    "agent said hello"
                );
                self.greeted = true;
                self.send(CollectorPayload::Welcome(Welcome {
                    host: self.host.clone(),
                    server_time: Some(to_ts(Utc::now())),
                    max_batch: MAX_BATCH as u32,
                    collector_version: env!("CARGO_PKG_VERSION").to_string(),
                }))
                .await
            }
            Some(AgentPayload::Results(batch)) => {
                if !self.greeted {
                    return Err(Status::failed_precondition("send Hello before results"));
                }
                let ack = self.ingest(batch).await?;
                self.send(CollectorPayload::Ack(ack)).await
            }
            Some(AgentPayload::Ping(p)) => {
                self.contact(now).await?;
                self.send(CollectorPayload::Pong(Pong {
                    agent_time: p.agent_time,
                    server_time: Some(to_ts(Utc::now())),
                }))
                .await
            }
            Some(AgentPayload::CommandReply(r)) => {
                info!(command = %clip(&r.command_id), error = %clip(&r.error), "agent answered a command");
                self.commands.answered(&r.command_id, &clip(&r.error));
                Ok(())
            }
            Some(AgentPayload::Unsupported(u)) => {
                warn!(seq = u.seq, reason = %clip(&u.reason), "agent did not understand a message");
                Ok(())
            }
            None => {
                // A payload this collector does not know: a newer agent. Say so and go on.
                self.send(CollectorPayload::Unsupported(Unsupported {
                    seq: msg.seq,
                    reason: "unknown payload".into(),
                }))
                .await
            }
        }
    }

    /// Cut the stream when a newer certificate for this host has replaced this one.
    async fn recheck_standing(&mut self) -> Result<(), Status> {
        let presented = Presented {
            host: &self.host,
            fingerprint: &self.fingerprint,
            not_before: self.not_before,
        };
        let by = standing::superseded(&*self.store, &presented, Utc::now(), self.supersede_grace)
            .await
            .map_err(store_unavailable)?;
        if let Some(by) = by {
            warn!(fingerprint = %self.fingerprint, newer = %by.fingerprint,
                "cutting a stream of a superseded certificate");
            return Err(Status::permission_denied(standing::superseded_message(
                &self.host, &by,
            )));
        }
        if let Some(r) = retired(&*self.store, &self.host).await? {
            warn!("cutting a stream of a host retired meanwhile");
            return Err(Status::permission_denied(retired_message(&r)));
        }
        self.standing_checked = Instant::now();
        Ok(())
    }

    /// The agent spoke: record it, and clear a silent mark that a sweep set while this stream
    /// was already open (the hello cleared it once; only contact can clear it again).
    async fn contact(&self, at: chrono::DateTime<Utc>) -> Result<(), Status> {
        let written = self
            .writer
            .write(&self.host, Vec::new(), at)
            .await
            .map_err(store_unavailable)?;
        self.clear_silent(written.silent).await
    }

    async fn clear_silent(&self, silent: bool) -> Result<(), Status> {
        if silent {
            self.store
                .set_host_silent(&self.host, false)
                .await
                .map_err(store_unavailable)?;
        }
        Ok(())
    }

    async fn ingest(&mut self, batch: ResultBatch) -> Result<Ack, Status> {
        if batch.results.len() > MAX_BATCH {
            return Err(Status::resource_exhausted(format!(
                "batch of {} results is over the limit of {MAX_BATCH}",
                batch.results.len()
            )));
        }
        // Until this batch is written: bounds what a fleet-wide spool drain holds in memory.
        let _admitted = self.writer.admit(batch.results.len()).await;
        let received_at = Utc::now();
        let limits = self.thresholds.get().for_host(&self.host);
        let mut ack = Ack::default();
        let mut evaluated = Vec::with_capacity(batch.results.len());
        let mut pending = Vec::with_capacity(batch.results.len());
        // Each check's previous state as this batch goes on; the session's copy changes
        // only once the store has kept the batch.
        let mut working: HashMap<String, Previous> = HashMap::new();
        let mut refused = 0;
        let mut dropped_unconfigured = 0u32;
        for wire in batch.results {
            let id = wire.result_id.clone();
            let result = match ProbeResult::try_from(wire) {
                Ok(r) => r,
                Err(e) => {
                    ack.rejected.push(reject(id, e));
                    continue;
                }
            };
            let check = result.check_id();
            // Still in the agent's spool from before the check was removed from its
            // configuration (hello retired it): taken off the spool, not stored, or it would
            // come back as a check with a stale status and then an overdue alert.
            if !working.contains_key(&check) && !self.commands.configures(&check) {
                dropped_unconfigured += 1;
                ack.result_ids.push(result.result_id);
                continue;
            }
            // Refused before in this stream: refused again without asking the store.
            let known_refused = self.refused_checks.contains(&check);
            if !known_refused && !working.contains_key(&check) {
                let prev = self.previous(&check).await?;
                working.insert(check.clone(), prev);
            }
            // A check the host does not have yet (the store has no state for it, and this
            // stream stored none): it must fit under the host's limit.
            let is_new = working.get(&check).is_none_or(|p| p.status.is_none());
            if known_refused || (is_new && !self.room_for_new_check().await?) {
                self.refuse_check(&check)?;
                refused += 1;
                ack.rejected.push(Rejected {
                    result_id: result.result_id,
                    reason: format!(
                        "host {} already has {} checks, the limit (grpc.max_checks_per_host): \
                         results of a new check {} are refused",
                        self.host,
                        self.live.access().max_checks_per_host,
                        clip(&check)
                    ),
                });
                continue;
            }
            let prev = working.get_mut(&check).expect("inserted above");
            let mut verdict: Verdict =
                rules::evaluate(&result, prev.status, prev.result.as_ref(), &limits);
            flag_clock_ahead(&mut verdict, &result, received_at);
            debug!(check = %clip(&check), status = %verdict.status, "result judged");
            prev.apply(verdict.status, &result, received_at);
            pending.push(Pending {
                check,
                status: verdict.status,
                result: result.clone(),
            });
            evaluated.push(Evaluated {
                result,
                received_at,
                verdict,
            });
        }
        if refused > 0 {
            self.over_check_limit(refused, received_at).await?;
        }
        if dropped_unconfigured > 0 {
            info!(
                results = dropped_unconfigured,
                "results of checks no longer in the agent's configuration acknowledged, not stored"
            );
        }
        if !evaluated.is_empty() {
            let ids: Vec<String> = evaluated
                .iter()
                .map(|e| e.result.result_id.clone())
                .collect();
            let written = match self.writer.write(&self.host, evaluated, received_at).await {
                Ok(w) => w,
                Err(e) => {
                    // The agent replays this batch; whether any of it landed is unknown.
                    self.known.clear();
                    return Err(store_unavailable(e));
                }
            };
            self.known.stored(pending, &written.inserted, received_at);
            crate::api::metrics::COLLECTOR.ingested(ids.len());
            if written.changed {
                self.changed.notify_one();
            }
            self.clear_silent(written.silent).await?;
            ack.result_ids.extend(ids);
        }
        Ok(ack)
    }

    /// How many checks the host has: this collector's count, else the store's.
    async fn check_count(&mut self) -> Result<u32, Status> {
        if let Some(n) = self.checks.get(&self.host) {
            return Ok(n);
        }
        let n = self
            .store
            .check_states(Some(&self.host))
            .await
            .map_err(store_unavailable)?
            .len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Whether one more check fits under `grpc.max_checks_per_host`; counts it when it does,
    /// for every stream of the host on this collector at once.
    async fn room_for_new_check(&mut self) -> Result<bool, Status> {
        let stored = self.check_count().await?;
        let max = self.live.access().max_checks_per_host;
        Ok(self.checks.admit(&self.host, stored, max))
    }

    /// Remember `check` as refused (bounded: a stream that keeps inventing check names is
    /// cut), and keep no previous state for it.
    fn refuse_check(&mut self, check: &str) -> Result<(), Status> {
        self.known.remove(check);
        if self.refused_checks.contains(check) {
            return Ok(());
        }
        if self.refused_checks.len() >= MAX_REFUSED_CHECKS {
            return Err(Status::resource_exhausted(format!(
                "more than {MAX_REFUSED_CHECKS} new checks refused on this stream \
                 (grpc.max_checks_per_host); closing it"
            )));
        }
        self.refused_checks.insert(check.to_string());
        Ok(())
    }

    /// Results of new checks were refused: count them, and raise `agent.checks` once.
    async fn over_check_limit(
        &mut self,
        refused: usize,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), Status> {
        crate::api::metrics::COLLECTOR.refused_checks(refused);
        if self.over_limit_raised {
            return Ok(());
        }
        let max = self.live.access().max_checks_per_host;
        warn!(
            refused,
            max, "results of new checks refused: host over its check limit"
        );
        let summary = format!(
            "results of new checks refused: the host already has {max} checks, the limit \
             (grpc.max_checks_per_host); remove probes from its agent or raise the limit"
        );
        self.store
            .set_pseudo_check(
                &self.host,
                CHECKS_CHECK,
                crate::status::Status::Warning,
                &summary,
                at,
            )
            .await
            .map_err(store_unavailable)?;
        self.over_limit_raised = true;
        Ok(())
    }

    /// At hello: stored checks the agent's configuration no longer has are retired (their
    /// alerts resolve, they leave the host, they are never overdue). An empty list is an
    /// older agent that does not say: nothing is retired. The list is the agent's word
    /// about its own checks only (the identity is the certificate's), and a list longer
    /// than any honest configuration is ignored.
    async fn retire_unconfigured(
        &mut self,
        configured: &[String],
        at: chrono::DateTime<Utc>,
    ) -> Result<(), Status> {
        let max = self.live.access().max_checks_per_host as usize;
        if configured.is_empty() || configured.len() > max.saturating_mul(4).max(64) {
            return Ok(());
        }
        let keep: std::collections::HashSet<&str> = configured.iter().map(String::as_str).collect();
        let stored = self
            .store
            .check_states(Some(&self.host))
            .await
            .map_err(store_unavailable)?;
        let mut retired = 0u32;
        for c in stored.iter().filter(|c| !keep.contains(c.check.as_str())) {
            let summary = "retired: no longer in the agent's configuration";
            if self
                .store
                .retire_check(&self.host, &c.check, summary, at)
                .await
                .map_err(store_unavailable)?
            {
                info!(check = %clip(&c.check), "check retired: no longer in the agent's configuration");
                self.known.remove(c.check.as_str());
                retired += 1;
            }
        }
        self.checks.set(
            &self.host,
            u32::try_from(stored.len()).unwrap_or(u32::MAX) - retired,
        );
        Ok(())
    }

    /// At hello: a host that is under its check limit again ends an `agent.checks` alert.
    async fn checks_back_under_limit(&mut self, at: chrono::DateTime<Utc>) -> Result<(), Status> {
        let max = self.live.access().max_checks_per_host;
        if self.check_count().await? < max {
            self.store
                .set_pseudo_check(
                    &self.host,
                    CHECKS_CHECK,
                    crate::status::Status::Ok,
                    "the host is under its check limit again",
                    at,
                )
                .await
                .map_err(store_unavailable)?;
        }
        Ok(())
    }

    /// A check's previous state: what this stream last stored, else (first time the stream
    /// sees the check) what the store holds.
    async fn previous(&mut self, check: &str) -> Result<Previous, Status> {
        if let Some(p) = self.known.get(check) {
            return Ok(p.clone());
        }
        let state = self
            .store
            .check_state(&self.host, check)
            .await
            .map_err(store_unavailable)?;
        let prev = Previous::from_state(state);
        self.known.insert(check.to_string(), prev.clone());
        Ok(prev)
    }
}

/// A measurement dated in the future cannot be true: store it, but say so where people look
/// (summary and details) instead of presenting it as fact. Results dated in the past are
/// normal (replayed from the spool after an outage).
fn flag_clock_ahead(
    verdict: &mut Verdict,
    result: &ProbeResult,
    received_at: chrono::DateTime<Utc>,
) {
    let ahead = (result.measured_at - received_at).num_seconds();
    if ahead > CLOCK_AHEAD_TOLERANCE_SECS {
        warn!(check = %result.check_id(), ahead_s = ahead, "result measured in the future: agent clock ahead");
        verdict.summary.push_str(&format!(
            " [agent clock ahead: measured {} in the future]",
            crate::human::duration(ahead)
        ));
        if let serde_json::Value::Object(map) = &mut verdict.details {
            map.insert("clock_ahead_secs".into(), ahead.into());
        } else {
            verdict.details = serde_json::json!({ "clock_ahead_secs": ahead });
        }
    }
}

fn reject(result_id: String, e: ConvertError) -> Rejected {
    warn!(result_id = %clip(&result_id), reason = %e, "rejecting malformed result");
    Rejected {
        result_id,
        reason: e.to_string(),
    }
}

fn store_unavailable(e: crate::store::StoreError) -> Status {
    tracing::error!(error = %e, "store failed; results stay in the agent's spool");
    Status::unavailable("collector store unavailable; retry later")
}
