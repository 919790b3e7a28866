//! File-system calls of probes, on threads the agent can walk away from.
//!
//! A `statvfs` or `readdir` on a dead NFS or FUSE mount blocks in the kernel and cannot be
//! cancelled. Invariants:
//! - Such a call runs on its own detached thread, never on tokio's blocking pool: the runtime
//!   waits for that pool at shutdown, so one stuck call would keep a SIGTERMed agent alive
//!   forever, and stuck calls would take the pool's threads from the spool and the link.
//! - Each probe's runs carry a [`Gate`]; while a call of its previous run is still inside the
//!   kernel the gate says since when, and the scheduler does not start the probe again
//!   (at most one stuck thread per probe, none leaked per timed-out run).
//! - At most [`MAX_THREADS`] such threads exist at once, whatever happens.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Probe threads alive at once, at most (a few probes per host; this is a safety net).
pub const MAX_THREADS: usize = 64;

static LIVE: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    /// The gate of the probe run this task belongs to.
    static GATE: Gate;
}

/// One probe's record of a blocking call in progress.
#[derive(Clone, Default)]
pub struct Gate(Arc<Mutex<Option<DateTime<Utc>>>>);

impl Gate {
    /// When the call still inside the kernel started, if one is.
    pub fn busy_since(&self) -> Option<DateTime<Utc>> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `fut` (a probe's observation) with this gate, so its [`run`] calls mark it.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        GATE.scope(self.clone(), fut).await
    }

    fn enter(&self) -> Busy {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Utc::now());
        Busy(self.clone())
    }
}

/// Clears the gate when the call returns (dropped on its thread).
struct Busy(Gate);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Counts a live thread until dropped.
struct Live;

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Run `f` on a detached thread and wait for it. Dropping the returned future (a probe's
/// timeout) leaves the thread to finish, or to stay stuck, on its own; its probe's gate shows it.
pub async fn run<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if LIVE.fetch_add(1, Ordering::SeqCst) >= MAX_THREADS {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        return Err(format!(
            "{what}: {MAX_THREADS} probe threads are already blocked; not starting another"
        ));
    }
    let live = Live;
    let busy = GATE.try_with(Gate::enter).ok();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("probe-io".into())
        .spawn(move || {
            let value = f();
            // Clear the gate before answering: the scheduler looks at it right after.
            drop((busy, live));
            let _ = tx.send(value);
        });
    if let Err(e) = spawned {
        // The closure, and with it the guards, was dropped: the count and gate are clear.
        return Err(format!("{what}: cannot start a thread: {e}"));
    }
    rx.await.map_err(|_| format!("{what}: panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_call_outliving_its_timeout_keeps_the_gate_busy_until_it_returns() {
        let gate = Gate::default();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let call = gate.scope(run("test", move || wait.recv().is_ok()));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call)
                .await
                .is_err()
        );
        assert!(gate.busy_since().is_some(), "the stuck call must show");
        release.send(()).unwrap();
        for _ in 0..100 {
            if gate.busy_since().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the gate stayed busy after the call returned");
    }

    #[tokio::test]
    async fn a_finished_call_returns_its_value_and_clears_the_gate() {
        let gate = Gate::default();
        assert_eq!(gate.scope(run("test", || 7)).await, Ok(7));
        assert_eq!(gate.busy_since(), None);
    }
}
