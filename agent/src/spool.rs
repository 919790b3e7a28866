//! The agent's on-disk spool: every result goes here first and leaves only when the collector
//! acknowledged it as durably stored.
//!
//! Invariants:
//! - one file per result, `<seq>.pb` (20-digit sequence, so names sort in measurement order),
//!   holding the encoded wire `ProbeResult`; written to a temporary name, fsynced, renamed and
//!   the directory fsynced — a result is either wholly in the spool or not at all, and an agent
//!   killed with SIGKILL loses nothing it had spooled;
//! - bounded by count (`max_results`) and age (`max_age`): when over, the oldest are dropped
//!   first and every drop is counted (reported to the collector in Hello and logged);
//! - deleted only on acknowledgement; replayed oldest first after every reconnect (the
//!   collector stores idempotently by result id, so a replay after a lost ack is harmless);
//! - a write that fails (disk full, I/O error) leaves no file behind (a 0-byte `.tmp` would
//!   keep a full disk full); the result is held in memory instead, at most [`MAX_HELD`] of them
//!   (the oldest dropped and counted beyond), sent like the others, and written to disk as
//!   soon as a write succeeds again. Held results do not survive a restart: they are "not
//!   spooled", and the failure itself is reported (see [`Spool::failure`]).

pub mod check;
pub mod thread;

use backwatch_proto::wire::{Message, ProbeResult};
use chrono::Utc;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{error, info, warn};

/// Results held in memory while the spool cannot write, at most.
pub const MAX_HELD: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Entry {
    result_id: String,
    measured_at_secs: i64,
    /// The result itself while it could not be written to disk.
    held: Option<ProbeResult>,
}

/// What became of a pushed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// On disk, fsynced.
    Spooled,
    /// In memory only: the spool cannot write.
    Held,
}

/// Why the spool cannot write, since when, and what it cost so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub since: chrono::DateTime<Utc>,
    pub error: String,
}

pub struct Spool {
    dir: PathBuf,
    max_results: u64,
    max_age: Duration,
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    /// Results dropped because the spool was full or too old, or because too many were held
    /// in memory while it could not write, since this process started.
    pub dropped: u64,
    /// Entries whose result is held in memory.
    held: usize,
    failure: Option<Failure>,
}

impl Spool {
    /// Open (creating) the spool directory and index what is already in it.
    pub fn open(dir: &Path, max_results: u64, max_age: Duration) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut entries = BTreeMap::new();
        for item in fs::read_dir(dir).map_err(io(dir))? {
            let item = item.map_err(io(dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write that never reached its rename: not acknowledged to anyone, discard.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name.strip_suffix(".pb").and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            match fs::read(&path)
                .ok()
                .and_then(|b| ProbeResult::decode(b.as_slice()).ok())
            {
                Some(r) => {
                    let measured_at_secs = r.measured_at.as_ref().map_or(0, |t| t.seconds);
                    entries.insert(
                        seq,
                        Entry {
                            result_id: r.result_id,
                            measured_at_secs,
                            held: None,
                        },
                    );
                }
                None => {
                    warn!(path = %path.display(), "unreadable spool file set aside");
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        let next_seq = entries.keys().next_back().map_or(1, |s| s + 1);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_results,
            max_age,
            next_seq,
            entries,
            dropped: 0,
            held: 0,
            failure: None,
        };
        spool.enforce_bounds();
        Ok(spool)
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.pb"))
    }

    /// Persist a result, or hold it in memory when the spool cannot write. Returns its
    /// sequence number and where it went.
    pub fn push(&mut self, result: &ProbeResult) -> (u64, Stored) {
        self.write_held();
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut entry = Entry {
            result_id: result.result_id.clone(),
            measured_at_secs: result.measured_at.as_ref().map_or(0, |t| t.seconds),
            held: None,
        };
        // Behind held results a new one waits its turn: written in sequence order or not at all.
        let written = if self.held > 0 {
            Err(None)
        } else {
            self.write(seq, result).map_err(Some)
        };
        let stored = match written {
            Ok(()) => {
                self.recovered();
                Stored::Spooled
            }
            Err(e) => {
                if let Some(e) = e {
                    self.failed(e);
                }
                entry.held = Some(result.clone());
                self.held += 1;
                Stored::Held
            }
        };
        self.entries.insert(seq, entry);
        self.enforce_bounds();
        (seq, stored)
    }

    /// Write one result to its file; on any error nothing of it is left on disk.
    fn write(&self, seq: u64, result: &ProbeResult) -> Result<(), SpoolError> {
        let path = self.path_of(seq);
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&result.encode_to_vec()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&path))?;
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&path);
        }
        written
    }

    /// Write held results to disk, oldest first, until one fails.
    fn write_held(&mut self) {
        if self.held == 0 {
            return;
        }
        let held: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.held.is_some())
            .map(|(&s, _)| s)
            .collect();
        for seq in held {
            let Some(result) = self.entries.get(&seq).and_then(|e| e.held.clone()) else {
                continue;
            };
            if let Err(e) = self.write(seq, &result) {
                self.failed(e);
                return;
            }
            if let Some(e) = self.entries.get_mut(&seq) {
                e.held = None;
                self.held -= 1;
            }
        }
        self.recovered();
    }

    fn failed(&mut self, e: SpoolError) {
        if self.failure.is_none() {
            error!(error = %e, max_held = MAX_HELD, "the spool cannot write; holding results in memory");
            self.failure = Some(Failure {
                since: Utc::now(),
                error: e.to_string(),
            });
        }
    }

    fn recovered(&mut self) {
        if self.held == 0
            && let Some(f) = self.failure.take()
        {
            info!(since = %f.since.to_rfc3339(), "the spool writes again; held results are on disk");
        }
    }

    /// Why the spool cannot write, when it cannot.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Results held in memory because the spool could not write them.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn enforce_bounds(&mut self) {
        let oldest_allowed = Utc::now().timestamp() - self.max_age.as_secs() as i64;
        while let Some((&seq, e)) = self.entries.iter().next() {
            let over_count = self.entries.len() as u64 > self.max_results;
            if !over_count && e.measured_at_secs >= oldest_allowed {
                break;
            }
            warn!(result_id = %e.result_id, reason = if over_count { "spool full" } else { "too old" }, "dropping spooled result");
            self.remove_seq(seq);
            self.dropped += 1;
        }
        while self.held > MAX_HELD {
            let Some((&seq, e)) = self.entries.iter().find(|(_, e)| e.held.is_some()) else {
                break;
            };
            warn!(result_id = %e.result_id, reason = "too many held in memory", "dropping a result the spool could not write");
            self.remove_seq(seq);
            self.dropped += 1;
        }
    }

    fn remove_seq(&mut self, seq: u64) {
        match self.entries.remove(&seq) {
            Some(Entry { held: Some(_), .. }) => self.held -= 1,
            _ => {
                let _ = fs::remove_file(self.path_of(seq));
            }
        }
        // When nothing is held any more (acknowledged or dropped), the failure ends with the
        // next successful write, not here: the disk may still be full.
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Results still waiting with a sequence number up to `seq`: what was sent and is not
    /// acknowledged yet. Derived from the spool itself, so results dropped by the bounds while
    /// in flight cannot leave a phantom count behind.
    pub fn count_through(&self, seq: u64) -> usize {
        self.entries.range(..=seq).count()
    }

    /// Up to `max` results with sequence numbers above `after`, oldest first, together at
    /// most `max_bytes` encoded (as they travel in a batch): a batch must stay under the
    /// collector's message limit whatever the results hold. The first result is always
    /// taken; one that alone is over `max_bytes` is sent as an error result saying so (see
    /// [`too_large`]), so it can never block the spool behind it.
    pub fn read_after(&self, after: u64, max: usize, max_bytes: usize) -> Vec<(u64, ProbeResult)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (&seq, e) in self.entries.range(after + 1..) {
            if out.len() >= max {
                break;
            }
            let result = match &e.held {
                Some(r) => r.clone(),
                None => {
                    let Ok(raw) = fs::read(self.path_of(seq)) else {
                        continue;
                    };
                    let Ok(r) = ProbeResult::decode(raw.as_slice()) else {
                        continue;
                    };
                    r
                }
            };
            let mut size = batch_bytes(&result);
            let result = if size > max_bytes {
                let r = too_large(result, size, max_bytes);
                size = batch_bytes(&r);
                r
            } else {
                result
            };
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push((seq, result));
        }
        out
    }

    /// Delete acknowledged results. Unknown ids are ignored (already dropped or acked).
    pub fn ack<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> usize {
        let ids: std::collections::HashSet<&str> = ids.into_iter().collect();
        let seqs: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| ids.contains(e.result_id.as_str()))
            .map(|(&s, _)| s)
            .collect();
        for s in &seqs {
            self.remove_seq(*s);
        }
        seqs.len()
    }
}

/// What `result` adds to an encoded `ResultBatch`: its bytes, its field key and length.
fn batch_bytes(result: &ProbeResult) -> usize {
    let len = result.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// Most bytes of a probe's error text kept in the error result that replaces a result too
/// large to send (the text may be what made it large).
const TOO_LARGE_ERROR_KEEP: usize = 1024;

/// The error result sent in place of `result`, which alone is over a batch's byte budget:
/// same id, check and time, no observation, and an error naming the sizes. An error result
/// (rather than a silent drop) shows the operator the failing check and why, and the id
/// still acknowledges and deletes the spooled original.
fn too_large(result: ProbeResult, size: usize, max_bytes: usize) -> ProbeResult {
    warn!(result_id = %result.result_id, name = %result.name, bytes = size, limit = max_bytes,
        "result too large to send; sending an error result in its place");
    let mut probe_error = result.error;
    if probe_error.len() > TOO_LARGE_ERROR_KEEP {
        let mut cut = TOO_LARGE_ERROR_KEEP;
        while !probe_error.is_char_boundary(cut) {
            cut -= 1;
        }
        probe_error.truncate(cut);
        probe_error.push('…');
    }
    let mut error = format!(
        "result too large to send: {size} bytes encoded, over the agent's limit of {max_bytes} per batch"
    );
    if !probe_error.is_empty() {
        error.push_str("; probe error: ");
        error.push_str(&probe_error);
    }
    ProbeResult {
        error,
        observation: None,
        ..result
    }
}

#[cfg(test)]
mod tests;
