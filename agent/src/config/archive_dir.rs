//! `[[archive_dir]]`: the WAL archive directory probe's configuration.
//!
//! No default instance: where `archive_command` copies to differs per host. Expectations default
//! to the operations procedure (owner and group `postgres`, mode 0700, 7 days of WAL); an empty
//! string turns the owner, group or mode check off. `wal` names a `[[wal]]` probe of the same
//! file whose server fills this archive; the probe then asks it what it archived.

use super::effective::Settings;
use super::{At, Cx, Section, Valid, is_file_not_dir};
use crate::probe::archive_dir::{ArchiveDirProbe, DEFAULT_MAX_ENTRIES};
use backwatch_common::config::{de_opt_duration, fmt_duration};
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

/// Continuity is a heavy check run on a schedule, not polled (docs/checks.md R25); the
/// silent-failure cross-check it carries is also what an hourly look needs.
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_MIN_RETENTION: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchiveDir {
    pub name: String,
    pub path: PathBuf,
    /// User name or numeric uid (default "postgres"; "" = not checked).
    pub expected_owner: Option<String>,
    /// Group name or numeric gid (default "postgres"; "" = not checked).
    pub expected_group: Option<String>,
    /// Octal permission bits (default "0700"; "" = not checked).
    pub expected_mode: Option<String>,
    /// Less WAL than this is a warning, except on a younger cluster (default 7 days).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_retention: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// The listing's limit (default `schedule.timeout`); the linked server's time is added.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Directory entries examined at most (default 1,000,000).
    pub max_entries: Option<u64>,
    /// Name of the `[[wal]]` probe of the cluster that archives here.
    pub wal: Option<String>,
    /// The archive is declared encrypted: readable segments are reported (default false).
    pub encrypted: Option<bool>,
    /// `archive_command` returns before the segment is here (pgBackRest `archive-async`, a
    /// parallel uploader): gaps at or before the last archived segment may be in flight
    /// (default false: PostgreSQL's archiver copies in order, so such a gap is lost).
    pub asynchronous: Option<bool>,
}

/// "0700", "700" or "0o700" → 0o700.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!(
            "{text:?} is not an octal permission mode (examples: \"0700\", \"0750\")"
        )),
    }
}

fn expectation(v: Option<String>, default: &str) -> Option<String> {
    match v {
        None => Some(default.to_string()),
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s),
    }
}

impl Section for RawArchiveDir {
    const KEY: &'static str = "archive_dir";
    const KIND: ProbeKind = ProbeKind::Archive;
    const INTERVAL: Duration = ARCHIVE_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let d = self;
        let before = cx.problems.len();
        if is_file_not_dir(&d.path) {
            cx.problems.push(
                at.key("path"),
                format!("{} is not a directory", d.path.display()),
            );
        }
        let listing = cx.timeout(at, d.timeout, cx.default_timeout);
        let expected_mode = match d.expected_mode.as_deref() {
            None => Some(0o700),
            Some("") => None,
            Some(text) => match parse_mode(text) {
                Ok(m) => Some(m),
                Err(e) => {
                    cx.problems.push(at.key("expected_mode"), e);
                    None
                }
            },
        };
        let linked = d
            .wal
            .as_deref()
            .and_then(|name| cx.wal(at, name))
            .map(Box::new);
        let min_retention = d.min_retention.unwrap_or(DEFAULT_MIN_RETENTION);
        if min_retention.is_zero() {
            cx.problems
                .push(at.key("min_retention"), "must be more than 0");
        }
        if d.max_entries == Some(0) {
            cx.problems
                .push(at.key("max_entries"), "must be at least 1");
        }
        if cx.problems.len() > before {
            return None;
        }
        let probe = ArchiveDirProbe {
            name: d.name,
            path: d.path,
            expected_owner: expectation(d.expected_owner, "postgres"),
            expected_group: expectation(d.expected_group, "postgres"),
            expected_mode,
            min_retention: Some(min_retention),
            max_entries: d.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            wal: linked,
            encrypted: d.encrypted.unwrap_or(false),
            asynchronous: d.asynchronous.unwrap_or(false),
            memo: Default::default(),
        };
        // The listing, plus the linked server's two statements.
        let timeout = match &probe.wal {
            Some(w) => listing + w.connect_timeout + w.effective_statement_timeout() * 3,
            None => listing,
        };
        let settings = Settings::default()
            .path("path", &probe.path)
            .set(
                "expected_owner",
                probe.expected_owner.clone().unwrap_or_default(),
            )
            .set(
                "expected_group",
                probe.expected_group.clone().unwrap_or_default(),
            )
            .set(
                "expected_mode",
                probe
                    .expected_mode
                    .map_or(String::new(), |m| format!("{m:04o}")),
            )
            .duration("min_retention", min_retention)
            .count("max_entries", probe.max_entries)
            .set("encrypted", probe.encrypted)
            .set("asynchronous", probe.asynchronous)
            .or_note(
                "wal",
                probe.wal.as_ref().map(|w| w.name.clone()),
                Value::from,
                "no cross-check with PostgreSQL",
            )
            .duration("timeout", listing)
            .note(format!(
                "timeout is the listing's; with the linked server's statements a run may take {}",
                fmt_duration(timeout)
            ));
        Some(Valid {
            probe: Box::new(probe),
            timeout,
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, load_str as load};

    fn archive(c: &Config) -> &ArchiveDirProbe {
        c.probes_of::<ArchiveDirProbe>()
            .next()
            .map(|(_, p)| p)
            .expect("an archive_dir probe")
    }

    #[test]
    fn defaults_follow_the_procedure() {
        let c = load("[[archive_dir]]\nname = \"main\"\npath = \"/archive_path\"\n").unwrap();
        let a = archive(&c);
        assert_eq!(a.expected_owner.as_deref(), Some("postgres"));
        assert_eq!(a.expected_group.as_deref(), Some("postgres"));
        assert_eq!(a.expected_mode, Some(0o700));
        assert_eq!(a.min_retention, Some(DEFAULT_MIN_RETENTION));
        assert!(a.wal.is_none());
        let s = c
            .probes
            .iter()
            .find(|s| s.probe.check_id() == "archive.main");
        assert_eq!(s.map(|s| s.interval), Some(ARCHIVE_INTERVAL));
    }

    #[test]
    fn empty_expectations_turn_the_comparison_off() {
        let c = load(
            "[[archive_dir]]\nname = \"main\"\npath = \"/a\"\nexpected_owner = \"\"\nexpected_mode = \"\"\n",
        )
        .unwrap();
        let a = archive(&c);
        assert_eq!((a.expected_owner.as_deref(), a.expected_mode), (None, None));
    }

    #[test]
    fn wal_link_must_name_a_wal_probe_of_the_file() {
        let linked = load(
            "[[wal]]\nname = \"main\"\ndsn = \"host=/tmp\"\n\
             [[archive_dir]]\nname = \"main\"\npath = \"/a\"\nwal = \"main\"\n",
        )
        .unwrap();
        assert_eq!(
            archive(&linked).wal.as_ref().map(|w| w.name.as_str()),
            Some("main")
        );
        let err = load(
            "[[wal]]\nname = \"main\"\ndsn = \"host=/tmp\"\n\
             [[archive_dir]]\nname = \"main\"\npath = \"/a\"\nwal = \"mian\"\nexpected_mode = \"rwx\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("archive_dir[0].wal: no [[wal]] probe is named \"mian\" (known: main)"),
            "{err}"
        );
        assert!(
            err.contains("archive_dir[0].expected_mode: \"rwx\" is not an octal"),
            "{err}"
        );
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0700"), Ok(0o700));
        assert_eq!(parse_mode("750"), Ok(0o750));
        assert_eq!(parse_mode("0o2770"), Ok(0o2770));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("rwx").is_err());
        assert!(parse_mode("0o").is_err());
    }
}
