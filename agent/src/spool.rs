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
//!   collector stores idempotently by result id, so a replay after a lost ack is harmless).

use backwatch_proto::wire::{Message, ProbeResult};
use chrono::Utc;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::warn;

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
}

pub struct Spool {
    dir: PathBuf,
    max_results: u64,
    max_age: Duration,
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    /// Results dropped because the spool was full or too old, since this process started.
    pub dropped: u64,
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
        };
        spool.enforce_bounds();
        Ok(spool)
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.pb"))
    }

    /// Persist a result. Returns its spool sequence number.
    pub fn push(&mut self, result: &ProbeResult) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.path_of(seq);
        let tmp = path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&result.encode_to_vec()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.entries.insert(
            seq,
            Entry {
                result_id: result.result_id.clone(),
                measured_at_secs: result.measured_at.as_ref().map_or(0, |t| t.seconds),
            },
        );
        self.enforce_bounds();
        Ok(seq)
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
    }

    fn remove_seq(&mut self, seq: u64) {
        self.entries.remove(&seq);
        let _ = fs::remove_file(self.path_of(seq));
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

    /// Up to `max` results with sequence numbers above `after`, oldest first.
    pub fn read_after(&self, after: u64, max: usize) -> Vec<(u64, ProbeResult)> {
        self.entries
            .range(after + 1..)
            .take(max)
            .filter_map(|(&seq, _)| {
                let bytes = fs::read(self.path_of(seq)).ok()?;
                ProbeResult::decode(bytes.as_slice()).ok().map(|r| (seq, r))
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use backwatch_proto::convert::to_ts;

    fn result(id: &str) -> ProbeResult {
        ProbeResult {
            result_id: id.into(),
            name: "daily".into(),
            measured_at: Some(to_ts(Utc::now())),
            error: "x".into(),
            ..Default::default()
        }
    }

    const WEEK: Duration = Duration::from_secs(7 * 86400);

    #[test]
    fn results_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
        for id in ["a", "b", "c"] {
            s.push(&result(id)).unwrap();
        }
        drop(s);
        let s = Spool::open(dir.path(), 100, WEEK).unwrap();
        let ids: Vec<_> = s
            .read_after(0, 10)
            .into_iter()
            .map(|(_, r)| r.result_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn ack_deletes_only_the_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
        for id in ["a", "b", "c"] {
            s.push(&result(id)).unwrap();
        }
        assert_eq!(s.ack(["a", "c", "zz"]), 2);
        drop(s);
        let s = Spool::open(dir.path(), 100, WEEK).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.read_after(0, 10)[0].1.result_id, "b");
    }

    #[test]
    fn full_spool_drops_oldest_first_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 2, WEEK).unwrap();
        for id in ["a", "b", "c"] {
            s.push(&result(id)).unwrap();
        }
        assert_eq!(s.dropped, 1);
        let ids: Vec<_> = s
            .read_after(0, 10)
            .into_iter()
            .map(|(_, r)| r.result_id)
            .collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn results_older_than_max_age_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100, Duration::from_secs(3600)).unwrap();
        let mut old = result("old");
        old.measured_at = Some(to_ts(Utc::now() - chrono::Duration::hours(2)));
        s.push(&old).unwrap();
        s.push(&result("new")).unwrap();
        assert_eq!(s.dropped, 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sequence_continues_after_reopen_and_leftover_tmp_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
        let first = s.push(&result("a")).unwrap();
        drop(s);
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"partial").unwrap();
        let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
        assert!(s.push(&result("b")).unwrap() > first);
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
    }

    #[test]
    fn in_flight_count_forgets_results_dropped_by_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 2, WEEK).unwrap();
        let a = s.push(&result("a")).unwrap();
        let b = s.push(&result("b")).unwrap();
        assert_eq!(s.count_through(b), 2);
        s.push(&result("c")).unwrap(); // drops "a", which was in flight
        assert_eq!(s.count_through(b), 1);
        assert_eq!(s.count_through(a), 0);
    }

    #[test]
    fn read_after_skips_what_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100, WEEK).unwrap();
        let a = s.push(&result("a")).unwrap();
        s.push(&result("b")).unwrap();
        let rest = s.read_after(a, 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1.result_id, "b");
    }
}
