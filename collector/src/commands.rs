//! Asking a connected agent to run a probe now (`RunProbeNow`), from the HTTP API.
//!
//! Every agent stream registers here for its lifetime; the API hands a request to the host's
//! streams on this collector, and each stream sends it down its own gRPC response with its
//! own sequence numbers. A host connected to another collector (several collectors on one
//! PostgreSQL) is not reachable from this one: the API says so rather than pretend.
//!
//! Bounded: one small queue per stream; a full queue (an agent not reading) refuses the request
//! instead of waiting. The agent decides whether to run (it refuses a probe already running,
//! or asked again within seconds) and answers with a `CommandReply`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Requests waiting per stream.
const QUEUE: usize = 4;

/// A stream on this collector: its registration id, its request queue, and the checks its
/// agent announced at hello (so a check that has not reported yet, such as a drill due next
/// week, can already be run on demand).
struct Stream {
    id: u64,
    tx: mpsc::Sender<String>,
    checks: Vec<String>,
}

/// Host → its streams on this collector.
type Streams = HashMap<String, Vec<Stream>>;

#[derive(Default, Clone)]
pub struct Commands(Arc<Mutex<Streams>>);

/// A stream's registration: requests for its host arrive on `rx`; dropping it unregisters.
pub struct Registration {
    commands: Commands,
    host: String,
    id: u64,
    pub rx: mpsc::Receiver<String>,
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// Handed to this many of the host's streams.
    Sent(usize),
    /// The host has no stream to this collector.
    NotConnected,
    /// Its streams' queues are full.
    Busy,
}

impl Commands {
    pub fn register(&self, host: &str) -> Registration {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock()
            .entry(host.to_string())
            .or_default()
            .push(Stream {
                id,
                tx,
                checks: Vec::new(),
            });
        Registration {
            commands: self.clone(),
            host: host.to_string(),
            id,
            rx,
        }
    }

    /// Ask `host`'s streams to run `check` now.
    pub fn run_now(&self, host: &str, check: &str) -> Asked {
        let map = self.lock();
        let Some(streams) = map.get(host).filter(|s| !s.is_empty()) else {
            return Asked::NotConnected;
        };
        let sent = streams
            .iter()
            .filter(|s| s.tx.try_send(check.to_string()).is_ok())
            .count();
        if sent == 0 {
            Asked::Busy
        } else {
            Asked::Sent(sent)
        }
    }

    /// Whether a stream of `host` on this collector announced `check` at its hello.
    pub fn announced(&self, host: &str, check: &str) -> bool {
        self.lock()
            .get(host)
            .is_some_and(|s| s.iter().any(|s| s.checks.iter().any(|c| c == check)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registration {
    /// The checks the agent configured, as its hello listed them.
    pub fn announce(&self, checks: &[String]) {
        let mut map = self.commands.lock();
        if let Some(s) = map
            .get_mut(&self.host)
            .and_then(|s| s.iter_mut().find(|s| s.id == self.id))
        {
            s.checks = checks.to_vec();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.commands.lock();
        if let Some(streams) = map.get_mut(&self.host) {
            streams.retain(|s| s.id != self.id);
            if streams.is_empty() {
                map.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_the_hosts_streams_and_ends_with_them() {
        let c = Commands::default();
        assert_eq!(c.run_now("db1", "drill.main"), Asked::NotConnected);
        let mut r = c.register("db1");
        assert_eq!(c.run_now("db1", "drill.main"), Asked::Sent(1));
        assert_eq!(r.rx.try_recv().ok().as_deref(), Some("drill.main"));
        assert!(!c.announced("db1", "drill.main"));
        r.announce(&["wal.main".into(), "drill.main".into()]);
        assert!(c.announced("db1", "drill.main"));
        assert!(!c.announced("db2", "drill.main"));
        for _ in 0..QUEUE {
            c.run_now("db1", "drill.main");
        }
        assert_eq!(c.run_now("db1", "drill.main"), Asked::Busy);
        drop(r);
        assert_eq!(c.run_now("db1", "drill.main"), Asked::NotConnected);
        assert!(!c.announced("db1", "drill.main"));
    }
}
