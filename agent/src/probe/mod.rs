//! Probes measure; they never decide ok/critical (that is the collector's rules).
//!
//! One module per probe behind one object-safe trait. The scheduler, `check` and
//! `config check` only ever see `Box<dyn Probe>`; a probe kind is registered once, by its
//! configuration section (`crate::config::Section`). The recipe for a new kind is
//! docs/adding-a-check.md.

pub mod archive_dir;
pub mod backup_dir;
pub mod barman;
pub mod base_backup;
pub mod disk;
pub mod drill;
pub mod pgbackrest;
pub mod restore;
pub mod settings;
pub mod tool_command;
pub mod unswitched;
pub mod wal_archive;
pub mod wal_positions;

use backwatch_proto::model::{Observation, ProbeKind};
use std::any::Any;

/// What a probe run produced: an observation, or the reason it could not observe at all
/// ("cannot connect: ...") — which is itself a result sent to the collector, never a crash.
pub type Outcome = Result<Observation, String>;

#[async_trait::async_trait]
pub trait Probe: AsAny + Send + Sync + 'static {
    fn kind(&self) -> ProbeKind;
    /// Configured name: the second half of the check id (`backup.daily` -> "daily").
    fn name(&self) -> &str;
    /// What the probe looks at, for `check` (never a password).
    fn target(&self) -> String;
    /// Infallible on purpose: "cannot connect", "permission denied" are observations.
    async fn observe(&self) -> Outcome;

    fn check_id(&self) -> String {
        backwatch_proto::model::check_id(self.kind(), self.name())
    }
}

/// Lets a section that refers to another (an archive directory naming its `[[wal]]` server)
/// find that probe among the validated ones, and tests look at a validated probe's fields.
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
}

// Bounded by `Probe` (hence `Sized`): `Box<dyn Probe>` or `&dyn Probe` never take this impl,
// so `as_any` on them always reaches the probe itself.
impl<P: Probe> AsAny for P {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl dyn Probe {
    pub fn downcast_ref<P: Probe>(&self) -> Option<&P> {
        self.as_any().downcast_ref()
    }
}
