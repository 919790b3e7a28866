//! Probes measure; they never decide ok/critical (that is the collector's rules).
//!
//! One module per probe behind one trait. The scheduler knows only [`Probe`]; a new probe is a
//! new file here, one variant in [`crate::config::ProbeConfig`] and one line in
//! [`crate::schedule`].

pub mod archive_dir;
pub mod backup_dir;
pub mod barman;
pub mod base_backup;
pub mod disk;
pub mod drill;
pub mod pgbackrest;
pub mod restore;
pub mod tool_command;
pub mod unswitched;
pub mod wal_archive;
pub mod wal_positions;

use backwatch_proto::model::{Observation, ProbeKind};
use std::future::Future;

/// What a probe run produced: an observation, or the reason it could not observe at all
/// ("cannot connect: ...") — which is itself a result sent to the collector, never a crash.
pub type Outcome = Result<Observation, String>;

pub trait Probe: Send + Sync + 'static {
    const KIND: ProbeKind;
    /// Configured name: the second half of the check id (`backup.daily` -> "daily").
    fn name(&self) -> &str;
    /// Infallible on purpose: "cannot connect", "permission denied" are observations.
    fn observe(&self) -> impl Future<Output = Outcome> + Send;
}
