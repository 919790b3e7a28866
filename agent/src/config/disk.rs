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
    /// The mount point the path's filesystem must have (`"/backup"` for a backup volume):
    /// when the volume is not mounted, the path lies on its parent's filesystem, whose space
    /// a backup then fills, and the check is critical instead of measuring the wrong disk.
    #[serde(default)]
    pub mount_point: Option<PathBuf>,
    /// The filesystem may be read-only (a share mounted so on purpose, e.g. backups a drill
    /// host only reads); otherwise read-only is critical.
    #[serde(default)]
    pub allow_read_only: bool,
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
        mount_point: None,
        allow_read_only: false,
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
        if let Some(m) = &self.mount_point
            && !(m.is_absolute() && self.path.starts_with(m))
        {
            cx.problems.push(
                at.key("mount_point"),
                format!(
                    "{} must be an absolute path that {} lies under",
                    m.display(),
                    self.path.display()
                ),
            );
        }
        let timeout = cx.timeout(at, self.timeout, cx.default_timeout);
        let settings = Settings::default()
            .path("path", &self.path)
            .or_note(
                "mount_point",
                self.mount_point.clone(),
                super::effective::path,
                "whichever filesystem holds the path is measured",
            )
            .set("allow_read_only", self.allow_read_only)
            .duration("timeout", timeout);
        Some(Valid {
            probe: Box::new(DiskProbe {
                name: self.name,
                path: self.path,
                mount_point: self.mount_point,
                allow_read_only: self.allow_read_only,
            }),
            timeout,
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str as load;
    use crate::probe::disk::DiskProbe;

    #[test]
    fn mount_point_reaches_the_probe() {
        let c = load("[[disk]]\nname = \"b\"\npath = \"/backup/pg\"\nmount_point = \"/backup\"\n")
            .unwrap();
        let (_, p) = c.probes_of::<DiskProbe>().next().expect("a disk probe");
        assert_eq!(
            p.mount_point.as_deref(),
            Some(std::path::Path::new("/backup"))
        );
    }

    #[test]
    fn a_mount_point_the_path_is_not_under_is_named() {
        for bad in ["/srv", "backup"] {
            let err = load(&format!(
                "[[disk]]\nname = \"b\"\npath = \"/backup\"\nmount_point = \"{bad}\"\n"
            ))
            .err()
            .unwrap();
            assert!(
                err.contains(&format!(
                    "disk[0].mount_point: {bad} must be an absolute path that /backup lies under"
                )),
                "{err}"
            );
        }
    }
}
