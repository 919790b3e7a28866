//! The spool's own thread: every spool operation (a probe's result, the link's reads and
//! acknowledgements) runs there, in order, never on tokio's blocking pool, which probes stuck
//! on a dead mount could exhaust, and which the runtime waits for at shutdown.

use super::Spool;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use tracing::error;

type Job = Box<dyn FnOnce(&mut Spool) + Send>;

#[derive(Clone)]
pub struct SpoolThread {
    jobs: mpsc::Sender<Job>,
}

impl SpoolThread {
    /// Move `spool` onto its thread; the thread ends when the last handle is dropped.
    pub fn start(mut spool: Spool) -> std::io::Result<SpoolThread> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || {
                for job in rx {
                    // A panicking job must not take the spool with it for every later result.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut spool))).is_err() {
                        error!("a spool operation panicked");
                    }
                }
            })?;
        Ok(SpoolThread { jobs })
    }

    /// Run `f` on the spool's thread and wait for its answer; `None` when it panicked.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .ok()?;
        rx.await.ok()
    }
}
