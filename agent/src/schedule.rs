//! Runs every probe on its own schedule, each in its own task.
//!
//! - A probe never blocks another: each has its task, and each run is bounded by the probe's
//!   timeout (a hung database or a stuck NFS mount becomes a "timed out" result).
//! - A probe whose previous run is still stuck in the kernel (a `statvfs` on a dead mount,
//!   which nothing can cancel) is not started again: each of its turns reports "still blocked
//!   since …" instead, until that call returns. So a dead mount holds one thread per probe,
//!   not one more per run, and the other probes keep reporting (see [`crate::blocking`]).
//! - Jitter: the first run waits a random time up to `start_jitter`, later runs ±5 % of the
//!   interval, so a fleet restarted together does not probe in lock-step.
//! - Results go to the spool, never straight to the network: a slow or absent collector
//!   cannot delay a probe.
//! - Expensive probes (restore readiness reads a whole base backup) resume their schedule
//!   across restarts: the time of their last run is kept in the spool directory, and a
//!   restarted agent waits for the rest of the interval instead of reading the backup again.
//!   The collector keeps the previous result meanwhile (silence waits for twice the interval).
//! - Runs forced by the collector (`RunProbeNow`) are limited per probe: at most one per
//!   [`MIN_FORCED_GAP`], never while that probe is running; the rest is refused with a reason
//!   (see [`Trigger`]), so a collector looping on the command cannot turn a weekly restore
//!   verification into a continuous one.

use crate::blocking::Gate;
use crate::config::Scheduled;
use crate::probe::Probe;
use crate::spool::thread::SpoolThread;
use crate::spool::{Stored, check};
use backwatch_proto::model::{ProbeKind, ProbeResult};
use backwatch_proto::wire;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// Where results go: the spool (on its own thread), plus a wake-up for the link.
#[derive(Clone)]
pub struct Sink {
    pub spool: SpoolThread,
    pub notify: Arc<Notify>,
}

impl Sink {
    pub async fn deliver(&self, result: &ProbeResult) {
        let wire = wire::ProbeResult::from(result);
        let id = result.result_id.clone();
        let answer = self
            .spool
            .call(move |s| {
                let before = s.failure().cloned();
                let (_, stored) = s.push(&wire);
                // When this push changed whether the spool can write, say so in a result of
                // its own, which goes the same way (held in memory if need be).
                let report = check::report(before.as_ref(), s).map(|r| {
                    let (_, how) = s.push(&wire::ProbeResult::from(&r));
                    (r.result_id, how)
                });
                (stored, report)
            })
            .await;
        let Some((stored, report)) = answer else {
            error!(result_id = %id, "the spool thread failed; result lost");
            return;
        };
        for (id, how) in std::iter::once((id, stored)).chain(report) {
            match how {
                Stored::Spooled => debug!(result_id = %id, "result spooled"),
                Stored::Held => {
                    warn!(result_id = %id, "result held in memory, not spooled (the spool cannot write)")
                }
            }
        }
        self.notify.notify_one();
    }

    /// Send `disk.agent-spool` once as the spool is now (see [`check::at_start`]), so a
    /// restart after freeing a full disk clears the collector's unknown.
    pub async fn report_spool_at_start(&self) {
        match self.spool.call(check::at_start).await {
            Some((id, Stored::Spooled)) => debug!(result_id = %id, "spool check spooled"),
            Some((id, Stored::Held)) => {
                warn!(result_id = %id, "spool check held in memory, not spooled (the spool cannot write)")
            }
            None => error!("the spool thread failed; the spool check at start is lost"),
        }
        self.notify.notify_one();
    }
}

/// Run a probe once and wrap what it saw into a result with a fresh id. Blocking calls of the
/// run mark `gate` while they are inside the kernel, also after the timeout gave up on them.
pub async fn run_once(
    probe: &dyn Probe,
    interval: Duration,
    timeout: Duration,
    gate: &Gate,
) -> ProbeResult {
    let measured_at = Utc::now();
    let started = Instant::now();
    // Dropping the observation at the timeout kills its child processes (`kill_on_drop`) and
    // closes its connections; only a call stuck in the kernel outlives it, on its own thread.
    let outcome = match tokio::time::timeout(timeout, gate.scope(probe.observe())).await {
        Ok(o) => o,
        Err(_) => Err(format!("probe timed out after {}", fmt_secs(timeout))),
    };
    let (observation, error) = match outcome {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e)),
    };
    result(
        probe.kind(),
        probe.name(),
        measured_at,
        started,
        interval,
        error,
        observation,
    )
}

/// The result of a turn skipped because the previous run is still blocked since `since`.
fn still_blocked(probe: &dyn Probe, interval: Duration, since: DateTime<Utc>) -> ProbeResult {
    let error = format!(
        "timed out: still blocked since {} (a call that does not return, such as a hung NFS mount); not started again until it returns",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    result(
        probe.kind(),
        probe.name(),
        Utc::now(),
        Instant::now(),
        interval,
        Some(error),
        None,
    )
}

fn result(
    kind: ProbeKind,
    name: &str,
    measured_at: DateTime<Utc>,
    started: Instant,
    interval: Duration,
    error: Option<String>,
    observation: Option<backwatch_proto::model::Observation>,
) -> ProbeResult {
    ProbeResult {
        result_id: uuid::Uuid::new_v4().to_string(),
        kind,
        name: name.to_string(),
        measured_at,
        duration_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
        interval_secs: interval.as_secs().min(u32::MAX as u64) as u32,
        error,
        observation,
    }
}

/// "2m", "1s 500ms": a timeout as people write it.
fn fmt_secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Shortest time between two forced runs of one probe.
pub const MIN_FORCED_GAP: Duration = Duration::from_secs(10);

/// Asks probes to run now, within limits. Each probe's task registers here; cloning shares it.
#[derive(Clone, Default)]
pub struct Trigger {
    slots: Arc<Mutex<BTreeMap<String, Slot>>>,
}

/// One probe as the trigger sees it.
struct Slot {
    /// Ends the task's wait (a permit is kept when it is not waiting yet).
    wake: Arc<Notify>,
    /// Set by the task while a run is under way.
    running: Arc<AtomicBool>,
    last_forced: Option<Instant>,
}

impl Trigger {
    /// Register a probe's task: what wakes it, and the flag it keeps while running.
    fn register(&self, check: &str) -> (Arc<Notify>, Arc<AtomicBool>) {
        let slot = Slot {
            wake: Arc::new(Notify::new()),
            running: Arc::new(AtomicBool::new(false)),
            last_forced: None,
        };
        let handles = (slot.wake.clone(), slot.running.clone());
        self.lock().insert(check.to_string(), slot);
        handles
    }

    /// Run `check` now ("" for every probe). `Err` says what was not started and why; for ""
    /// the probes that may run are started all the same, and the error names the others.
    pub fn run_now(&self, check: &str) -> Result<(), String> {
        self.run_now_at(check, Instant::now())
    }

    fn run_now_at(&self, check: &str, now: Instant) -> Result<(), String> {
        let mut slots = self.lock();
        if !check.is_empty() && !slots.contains_key(check) {
            return Err(format!("no probe {check} on this agent"));
        }
        let (mut started, mut refused) = (0, Vec::new());
        for (id, slot) in slots.iter_mut() {
            if !check.is_empty() && id != check {
                continue;
            }
            let since = slot.last_forced.map(|t| now.saturating_duration_since(t));
            if slot.running.load(Ordering::SeqCst) {
                refused.push(format!("{id} is running"));
            } else if let Some(since) = since.filter(|s| *s < MIN_FORCED_GAP) {
                refused.push(format!(
                    "{id} was forced {}s ago (at most one forced run per {}s)",
                    since.as_secs(),
                    MIN_FORCED_GAP.as_secs()
                ));
            } else {
                slot.last_forced = Some(now);
                slot.wake.notify_one();
                started += 1;
            }
        }
        match (refused.is_empty(), started) {
            (true, _) => Ok(()),
            (false, 0) => Err(format!("rate limited: {}", refused.join("; "))),
            (false, n) => Err(format!(
                "rate limited: {}; the other {n} run now",
                refused.join("; ")
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        // A panic while holding this lock leaves the map consistent (single inserts/updates).
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Start every probe's task; `state_dir` keeps the last-run stamps of resumed schedules.
pub fn spawn_all(
    probes: Vec<Scheduled>,
    start_jitter: Duration,
    sink: Sink,
    trigger: &Trigger,
    state_dir: &Path,
) {
    for s in probes {
        let stamp = s
            .resumes
            .then(|| stamp_path(state_dir, &s.probe.check_id()));
        let mut task = Task::new(
            s.probe,
            s.interval,
            s.timeout,
            sink.clone(),
            trigger.clone(),
        );
        task.stamp = stamp;
        task.spawn(start_jitter);
    }
}

/// One probe's schedule.
struct Task {
    probe: Box<dyn Probe>,
    check: String,
    interval: Duration,
    timeout: Duration,
    sink: Sink,
    /// Woken by [`Trigger::run_now`].
    wake: Arc<Notify>,
    /// Set while a run is under way, so a forced run is refused meanwhile.
    running: Arc<AtomicBool>,
    /// Where the last run's time is kept, for schedules that resume across restarts.
    stamp: Option<PathBuf>,
    /// Marked while a blocking call of a run is in the kernel, even after its timeout.
    gate: Gate,
}

impl Task {
    fn new(
        probe: Box<dyn Probe>,
        interval: Duration,
        timeout: Duration,
        sink: Sink,
        trigger: Trigger,
    ) -> Self {
        let check = probe.check_id();
        let (wake, running) = trigger.register(&check);
        Task {
            probe,
            check,
            interval,
            timeout,
            sink,
            wake,
            running,
            stamp: None,
            gate: Gate::default(),
        }
    }

    fn spawn(self, start_jitter: Duration) {
        let span = info_span!("probe", check = %self.check);
        tokio::spawn(self.run_forever(start_jitter).instrument(span));
    }

    async fn run_forever(mut self, start_jitter: Duration) {
        let jitter = start_jitter.mul_f64(fastrand::f64());
        let last = self.stamp.as_deref().and_then(read_stamp);
        let first = first_delay(last, SystemTime::now(), self.interval);
        if !first.is_zero() {
            info!(
                next_in_s = first.as_secs(),
                "last run was less than an interval ago (before a restart); resuming its schedule"
            );
        }
        self.wait(first + jitter).await;
        loop {
            self.running.store(true, Ordering::SeqCst);
            let result = match self.gate.busy_since() {
                Some(since) => still_blocked(self.probe.as_ref(), self.interval, since),
                None => {
                    run_once(self.probe.as_ref(), self.interval, self.timeout, &self.gate).await
                }
            };
            match &result.error {
                Some(e) => {
                    warn!(error = %e, duration_ms = result.duration_ms, "probe could not observe")
                }
                None => debug!(duration_ms = result.duration_ms, "probe observed"),
            }
            self.sink.deliver(&result).await;
            if let Some(path) = &self.stamp
                && let Err(e) = write_stamp(path, SystemTime::now())
            {
                warn!(path = %path.display(), error = %e, "cannot record the time of this run; a restart will run it again");
            }
            self.running.store(false, Ordering::SeqCst);
            self.wait(self.interval.mul_f64(0.95 + 0.1 * fastrand::f64()))
                .await;
        }
    }

    /// Sleep `d`, or less when asked to run this probe now (see [`Trigger`]).
    async fn wait(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
        }
    }
}

/// The stamp file of `check` in `dir`: not a `.pb` or `.tmp` name, so the spool ignores it.
fn stamp_path(dir: &Path, check: &str) -> PathBuf {
    dir.join(format!("last-run.{check}"))
}

fn read_stamp(path: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn write_stamp(path: &Path, at: SystemTime) -> std::io::Result<()> {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{secs}\n"))?;
    std::fs::rename(&tmp, path)
}

/// How long to wait before the first run: the rest of the interval since `last`; nothing
/// without a stamp, or when the stamp is in the future (a clock set back must not postpone
/// the check by more than an interval).
fn first_delay(last: Option<SystemTime>, now: SystemTime, interval: Duration) -> Duration {
    match last.map(|l| now.duration_since(l)) {
        Some(Ok(since)) => interval.saturating_sub(since),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// Whether the task's wait would end now (the permit is used up).
    fn woken(wake: &Notify) -> bool {
        wake.notified().now_or_never().is_some()
    }

    #[test]
    fn a_forced_run_is_allowed_once_per_gap_per_probe() {
        let trigger = Trigger::default();
        let (wake, _) = trigger.register("backup.daily");
        let (other, _) = trigger.register("disk.data");
        let t0 = Instant::now();
        assert_eq!(trigger.run_now_at("backup.daily", t0), Ok(()));
        assert!(woken(&wake) && !woken(&other));
        let err = trigger
            .run_now_at("backup.daily", t0 + Duration::from_secs(3))
            .unwrap_err();
        assert_eq!(
            err,
            "rate limited: backup.daily was forced 3s ago (at most one forced run per 10s)"
        );
        assert!(!woken(&wake));
        // Another probe has its own allowance.
        assert_eq!(trigger.run_now_at("disk.data", t0), Ok(()));
        assert_eq!(
            trigger.run_now_at("backup.daily", t0 + MIN_FORCED_GAP),
            Ok(())
        );
        assert!(woken(&wake));
    }

    #[test]
    fn a_running_probe_is_not_forced_again() {
        let trigger = Trigger::default();
        let (wake, running) = trigger.register("restore.base");
        running.store(true, Ordering::SeqCst);
        assert_eq!(
            trigger.run_now_at("restore.base", Instant::now()),
            Err("rate limited: restore.base is running".to_string())
        );
        assert!(!woken(&wake));
        running.store(false, Ordering::SeqCst);
        assert_eq!(trigger.run_now_at("restore.base", Instant::now()), Ok(()));
    }

    #[test]
    fn run_all_starts_what_may_run_and_names_the_rest() {
        let trigger = Trigger::default();
        let (a, _) = trigger.register("backup.a");
        let (b, _) = trigger.register("backup.b");
        let t0 = Instant::now();
        assert_eq!(trigger.run_now_at("backup.a", t0), Ok(()));
        assert!(woken(&a));
        let err = trigger
            .run_now_at("", t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(
            err,
            "rate limited: backup.a was forced 1s ago (at most one forced run per 10s); the other 1 run now"
        );
        assert!(!woken(&a) && woken(&b));
        assert!(
            trigger
                .run_now_at("", t0 + Duration::from_secs(2))
                .unwrap_err()
                .starts_with("rate limited: backup.a was forced 2s ago")
        );
        assert_eq!(
            trigger.run_now_at("wal.main", t0),
            Err("no probe wal.main on this agent".to_string())
        );
    }

    #[test]
    fn a_resumed_schedule_waits_for_the_rest_of_its_interval() {
        let week = Duration::from_secs(7 * 86_400);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(first_delay(None, now, week), Duration::ZERO);
        assert_eq!(first_delay(Some(now - 2 * day), now, week), 5 * day);
        assert_eq!(first_delay(Some(now - 8 * day), now, week), Duration::ZERO);
        assert_eq!(first_delay(Some(now + day), now, week), Duration::ZERO);
    }

    #[test]
    fn stamps_round_trip_and_bad_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = stamp_path(dir.path(), "restore.base");
        assert_eq!(read_stamp(&path), None);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        write_stamp(&path, at).unwrap();
        assert_eq!(read_stamp(&path), Some(at));
        std::fs::write(&path, "yesterday").unwrap();
        assert_eq!(read_stamp(&path), None);
        assert!(!path.to_string_lossy().ends_with(".pb"));
    }
}
