//! Runs every probe on its own schedule, each in its own task.
//!
//! - A probe never blocks another: each has its task, and each run is bounded by the probe's
//!   timeout (a hung database or a stuck NFS mount becomes a "timed out" result).
//! - Jitter: the first run waits a random time up to `start_jitter`, later runs ±5 % of the
//!   interval, so a fleet restarted together does not probe in lock-step.
//! - Results go to the spool, never straight to the network: a slow or absent collector
//!   cannot delay a probe.

use crate::config::{ProbeConfig, Scheduled};
use crate::probe::Probe;
use crate::spool::Spool;
use backwatch_proto::model::{ProbeResult, check_id};
use backwatch_proto::wire;
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};
use tracing::{Instrument, debug, error, info_span, warn};

/// Where results go: the spool, plus a wake-up for the link.
#[derive(Clone)]
pub struct Sink {
    pub spool: Arc<Mutex<Spool>>,
    pub notify: Arc<Notify>,
}

impl Sink {
    pub async fn deliver(&self, result: &ProbeResult) {
        let wire = wire::ProbeResult::from(result);
        let spool = self.spool.clone();
        let id = result.result_id.clone();
        let stored = tokio::task::spawn_blocking(move || match spool.lock() {
            Ok(mut s) => s.push(&wire).map(|_| ()),
            Err(_) => Ok(()), // a panicked holder; nothing sensible to do but go on
        })
        .await;
        match stored {
            Ok(Ok(())) => {
                debug!(result_id = %id, "result spooled");
                self.notify.notify_one();
            }
            Ok(Err(e)) => {
                error!(result_id = %id, error = %e, "result could not be spooled and is lost")
            }
            Err(e) => error!(result_id = %id, error = %e, "spool task failed"),
        }
    }
}

/// Run a probe once and wrap what it saw into a result with a fresh id.
pub async fn run_once<P: Probe>(probe: &P, interval: Duration, timeout: Duration) -> ProbeResult {
    let measured_at = Utc::now();
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe.observe()).await {
        Ok(o) => o,
        Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
    };
    let (observation, error) = match outcome {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e)),
    };
    ProbeResult {
        result_id: uuid::Uuid::new_v4().to_string(),
        kind: P::KIND,
        name: probe.name().to_string(),
        measured_at,
        duration_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
        interval_secs: interval.as_secs().min(u32::MAX as u64) as u32,
        error,
        observation,
    }
}

/// Ask probes to run now: the check id, or "" for all.
pub type Trigger = broadcast::Sender<String>;

pub fn spawn_all(probes: Vec<Scheduled>, start_jitter: Duration, sink: Sink, trigger: &Trigger) {
    for s in probes {
        let rx = trigger.subscribe();
        let (interval, timeout) = (s.interval, s.timeout);
        match s.probe {
            ProbeConfig::BackupDir(p) => {
                spawn(p, interval, timeout, start_jitter, sink.clone(), rx)
            }
            ProbeConfig::Disk(p) => spawn(p, interval, timeout, start_jitter, sink.clone(), rx),
            ProbeConfig::Wal(p) => spawn(*p, interval, timeout, start_jitter, sink.clone(), rx),
            ProbeConfig::ArchiveDir(p) => {
                spawn(p, interval, timeout, start_jitter, sink.clone(), rx)
            }
            ProbeConfig::Restore(p) => spawn(p, interval, timeout, start_jitter, sink.clone(), rx),
            ProbeConfig::PgBackRest(p) => {
                spawn(p, interval, timeout, start_jitter, sink.clone(), rx)
            }
            ProbeConfig::Barman(p) => spawn(p, interval, timeout, start_jitter, sink.clone(), rx),
        }
    }
}

fn spawn<P: Probe>(
    probe: P,
    interval: Duration,
    timeout: Duration,
    start_jitter: Duration,
    sink: Sink,
    trigger: broadcast::Receiver<String>,
) {
    let check = check_id(P::KIND, probe.name());
    let span = info_span!("probe", check = %check);
    tokio::spawn(
        run_forever(probe, check, interval, timeout, start_jitter, sink, trigger).instrument(span),
    );
}

async fn run_forever<P: Probe>(
    probe: P,
    check: String,
    interval: Duration,
    timeout: Duration,
    start_jitter: Duration,
    sink: Sink,
    mut trigger: broadcast::Receiver<String>,
) {
    tokio::time::sleep(start_jitter.mul_f64(fastrand::f64())).await;
    loop {
        let result = run_once(&probe, interval, timeout).await;
        match &result.error {
            Some(e) => {
                warn!(error = %e, duration_ms = result.duration_ms, "probe could not observe")
            }
            None => debug!(duration_ms = result.duration_ms, "probe observed"),
        }
        sink.deliver(&result).await;
        let next = interval.mul_f64(0.95 + 0.1 * fastrand::f64());
        let sleep = tokio::time::sleep(next);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                t = trigger.recv() => match t {
                    Ok(which) if which.is_empty() || which == check => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        // No more triggers; just keep the schedule.
                        (&mut sleep).await;
                        break;
                    }
                },
            }
        }
    }
}
