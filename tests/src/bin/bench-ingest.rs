//! Collector ingest benchmark: N simulated agents on real mutual-TLS gRPC streams
//! against a real collector process on SQLite or on a private PostgreSQL cluster.
//!
//! Measures, in this order:
//! 1. memory per connected agent: the collector's RSS with every agent connected and idle,
//!    minus its RSS before they connected, divided by N;
//! 2. sustained throughput: every agent sends batches of `--batch` results (default 1, the
//!    collector's worst case: a round of the stream per result; larger, as a spool drain after
//!    an outage sends) as fast as acks come back (closed loop), for a fixed time; an ack
//!    means stored durably, so acked results per second is the figure;
//! 3. latency at a fixed load: the agents send `--rate` results per second in total while a
//!    few hosts turn critical; the time from sending that result to its alert being visible
//!    in the API (the alert and its queued notification commit together) is recorded.
//!
//! With `--drain R` it measures a fleet-wide spool drain instead of 2 and 3: every agent, at
//! the same moment, sends R results in full batches (`--batch`), all of them at once as an
//! agent does after an outage (up to 2,000 results in flight), and goes on as acks come
//! back; the row gives the time until every result was acknowledged (stored durably), the
//! count stored against the count sent, and the collector's peak RSS (VmHWM) through it.
//!
//! Run by `scripts/bench-collector`, which builds in release mode and raises the descriptor
//! limit. Prints one Markdown table row per phase.

use anyhow::{Context, Result, bail, ensure};
use backwatch_proto::convert::to_ts;
use backwatch_proto::wire::{
    AgentMessage, AgentPayload, CollectorMessage, CollectorPayload, DiskObservation, Hello,
    IngestClient, ResultBatch, WireObservation,
};
use backwatch_tests::harness::{Certs, Collector, PgCluster, free_port};
use backwatch_tests::sim;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

struct Args {
    store: String,
    agents: usize,
    seconds: u64,
    rate: u64,
    /// Results per batch in the flood phase.
    batch: usize,
    /// Results each agent drains at once (`--drain`); none: flood and paced phases.
    drain: Option<u64>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        store: "sqlite".into(),
        agents: 1000,
        seconds: 20,
        rate: 2000,
        batch: 1,
        drain: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--store" => a.store = value,
            "--agents" => a.agents = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--drain" => a.drain = Some(value.parse()?),
            other => bail!(
                "unknown flag {other} (--store sqlite|postgres --agents N --seconds S --rate R --batch B [--drain R])"
            ),
        }
    }
    ensure!(
        a.store == "sqlite" || a.store == "postgres",
        "--store sqlite|postgres"
    );
    let most = backwatch_collector::ingest::MAX_BATCH;
    ensure!(
        (1..=most).contains(&a.batch),
        "--batch 1..{most} (the collector's limit)"
    );
    Ok(a)
}

/// What the driver tells every agent to do.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Idle,
    /// Next batch as soon as the previous one is acknowledged.
    Flood,
    /// One result every this many microseconds.
    Paced(u64),
    /// Send this many results at once, in batches, then idle.
    Drain(u64),
}

/// Results an agent keeps sent but unacknowledged while it drains (the agent's `MAX_IN_FLIGHT`).
const DRAIN_IN_FLIGHT: u64 = 2000;

#[derive(Default)]
struct Totals {
    connected: AtomicU64,
    acked: AtomicU64,
    /// Send-to-ack times of sampled batches, microseconds.
    ack_us: Mutex<Vec<u64>>,
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory line, KiB: `VmRSS:` now, `VmHWM:` the peak.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| key.to_string())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args()?;
    let hosts = sim::host_names(a.agents);
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    eprintln!("issuing {} agent certificates", a.agents);
    let certs = Certs::fleet(&names)?;
    // BENCH_PG_STATS=1: load pg_stat_statements and print where the server's time went.
    let pg_stats = std::env::var_os("BENCH_PG_STATS").is_some();
    let mut pg = None;
    let url = if a.store == "postgres" {
        let mut builder = PgCluster::init()
            .archive_mode("off")
            // The harness turns fsync off for speed; a durability benchmark must not.
            .setting("fsync", "on")
            .setting("max_connections", "100")
            .setting("shared_buffers", "256MB");
        if pg_stats {
            builder = builder.setting("shared_preload_libraries", "pg_stat_statements");
        }
        let cluster = builder.start()?;
        cluster.create_database("backwatch")?;
        if pg_stats {
            cluster.psql_in("backwatch", "CREATE EXTENSION pg_stat_statements")?;
        }
        let url = cluster.url_for("backwatch");
        pg = Some(cluster);
        Some(url)
    } else {
        None
    };
    // No silence, no reminders during the run; one route so alerts queue notifications
    // (to a mail server that is not there: they stay queued, which is all we time).
    let toml = format!(
        "[silence]\nhost_after = \"1h\"\n[alerts]\nevaluate_every = \"2s\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"bench@localhost\"\n\
         [[routes]]\nname = \"dba\"\nto = [\"dba@localhost\"]\nmin_status = \"warning\"\n",
        free_port()
    );
    let collector = match &url {
        Some(u) => Collector::postgres(&certs, u),
        None => Collector::sqlite(&certs),
    };
    // The default level a deployment runs at: the tests' debug lines (one per result) would
    // be part of what is measured.
    let collector = collector.toml(&toml).log_filter("info").start().await?;
    let pid = collector.pid().context("collector pid")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid)?;

    let totals = Arc::new(Totals::default());
    let (mode_tx, mode_rx) = watch::channel(Mode::Idle);
    let ca = std::fs::read(certs.ca())?;
    let started = Instant::now();
    for (i, host) in hosts.iter().enumerate() {
        let endpoint = sim::endpoint(&certs, &ca, host, &collector.grpc_url())?;
        // Connect at about 400 per second, as a fleet starting up would.
        let delay = Duration::from_micros(i as u64 * 2500);
        tokio::spawn(agent(
            host.clone(),
            endpoint,
            totals.clone(),
            mode_rx.clone(),
            delay,
            a.batch,
        ));
    }
    while (totals.connected.load(Ordering::Relaxed) as usize) < a.agents {
        if started.elapsed() > Duration::from_secs(60 + a.agents as u64 / 50) {
            bail!(
                "only {} of {} agents connected\n{}",
                totals.connected.load(Ordering::Relaxed),
                a.agents,
                collector
                    .log()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{} agents connected in {:.1?}", a.agents, started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_connected = rss_kib(pid)?;
    let per_agent = (rss_connected.saturating_sub(rss_before)) as f64 / a.agents as f64;

    if let Some(each) = a.drain {
        let sent = each * a.agents as u64;
        let acked0 = totals.acked.load(Ordering::Relaxed);
        let t0 = Instant::now();
        mode_tx.send_replace(Mode::Drain(each));
        let mut last_change = (acked0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let acked = totals.acked.load(Ordering::Relaxed) - acked0;
            if acked >= sent {
                break;
            }
            if acked != last_change.0 {
                last_change = (acked, Instant::now());
            }
            ensure!(
                last_change.1.elapsed() < Duration::from_secs(120),
                "drain stalled at {acked} of {sent} results acknowledged\n{}",
                collector
                    .log()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let took = t0.elapsed().as_secs_f64();
        let acked = totals.acked.load(Ordering::Relaxed) - acked0;
        // Counted in the store itself where the benchmark can reach it (only results of the
        // drain are there: the other phases did not run); on SQLite, acks alone (an ack is
        // sent only after the commit that holds the result).
        let stored = match &pg {
            Some(pg) => pg
                .psql_in("backwatch", "SELECT count(*) FROM results")?
                .trim()
                .to_string(),
            None => "(acks only)".to_string(),
        };
        let peak = status_kib(pid, "VmHWM:")?;
        println!(
            "| {} | {} | {} each in batches of {} ({} results) | {:.1} s ({:.0}/s) | {} acked, {} stored of {} sent | {} MiB idle with all connected → peak {} MiB (VmHWM) |",
            a.store,
            a.agents,
            each,
            a.batch,
            sent,
            took,
            acked as f64 / took,
            acked,
            stored,
            sent,
            rss_connected / 1024,
            peak / 1024,
        );
        return Ok(());
    }

    // Phase 2: flood.
    let acked0 = totals.acked.load(Ordering::Relaxed);
    let t0 = Instant::now();
    mode_tx.send_replace(Mode::Flood);
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    mode_tx.send_replace(Mode::Idle);
    let flood = (totals.acked.load(Ordering::Relaxed) - acked0) as f64 / t0.elapsed().as_secs_f64();
    let flood_ack = {
        let mut v = std::mem::take(&mut *totals.ack_us.lock().unwrap());
        v.sort_unstable();
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };
    let rss_flood = rss_kib(pid)?;
    // Let the flood's last batches drain before the paced phase is timed.
    let mut last = totals.acked.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = totals.acked.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    totals.ack_us.lock().unwrap().clear();

    // Phase 3: paced load and result-to-alert latency.
    let per_agent_us = 1_000_000 * a.agents as u64 / a.rate.max(1);
    let acked0 = totals.acked.load(Ordering::Relaxed);
    let t0 = Instant::now();
    mode_tx.send_replace(Mode::Paced(per_agent_us));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alert_ms = alert_latencies(&certs, &ca, &collector, 20).await?;
    let remaining = Duration::from_secs(a.seconds).saturating_sub(t0.elapsed());
    tokio::time::sleep(remaining).await;
    mode_tx.send_replace(Mode::Idle);
    let paced = (totals.acked.load(Ordering::Relaxed) - acked0) as f64 / t0.elapsed().as_secs_f64();
    let paced_ack = {
        let mut v = std::mem::take(&mut *totals.ack_us.lock().unwrap());
        v.sort_unstable();
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };

    println!(
        "| {} | {} | {:.1} KiB ({} → {} MiB) | {:.0}/s, batches of {} (ack p50 {:.1} ms, p99 {:.1} ms; RSS {} MiB) | {:.0}/s asked {} | ack p50 {:.1} ms p99 {:.1} ms; result→alert p50 {} ms p99 {} ms max {} ms (n={}) |",
        a.store,
        a.agents,
        per_agent,
        rss_before / 1024,
        rss_connected / 1024,
        flood,
        a.batch,
        flood_ack.0 as f64 / 1000.0,
        flood_ack.1 as f64 / 1000.0,
        rss_flood / 1024,
        paced,
        a.rate,
        paced_ack.0 as f64 / 1000.0,
        paced_ack.1 as f64 / 1000.0,
        percentile(&alert_ms, 0.5),
        percentile(&alert_ms, 0.99),
        alert_ms.last().copied().unwrap_or(0),
        alert_ms.len(),
    );
    if let (true, Some(pg)) = (pg_stats, &pg) {
        eprintln!(
            "{}",
            pg.psql_in(
                "backwatch",
                "SELECT calls, round(total_exec_time)::bigint AS ms, \
                 round((total_exec_time / calls * 1000)::numeric, 1) AS us_per_call, rows, \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query \
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
            )?
        );
    }
    Ok(())
}

/// One simulated agent: connect, say hello, then do what `mode` says until the process ends.
async fn agent(
    host: String,
    endpoint: tonic::transport::Endpoint,
    totals: Arc<Totals>,
    mut mode: watch::Receiver<Mode>,
    delay: Duration,
    batch: usize,
) {
    tokio::time::sleep(delay).await;
    let mut counted = false;
    loop {
        if let Err(e) = session(&host, &endpoint, &totals, &mut mode, &mut counted, batch).await {
            eprintln!("{host}: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn session(
    host: &str,
    endpoint: &tonic::transport::Endpoint,
    totals: &Totals,
    mode: &mut watch::Receiver<Mode>,
    counted: &mut bool,
    flood_batch: usize,
) -> Result<()> {
    let (tx, mut inbound) = open_stream(host, endpoint).await?;
    if !*counted {
        *counted = true;
        totals.connected.fetch_add(1, Ordering::Relaxed);
    }
    let sample = fastrand::u8(..) < 16; // about one agent in 16 records its ack times
    let mut seq = 1u64;
    let mut n = 0u64;
    let mut in_flight: Option<Instant> = None;
    let mut pace = tokio::time::interval(Duration::from_secs(3600));
    let mut current = *mode.borrow();
    let mut drained = false;
    loop {
        if let (Mode::Drain(each), false) = (current, drained) {
            drained = true;
            drain(host, &tx, &mut inbound, totals, each, flood_batch, &mut seq).await?;
        }
        let send_now = match current {
            Mode::Flood => in_flight.is_none(),
            _ => false,
        };
        if send_now {
            seq += 1;
            tx.send(batch(host, seq, n, flood_batch)).await?;
            n += flood_batch as u64;
            in_flight = Some(Instant::now());
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                current = *mode.borrow();
                if let Mode::Paced(us) = current {
                    let period = Duration::from_micros(us.max(1));
                    // Spread the agents over the period.
                    let first = tokio::time::Instant::now() + period.mul_f64(fastrand::f64());
                    pace = tokio::time::interval_at(first, period);
                }
            }
            _ = pace.tick(), if matches!(current, Mode::Paced(_)) => {
                if in_flight.is_none() {
                    seq += 1;
                    tx.send(batch(host, seq, n, 1)).await?;
                    n += 1;
                    in_flight = Some(Instant::now());
                }
            }
            m = inbound.message() => {
                let Some(m) = m? else { bail!("stream ended") };
                if let Some(CollectorPayload::Ack(ack)) = m.payload {
                    totals.acked.fetch_add(ack.result_ids.len() as u64, Ordering::Relaxed);
                    if let Some(sent) = in_flight.take()
                        && sample
                    {
                        totals.ack_us.lock().unwrap().push(sent.elapsed().as_micros() as u64);
                    }
                }
            }
        }
    }
}

/// Send `each` results in batches of `size` with up to [`DRAIN_IN_FLIGHT`] unacknowledged, as
/// an agent drains its spool; returns once all are acknowledged.
async fn drain(
    host: &str,
    tx: &mpsc::Sender<AgentMessage>,
    inbound: &mut tonic::Streaming<CollectorMessage>,
    totals: &Totals,
    each: u64,
    size: usize,
    seq: &mut u64,
) -> Result<()> {
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < each {
        while sent < each && sent - acked < DRAIN_IN_FLIGHT {
            let n = (size as u64).min(each - sent);
            *seq += 1;
            // Numbered past anything the flood could have sent: ids stay unique.
            tx.send(batch(host, *seq, 1_000_000_000 + sent, n as usize))
                .await?;
            sent += n;
        }
        let Some(m) = inbound.message().await? else {
            bail!("stream ended while draining")
        };
        if let Some(CollectorPayload::Ack(ack)) = m.payload {
            ensure!(ack.rejected.is_empty(), "rejected: {:?}", ack.rejected);
            acked += ack.result_ids.len() as u64;
            totals
                .acked
                .fetch_add(ack.result_ids.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Connect, say Hello and wait for Welcome: a stream ready for results.
async fn open_stream(
    host: &str,
    endpoint: &tonic::transport::Endpoint,
) -> Result<(
    mpsc::Sender<AgentMessage>,
    tonic::Streaming<CollectorMessage>,
)> {
    let channel = endpoint.connect().await?;
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentMessage {
        seq: 1,
        payload: Some(AgentPayload::Hello(Hello {
            agent_version: "bench".into(),
            hostname: host.into(),
            agent_time: Some(to_ts(chrono::Utc::now())),
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    match inbound.message().await? {
        Some(m) if matches!(m.payload, Some(CollectorPayload::Welcome(_))) => {}
        other => bail!("no welcome: {other:?}"),
    }
    Ok((tx, inbound))
}

/// `size` results numbered from `n`: one check's measurements in order, as a spool drain
/// after an outage sends them.
fn batch(host: &str, seq: u64, n: u64, size: usize) -> AgentMessage {
    AgentMessage {
        seq,
        payload: Some(AgentPayload::Results(ResultBatch {
            results: (0..size as u64)
                .map(|i| sim::disk_result(host, n + i))
                .collect(),
        })),
    }
}

/// `count` extra hosts each send one critical disk result (nothing free) on a stream of their
/// own; for each, the milliseconds until `GET /api/v1/alerts` shows its alert. Sorted.
async fn alert_latencies(
    certs: &Certs,
    ca: &[u8],
    collector: &Collector,
    count: usize,
) -> Result<Vec<u64>> {
    let names: Vec<String> = (0..count).map(|i| format!("flip-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    certs.issue(&refs)?;
    let mut out = Vec::new();
    for host in &names {
        let endpoint = sim::endpoint(certs, ca, host, &collector.grpc_url())?;
        let (tx, inbound) = open_stream(host, &endpoint).await?;
        let mut r = sim::disk_result(host, 1);
        r.observation = Some(WireObservation::Disk(DiskObservation {
            path: "/backup".into(),
            total_bytes: 100 << 30,
            free_bytes: 0,
            avail_bytes: 0,
            ..Default::default()
        }));
        let sent = Instant::now();
        tx.send(AgentMessage {
            seq: 2,
            payload: Some(AgentPayload::Results(ResultBatch { results: vec![r] })),
        })
        .await?;
        loop {
            let alerts = collector.api("/api/v1/alerts?state=open&limit=500").await?;
            let seen = alerts
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["host"] == host.as_str()));
            if seen {
                out.push(sent.elapsed().as_millis() as u64);
                break;
            }
            ensure!(
                sent.elapsed() < Duration::from_secs(30),
                "no alert for {host}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop((tx, inbound));
        // Let the next probe start on a quiet engine round rather than back to back.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..250))).await;
    }
    out.sort_unstable();
    Ok(out)
}
