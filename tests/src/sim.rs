//! A fleet simulator: N agents in one process, each with its own certificate and its own
//! mutual-TLS gRPC stream, speaking the real protocol (Hello, results, acks, pings) and
//! reconnecting with the agent's own backoff policy. For storm tests and ingest benchmarks,
//! where starting hundreds of agent processes would measure process start-up instead.

use crate::harness::Certs;
use backwatch_common::backoff::Backoff;
use backwatch_proto::convert::to_ts;
use backwatch_proto::wire::{
    AgentMessage, AgentPayload, CollectorPayload, DiskObservation, Hello, IngestClient, ProbeKind,
    ProbeResult, ResultBatch, WireObservation,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// What one simulated agent has done so far.
#[derive(Default)]
pub struct SimStats {
    pub connected: AtomicBool,
    /// Connection attempts, successful or not.
    pub attempts: AtomicU64,
    pub sessions: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
}

pub struct Fleet {
    pub agents: Vec<(String, Arc<SimStats>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    pub fn connected(&self) -> usize {
        self.agents
            .iter()
            .filter(|(_, s)| s.connected.load(Ordering::Relaxed))
            .count()
    }

    pub fn total(&self, f: impl Fn(&SimStats) -> u64) -> u64 {
        self.agents.iter().map(|(_, s)| f(s)).sum()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Host names `sim-0000` … for `n` agents.
pub fn host_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("sim-{i:04}")).collect()
}

/// What one simulated agent says: its labels (in Hello) and, at each tick, its results.
pub struct Script {
    pub labels: HashMap<String, String>,
    pub next: Box<dyn FnMut() -> Vec<ProbeResult> + Send>,
}

impl Script {
    /// One disk result per tick, half the disk used (ok).
    pub fn disk(host: &str) -> Script {
        let (host, mut n) = (host.to_string(), 0);
        Script {
            labels: HashMap::new(),
            next: Box::new(move || {
                n += 1;
                vec![disk_result(&host, n)]
            }),
        }
    }
}

/// Start `hosts` simulated agents against `url`, each sending one disk result every `every`.
pub fn start(certs: &Certs, hosts: &[String], url: &str, every: Duration) -> anyhow::Result<Fleet> {
    let ca = std::fs::read(certs.ca())?;
    let agents = hosts
        .iter()
        .map(|host| {
            Ok((
                host.clone(),
                endpoint(certs, &ca, host, url)?,
                Script::disk(host),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(start_scripted(agents, every))
}

/// Start one simulated agent per `(host, endpoint, script)`, each telling its script every
/// `every`.
pub fn start_scripted(agents: Vec<(String, Endpoint, Script)>, every: Duration) -> Fleet {
    let mut fleet = Fleet {
        agents: Vec::new(),
        tasks: Vec::new(),
    };
    for (host, endpoint, script) in agents {
        let stats = Arc::new(SimStats::default());
        fleet.agents.push((host.clone(), stats.clone()));
        fleet
            .tasks
            .push(tokio::spawn(run(host, endpoint, stats, every, script)));
    }
    fleet
}

/// The mutual-TLS endpoint of simulated agent `host` (`ca`: the fleet CA's PEM).
pub fn endpoint(certs: &Certs, ca: &[u8], host: &str, url: &str) -> anyhow::Result<Endpoint> {
    endpoint_files(ca, &certs.agent_cert(host), &certs.agent_key(host), url)
}

/// The mutual-TLS endpoint of an agent with this certificate and key (PEM files).
pub fn endpoint_files(
    ca: &[u8],
    cert: &std::path::Path,
    key: &std::path::Path,
    url: &str,
) -> anyhow::Result<Endpoint> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    Ok(Endpoint::from_shared(url.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(30)))
}

async fn run(
    host: String,
    endpoint: Endpoint,
    stats: Arc<SimStats>,
    every: Duration,
    mut script: Script,
) {
    let mut backoff = Backoff::agent();
    // Spread the first connection like a fleet booting over a few seconds.
    tokio::time::sleep(Duration::from_secs(2).mul_f64(fastrand::f64())).await;
    loop {
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let welcomed = session(&host, &endpoint, &stats, every, &mut script).await;
        stats.connected.store(false, Ordering::Relaxed);
        if welcomed {
            backoff.session_worked();
        }
        tokio::time::sleep(backoff.next_with(fastrand::f64())).await;
    }
}

/// One stream until it breaks; true when the collector said Welcome.
async fn session(
    host: &str,
    endpoint: &Endpoint,
    stats: &SimStats,
    every: Duration,
    script: &mut Script,
) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    let hello = AgentMessage {
        seq: 1,
        payload: Some(AgentPayload::Hello(Hello {
            agent_version: "sim".into(),
            hostname: host.into(),
            agent_time: Some(to_ts(chrono::Utc::now())),
            labels: script.labels.clone(),
            ..Default::default()
        })),
    };
    if tx.send(hello).await.is_err() {
        return false;
    }
    let Ok(response) = client.session(ReceiverStream::new(rx)).await else {
        return false;
    };
    let mut inbound = response.into_inner();
    match inbound.message().await {
        Ok(Some(m)) if matches!(m.payload, Some(CollectorPayload::Welcome(_))) => {}
        _ => return false,
    }
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.connected.store(true, Ordering::Relaxed);
    let mut seq = 1;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                let results = (script.next)();
                if results.is_empty() {
                    continue;
                }
                stats.sent.fetch_add(results.len() as u64, Ordering::Relaxed);
                let batch = ResultBatch { results };
                let msg = AgentMessage { seq, payload: Some(AgentPayload::Results(batch)) };
                if tx.send(msg).await.is_err() {
                    return true;
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    if let Some(CollectorPayload::Ack(a)) = m.payload {
                        stats.acked.fetch_add(a.result_ids.len() as u64, Ordering::Relaxed);
                    }
                }
                _ => return true,
            },
        }
    }
}

/// A disk result of `host`, numbered `n`: half the disk used (ok).
pub fn disk_result(host: &str, n: u64) -> ProbeResult {
    ProbeResult {
        result_id: format!("{host}-{}-{n}", std::process::id()),
        kind: ProbeKind::Disk as i32,
        name: "backup".into(),
        measured_at: Some(to_ts(chrono::Utc::now())),
        duration_ms: 1,
        interval_secs: 3600,
        observation: Some(WireObservation::Disk(DiskObservation {
            path: "/backup".into(),
            total_bytes: 100 << 30,
            free_bytes: 50 << 30,
            avail_bytes: 45 << 30,
            ..Default::default()
        })),
        ..Default::default()
    }
}
