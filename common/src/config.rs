//! Loading helpers both binaries' configuration files share.
//!
//! Strict on input, precise in errors: unknown keys are refused (`deny_unknown_fields` on the
//! raw structs), parse errors name file, line, column and key path, and validation reports
//! every problem found rather than the first. A bad configuration exits with code 64
//! ([`EXIT_CONFIG`]) before anything starts.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// sysexits.h EX_USAGE: the conventional exit code for a bad configuration.
pub const EXIT_CONFIG: i32 = 64;

/// One or more problems with one configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// "line:col" when known.
    pub location: Option<String>,
    /// Dotted key path, e.g. `probes.wal.interval`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(loc) = &p.location {
                write!(f, ":{loc}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, " {}: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects validation problems of one file.
#[derive(Debug)]
pub struct Problems {
    file: PathBuf,
    items: Vec<Problem>,
}

impl Problems {
    pub fn new(file: &Path) -> Self {
        Problems {
            file: file.to_path_buf(),
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.items.push(Problem {
            location: None,
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Problems so far: a section compares it before and after its own checks.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.items.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: self.file,
                problems: self.items,
            })
        }
    }
}

/// Read and parse a TOML file into `T`, naming file, position and key on failure.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            location: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse_toml(path, &text)
}

pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let fail = |location: Option<String>, key: String, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            location,
            key,
            message,
        }],
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        fail(
            location(text, e.span()),
            String::new(),
            first_line(e.message()),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." { String::new() } else { key };
        fail(
            location(text, inner.span()),
            key,
            first_line(inner.message()),
        )
    })
}

fn first_line(msg: &str) -> String {
    msg.trim().lines().next().unwrap_or("").to_string()
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(start, |nl| start - nl - 1) + 1;
    Some(format!("{line}:{col}"))
}

/// `"15m"`, `"900s"`, `"24h"`, `"7d"` as a [`Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("{s:?} is not a duration (examples: \"15m\", \"900s\", \"7d\")"))
}

/// For `#[serde(deserialize_with = "...")]` on duration fields written as human strings.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

/// Human form of a duration for `print-config` output: "15m", "1day".
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `*` matches any run of characters; everything else literally (host, check and file name
/// patterns).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        probes: Probes,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probes {
        #[serde(deserialize_with = "de_duration")]
        interval: Duration,
    }

    #[test]
    fn bad_duration_names_file_position_and_key() {
        let text = "[probes]\ninterval = \"fifteen\"\n";
        let err = parse_toml::<Raw>(Path::new("agent.toml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("agent.toml:2:12 probes.interval: \"fifteen\" is not a duration"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let text = "[probes]\ninterval = \"15m\"\nintervall = \"1h\"\n";
        let shown = parse_toml::<Raw>(Path::new("a.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(shown.contains("unknown field `intervall`"), "{shown}");
        assert!(shown.starts_with("a.toml:3:"), "{shown}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let shown = parse_toml::<Raw>(Path::new("a.toml"), "[probes\n")
            .unwrap_err()
            .to_string();
        assert!(shown.starts_with("a.toml:1:"), "{shown}");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut p = Problems::new(Path::new("c.toml"));
        p.push("store.url", "must start with sqlite: or postgres://");
        p.push("grpc.ca", "cannot read /nope: No such file or directory");
        let shown = p.finish().unwrap_err().to_string();
        assert_eq!(shown.lines().count(), 2);
        assert!(shown.contains("c.toml grpc.ca: cannot read /nope"));
    }
}
