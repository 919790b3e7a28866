//! Wire conversions of the WAL configuration compliance observation (`settings.<name>`).
//!
//! Same contract as the parent module: model → wire is infallible and clips texts; wire →
//! model refuses oversized texts and NUL characters.

use super::{ConvertError, clip, text};
use crate::generated as pb;
use crate::model::SettingsObs;

impl From<&SettingsObs> for pb::SettingsObservation {
    fn from(s: &SettingsObs) -> Self {
        pb::SettingsObservation {
            in_recovery: s.in_recovery,
            server_version_num: s.server_version_num,
            wal_level: clip(&s.wal_level),
            archive_mode: clip(&s.archive_mode),
            archive_command_set: s.archive_command_set,
            archive_library: clip(&s.archive_library),
            archive_timeout_secs: s.archive_timeout_secs,
        }
    }
}

pub(super) fn from_wire(s: pb::SettingsObservation) -> Result<SettingsObs, ConvertError> {
    Ok(SettingsObs {
        in_recovery: s.in_recovery,
        server_version_num: s.server_version_num,
        wal_level: text("wal_level", s.wal_level)?,
        archive_mode: text("archive_mode", s.archive_mode)?,
        archive_command_set: s.archive_command_set,
        archive_library: text("archive_library", s.archive_library)?,
        archive_timeout_secs: s.archive_timeout_secs,
    })
}
