//! Group commit: the writes of many agent streams in one transaction.
//!
//! Every acknowledged result must be durable, and a durable commit costs a disk flush. One
//! transaction per agent batch (plus one per ping) caps ingest at the flush rate of the disk,
//! a few hundred per second, whatever the fleet. Here each stream hands its write to a
//! writer task and waits; a writer takes every write queued meanwhile (up to a bound) and
//! stores them together, so the cost per flush is shared by all the agents that spoke during
//! the previous one. Under light load a group is one write and nothing waits longer than
//! before; under heavy load groups grow and throughput follows.
//!
//! Invariants:
//! - a stream hears back only after the transaction holding its write committed (so its ack
//!   still means durable), or with the error that stopped it;
//! - a group that fails is retried write by write, so one bad write (a row the database
//!   refuses) fails only its own stream, never its neighbours';
//! - writes are sorted by host before a group is stored, so concurrent groups (several
//!   writers, several collectors) take row locks in one order and do not deadlock;
//! - at most [`MAX_RESULTS_IN_FLIGHT`] results are admitted ([`GroupWriter::admit`]) at
//!   once, from judging to commit, across all streams;
//! - at most [`MAX_ENCODED_BYTES_IN_FLIGHT`] bytes of agent messages are decoded at once
//!   ([`GroupWriter::admit_bytes`], taken before decoding), from decoding to commit.

use crate::store::{Evaluated, HostWrite, HostWritten, Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::warn;

/// Most results in one group: bounds the transaction (and the wait of its first write).
const MAX_GROUP_RESULTS: usize = 2000;
/// Most writes in one group.
const MAX_GROUP_WRITES: usize = 512;
/// Most results judged or being written at once, over all streams. When the whole fleet
/// drains its spools after an outage (10,000 agents with 50 results each in flight), every
/// decoded, judged batch waited in memory for its group: 2.2 GiB. Past this bound a stream
/// waits before judging its batch and stops reading meanwhile, so HTTP/2 flow control holds
/// its agent back, and the agent keeps the results in its spool. Ten groups' worth keeps the
/// writers busy.
pub const MAX_RESULTS_IN_FLIGHT: usize = 10 * MAX_GROUP_RESULTS;
/// Most bytes of agent messages, counted encoded, decoded at once over all streams. A decoded
/// batch is ten to forty times its encoded size and tonic used to decode every stream's next
/// message before admission: with the whole fleet draining at once that was one decoded batch
/// per agent (1.5 GiB for 10,000). Past this bound a stream waits holding its message still
/// encoded. 2 MiB is about 27,000 small results, more than [`MAX_RESULTS_IN_FLIGHT`], so the
/// writers stay busy (an 8 MiB bound peaked 80 MiB higher and drained no faster); a message
/// larger than the bound (the limit is 4 MiB) waits for all of it and gets in alone.
pub const MAX_ENCODED_BYTES_IN_FLIGHT: usize = 2 << 20;

struct Job {
    host: String,
    items: Vec<Evaluated>,
    contact: DateTime<Utc>,
    reply: oneshot::Sender<StoreResult<HostWritten>>,
}

/// Hands writes to the writer tasks; cheap to clone, one per stream.
#[derive(Clone)]
pub struct GroupWriter {
    tx: mpsc::Sender<Job>,
    admitted: Arc<Semaphore>,
    /// Encoded bytes of the messages being decoded or handled.
    decoding: Arc<Semaphore>,
}

impl GroupWriter {
    /// Start `writers` writer tasks over `store`: one for SQLite (a single-writer database),
    /// a few for PostgreSQL, whose own group commit then merges their flushes.
    pub fn start(store: Arc<dyn Store>, writers: usize) -> GroupWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP_WRITES);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(store.clone(), rx.clone()));
        }
        GroupWriter {
            tx,
            admitted: Arc::new(Semaphore::new(MAX_RESULTS_IN_FLIGHT)),
            decoding: Arc::new(Semaphore::new(MAX_ENCODED_BYTES_IN_FLIGHT)),
        }
    }

    /// Wait until a message of `bytes` encoded may be decoded; it may until the permit drops
    /// (once the message is handled). Taken before [`GroupWriter::admit`], never while
    /// holding it, so the two cannot wait on each other.
    pub async fn admit_bytes(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes.clamp(1, MAX_ENCODED_BYTES_IN_FLIGHT);
        self.decoding
            .clone()
            .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .await
            .expect("the semaphore is never closed")
    }

    /// Wait until `results` more results may be in flight; they are until the permit drops
    /// (after their write answered). A batch larger than the whole bound waits for all of it.
    pub async fn admit(&self, results: usize) -> OwnedSemaphorePermit {
        let n = results.clamp(1, MAX_RESULTS_IN_FLIGHT);
        self.admitted
            .clone()
            .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
            .await
            .expect("the semaphore is never closed")
    }

    /// Store `items` of `host` and its contact at `contact`; returns once committed.
    pub async fn write(
        &self,
        host: &str,
        items: Vec<Evaluated>,
        contact: DateTime<Utc>,
    ) -> StoreResult<HostWritten> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            host: host.to_string(),
            items,
            contact,
            reply,
        };
        if self.tx.send(job).await.is_err() {
            return Err(gone());
        }
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

fn gone() -> StoreError {
    StoreError::Corrupt {
        what: "group commit",
        problem: "the writer task stopped".into(),
    }
}

async fn run(store: Arc<dyn Store>, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut results = first.items.len();
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP_WRITES && results < MAX_GROUP_RESULTS {
                match rx.try_recv() {
                    Ok(job) => {
                        results += job.items.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        jobs.sort_by(|a, b| a.host.cmp(&b.host));
        store_group(store.as_ref(), jobs).await;
    }
}

async fn store_group(store: &dyn Store, jobs: Vec<Job>) {
    let writes: Vec<HostWrite<'_>> = jobs.iter().map(write_of).collect();
    match store.record_group(&writes).await {
        Ok(written) => {
            for (job, w) in jobs.into_iter().zip(written) {
                let _ = job.reply.send(Ok(w));
            }
        }
        Err(e) if jobs.len() > 1 => {
            warn!(error = %e, writes = jobs.len(), "group commit failed; storing its writes one by one");
            for job in jobs {
                let result = store
                    .record_group(&[write_of(&job)])
                    .await
                    .map(|mut w| w.remove(0));
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
    }
}

fn write_of(job: &Job) -> HostWrite<'_> {
    HostWrite {
        host: &job.host,
        items: &job.items,
        contact: job.contact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use crate::store::SqlStore;
    use crate::store::suite::{at, evaluated, probe_result, unique_host};
    use backwatch_proto::model::ProbeKind;

    #[tokio::test]
    async fn results_past_the_in_flight_bound_wait_until_earlier_ones_are_written() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open("sqlite::memory:").await.unwrap());
        let writer = GroupWriter::start(store, 1);
        let most = writer.admit(MAX_RESULTS_IN_FLIGHT - 10).await;
        let ten = writer.admit(10).await;
        let next = tokio::spawn({
            let writer = writer.clone();
            async move { writer.admit(1).await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!next.is_finished(), "admitted past the bound");
        drop(ten);
        drop(next.await.unwrap());
        // A batch larger than the bound waits for all of it, and is then admitted.
        drop(most);
        let _all = writer.admit(MAX_RESULTS_IN_FLIGHT + 1).await;
    }

    #[tokio::test]
    async fn messages_past_the_encoded_bound_wait_before_decoding() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open("sqlite::memory:").await.unwrap());
        let writer = GroupWriter::start(store, 1);
        // 10,000 streams each with a 7 KiB batch (100 small results) at once: only what fits
        // the bound is let through to decode, the rest wait encoded.
        let mut waiting = Vec::new();
        let mut admitted = Vec::new();
        for _ in 0..10_000 {
            let w = writer.clone();
            waiting.push(tokio::spawn(async move { w.admit_bytes(7 << 10).await }));
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let mut rest = Vec::new();
        for t in waiting {
            if t.is_finished() {
                admitted.push(t.await.unwrap());
            } else {
                rest.push(t);
            }
        }
        assert_eq!(admitted.len(), MAX_ENCODED_BYTES_IN_FLIGHT / (7 << 10));
        // Each handled message lets the next in; a message larger than the bound gets in alone.
        drop(admitted);
        for t in rest {
            drop(t.await.unwrap());
        }
        let _all = writer.admit_bytes(MAX_ENCODED_BYTES_IN_FLIGHT + 1).await;
    }

    #[tokio::test]
    async fn concurrent_streams_are_stored_and_each_hears_its_own_answer() {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open("sqlite::memory:").await.unwrap());
        let writer = GroupWriter::start(store.clone(), 1);
        let hosts: Vec<String> = (0..50).map(|i| unique_host(&format!("g{i}"))).collect();
        let mut tasks = Vec::new();
        for h in &hosts {
            let (w, h) = (writer.clone(), h.clone());
            tasks.push(tokio::spawn(async move {
                let r = probe_result(&h, 1, ProbeKind::Disk, "root", 10);
                let item = evaluated(r, Status::Ok, "fine");
                w.write(&h, vec![item.clone(), item], at(11)).await
            }));
        }
        for t in tasks {
            let w = t.await.unwrap().unwrap();
            assert_eq!(
                w.inserted,
                [
                    crate::store::Inserted::New,
                    crate::store::Inserted::Duplicate
                ]
            );
        }
        for h in &hosts {
            assert_eq!(store.history(h, None, at(0), 10).await.unwrap().len(), 1);
            let contact = store.host(h).await.unwrap().map(|x| x.last_contact);
            assert_eq!(contact, Some(at(11)));
        }
    }
}
