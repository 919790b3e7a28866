//! `[[restore]]`: the restore-readiness probe's configuration.
//!
//! No default instance: where plain base backups live differs per host. Weekly by default
//! (the verification reads the whole backup), bounded by `timeout` (default 6 h), under
//! nice/ionice unless `io_limit = false`.

use super::effective::{Settings, path};
use super::{At, Cx, Section, Valid};
use crate::probe::restore::RestoreProbe;
use backwatch_common::config::{Problems, de_opt_duration};
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const RESTORE_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestore {
    pub name: String,
    /// Directory holding plain pg_basebackup directories (or one backup itself).
    pub backup_dir: PathBuf,
    /// WAL archive where the backup's WAL is looked for when it is not in its pg_wal.
    pub archive_dir: Option<PathBuf>,
    /// pg_verifybackup to run (default: the one of the backup's major under `pg_roots`).
    pub pg_verifybackup: Option<PathBuf>,
    /// Where majors are installed side by side, as `<major>/bin` or `pgsql-<major>/bin`
    /// (default: /usr/lib/postgresql and /usr).
    pub pg_roots: Option<Vec<PathBuf>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Run pg_verifybackup under `nice -n 19 ionice -c 2 -n 7` (default true).
    pub io_limit: Option<bool>,
}

impl Section for RawRestore {
    const KEY: &'static str = "restore";
    const KIND: ProbeKind = ProbeKind::Restore;
    const INTERVAL: Duration = RESTORE_INTERVAL;
    // A verification reads the whole backup: not again at every agent start.
    const RESUMES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let (probe, timeout) = validate(&mut cx.problems, at, self)?;
        let settings = Settings::default()
            .path("backup_dir", &probe.backup_dir)
            .or_note(
                "archive_dir",
                probe.archive_dir.clone(),
                path,
                "WAL only from the backup's pg_wal",
            )
            .or_note(
                "pg_verifybackup",
                probe.pg_verifybackup.clone(),
                path,
                "the backup's major's under pg_roots (else the oldest newer one), else PATH",
            )
            .paths("pg_roots", &probe.pg_roots)
            .duration("timeout", timeout)
            .set("io_limit", probe.io_limit);
        Some(Valid {
            probe: Box::new(probe),
            timeout,
            settings,
        })
    }
}

/// The probe and its timeout, or `None` after recording its problems.
fn validate(p: &mut Problems, at: &At, r: RawRestore) -> Option<(RestoreProbe, Duration)> {
    let k = |f: &str| at.key(f);
    let timeout = r.timeout.unwrap_or(RESTORE_TIMEOUT);
    let mut ok = true;
    if timeout < Duration::from_secs(1) {
        p.push(k("timeout"), "must be at least 1s");
        ok = false;
    }
    if let Some(v) = &r.pg_verifybackup
        && !v.is_file()
    {
        p.push(
            k("pg_verifybackup"),
            format!("{} is not a file", v.display()),
        );
        ok = false;
    }
    ok.then(|| {
        (
            RestoreProbe {
                name: r.name,
                backup_dir: r.backup_dir,
                archive_dir: r.archive_dir,
                pg_verifybackup: r.pg_verifybackup,
                pg_roots: r.pg_roots.unwrap_or_else(|| {
                    crate::probe::restore::DEFAULT_PG_ROOTS
                        .iter()
                        .map(PathBuf::from)
                        .collect()
                }),
                io_limit: r.io_limit.unwrap_or(true),
            },
            timeout,
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load_str as load;
    use crate::probe::restore::RestoreProbe;

    #[test]
    fn restore_defaults_to_weekly_under_nice() {
        let c = load("[[restore]]\nname = \"base\"\nbackup_dir = \"/backup/base\"\n").unwrap();
        let s = c
            .probes
            .iter()
            .find(|s| s.probe.check_id() == "restore.base")
            .expect("restore.base");
        assert_eq!(s.interval, super::RESTORE_INTERVAL);
        assert_eq!(s.timeout, super::RESTORE_TIMEOUT);
        let r = s
            .probe
            .downcast_ref::<RestoreProbe>()
            .expect("a restore probe");
        assert!(r.io_limit && r.archive_dir.is_none());
        assert!(s.resumes);
    }

    #[test]
    fn missing_verifier_is_named() {
        let err = load(
            "[[restore]]\nname = \"base\"\nbackup_dir = \"/b\"\npg_verifybackup = \"/nonexistent/pg_verifybackup\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("restore[0].pg_verifybackup: /nonexistent/pg_verifybackup is not a file"),
            "{err}"
        );
    }
}
