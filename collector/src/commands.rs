//! Asking a connected agent to run a probe now (`RunProbeNow`), from the HTTP API.
//!
//! Every agent stream registers here for its lifetime; the API hands a request to the host's
//! streams on this collector, and each stream sends it down its own gRPC response with its
//! own sequence numbers. A host connected to another collector (several collectors on one
//! PostgreSQL) is not reachable from this one: the API says so rather than pretend.
//!
//! Bounded: one small queue per stream; a full queue (an agent not reading) refuses the request
//! instead of waiting. The agent decides whether to run (it refuses a probe already running,
//! or asked again within seconds) and answers with a `CommandReply`, which goes back to the
//! request's asker (the API answers with it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting per stream.
const QUEUE: usize = 4;

/// A stream on this collector: its registration id, its request queue, and the checks its
/// agent announced at hello (so a check that has not reported yet, such as a drill due next
/// week, can already be run on demand).
struct Stream {
    id: u64,
    tx: mpsc::Sender<Request>,
    checks: Vec<String>,
}

/// Run `check` now; the agent's answer goes to `reply`: empty when it runs the probe, else
/// why not. Dropped unanswered when the stream ends first.
pub struct Request {
    pub check: String,
    pub reply: oneshot::Sender<String>,
}

/// Most requests a stream waits answers for; beyond, the oldest asker hears nothing.
const PENDING: usize = 16;

/// Host → its streams on this collector.
type Streams = HashMap<String, Vec<Stream>>;

#[derive(Default, Clone)]
pub struct Commands(Arc<Mutex<Streams>>);

/// A stream's registration: requests for its host arrive on `rx`; dropping it unregisters.
pub struct Registration {
    commands: Commands,
    host: String,
    id: u64,
    pub rx: mpsc::Receiver<Request>,
    /// Command ids sent to the agent and who waits for their answers.
    pending: Vec<(String, oneshot::Sender<String>)>,
}

/// What became of a request.
#[derive(Debug)]
pub enum Asked {
    /// Handed to the host's streams (usually one); each answers on its receiver.
    Sent(Vec<oneshot::Receiver<String>>),
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
            pending: Vec::new(),
        }
    }

    /// Ask `host`'s streams to run `check` now.
    pub fn run_now(&self, host: &str, check: &str) -> Asked {
        let map = self.lock();
        let Some(streams) = map.get(host).filter(|s| !s.is_empty()) else {
            return Asked::NotConnected;
        };
        let answers: Vec<_> = streams
            .iter()
            .filter_map(|s| {
                let (reply, answer) = oneshot::channel();
                let check = check.to_string();
                s.tx.try_send(Request { check, reply })
                    .ok()
                    .map(|()| answer)
            })
            .collect();
        if answers.is_empty() {
            Asked::Busy
        } else {
            Asked::Sent(answers)
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
    /// `command_id` went to the agent for `reply`'s asker.
    pub fn sent(&mut self, command_id: String, reply: oneshot::Sender<String>) {
        if self.pending.len() >= PENDING {
            self.pending.remove(0);
        }
        self.pending.push((command_id, reply));
    }

    /// Whether this stream's agent configures `check`, as its hello listed them; `true` when
    /// it listed none (an older agent that does not say).
    pub fn configures(&self, check: &str) -> bool {
        let map = self.commands.lock();
        map.get(&self.host)
            .and_then(|s| s.iter().find(|s| s.id == self.id))
            .is_none_or(|s| s.checks.is_empty() || s.checks.iter().any(|c| c == check))
    }

    /// The agent answered `command_id` (`error` empty: it runs the probe).
    pub fn answered(&mut self, command_id: &str, error: &str) {
        if let Some(i) = self.pending.iter().position(|(id, _)| id == command_id) {
            let (_, reply) = self.pending.swap_remove(i);
            let _ = reply.send(error.to_string());
        }
    }

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
        assert!(matches!(
            c.run_now("db1", "drill.main"),
            Asked::NotConnected
        ));
        let mut r = c.register("db1");
        let Asked::Sent(answers) = c.run_now("db1", "drill.main") else {
            panic!("not sent");
        };
        assert_eq!(answers.len(), 1);
        let request = r.rx.try_recv().expect("queued");
        assert_eq!(request.check, "drill.main");
        assert!(!c.announced("db1", "drill.main"));
        r.announce(&["wal.main".into(), "drill.main".into()]);
        assert!(c.announced("db1", "drill.main"));
        assert!(!c.announced("db2", "drill.main"));
        for _ in 0..QUEUE {
            let _ = c.run_now("db1", "drill.main");
        }
        assert!(matches!(c.run_now("db1", "drill.main"), Asked::Busy));
        drop(r);
        assert!(matches!(
            c.run_now("db1", "drill.main"),
            Asked::NotConnected
        ));
        assert!(!c.announced("db1", "drill.main"));
    }

    #[test]
    fn the_agents_answer_reaches_the_asker() {
        let c = Commands::default();
        let mut r = c.register("db1");
        let Asked::Sent(mut answers) = c.run_now("db1", "disk.a") else {
            panic!("not sent");
        };
        let request = r.rx.try_recv().expect("queued");
        r.sent("run-now-7".into(), request.reply);
        r.answered("run-now-6", "not this one");
        r.answered("run-now-7", "rate limited");
        let mut answer = answers.pop().expect("one");
        assert_eq!(answer.try_recv().as_deref(), Ok("rate limited"));
    }
}
