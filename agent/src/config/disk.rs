//! `[[disk]]`: the disk space probe's configuration. Default from the operations procedure:
//! the filesystem of /backup, every hour.

use super::effective::Settings;
use super::{At, Cx, Section, Valid};
use crate::probe::disk::DiskProbe;
use backwatch_common::config::de_opt_duration;
use backwatch_proto::model::{AGENT_SPOOL_PROBE, ProbeKind};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const DISK_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// A run taking longer is reported as timed out (default `schedule.timeout`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

/// The procedure's disk check, when the file has no `disk` list.
pub fn defaults() -> Vec<RawDisk> {
    vec![RawDisk {
        name: "backup".into(),
        path: "/backup".into(),
        interval: None,
        timeout: None,
    }]
}

impl Section for RawDisk {
    const KEY: &'static str = "disk";
    const KIND: ProbeKind = ProbeKind::Disk;
    const INTERVAL: Duration = DISK_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        if self.name == AGENT_SPOOL_PROBE {
            cx.problems.push(
                at.key("name"),
                format!(
                    "{:?} is reserved for the agent's report on its own spool",
                    self.name
                ),
            );
        }
        let timeout = cx.timeout(at, self.timeout, cx.default_timeout);
        let settings = Settings::default()
            .path("path", &self.path)
            .duration("timeout", timeout);
        Some(Valid {
            probe: Box::new(DiskProbe {
                name: self.name,
                path: self.path,
            }),
            timeout,
            settings,
        })
    }
}
