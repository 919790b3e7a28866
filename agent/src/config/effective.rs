//! `backwatch-agent config check`: the effective configuration, defaults filled in, as a TOML
//! document that loads back to the same configuration (serialized with `toml`, so it is always
//! well-formed). A key left unset where no default applies is a comment saying what happens
//! instead. Never a password: a DSN is shown redacted.

use super::Config;
use backwatch_common::config::fmt_duration;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// One section's effective keys, in the order written, and the notes printed above it.
#[derive(Default)]
pub struct Settings {
    keys: Table,
    notes: Vec<String>,
}

impl Settings {
    pub fn named(name: &str) -> Self {
        Settings::default().set("name", name)
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.keys.insert(key.to_string(), value.into());
        self
    }

    pub fn path(self, key: &str, path: &Path) -> Self {
        self.set(key, path.display().to_string())
    }

    pub fn paths(self, key: &str, paths: &[PathBuf]) -> Self {
        let v: Vec<Value> = paths
            .iter()
            .map(|p| Value::from(p.display().to_string()))
            .collect();
        self.set(key, v)
    }

    pub fn strings(self, key: &str, v: &[String]) -> Self {
        self.set(key, v.to_vec())
    }

    pub fn count(self, key: &str, n: u64) -> Self {
        self.set(key, i64::try_from(n).unwrap_or(i64::MAX))
    }

    pub fn duration(self, key: &str, d: Duration) -> Self {
        self.set(key, fmt_duration(d))
    }

    /// An optional key: its value, or a note "`key` not set: `unset`".
    pub fn or_note<T>(
        self,
        key: &str,
        v: Option<T>,
        to: impl FnOnce(T) -> Value,
        unset: &str,
    ) -> Self {
        match v {
            Some(v) => self.set(key, to(v)),
            None => self.note(format!("{key} not set: {unset}")),
        }
    }

    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(text.into());
        self
    }

    /// `self`, then `other`'s keys and notes.
    pub fn after(mut self, other: Settings) -> Self {
        self.keys.extend(other.keys);
        self.notes.extend(other.notes);
        self
    }
}

/// A duration as a TOML value the file accepts (`"6h"`).
pub fn duration(d: Duration) -> Value {
    Value::from(fmt_duration(d))
}

pub fn path(p: PathBuf) -> Value {
    Value::from(p.display().to_string())
}

/// The whole document.
pub fn render(c: &Config) -> String {
    let mut out = String::new();
    let mut head = Table::new();
    match &c.collector {
        Some(l) => {
            let mut t = Settings::default()
                .set("url", l.url.as_str())
                .path("ca", &l.ca)
                .path("cert", &l.cert)
                .path("key", &l.key);
            if let Some(n) = &l.server_name {
                t = t.set("server_name", n.as_str());
            }
            t = t.set("enroll_url", l.enroll_url.as_str());
            head.insert("collector".into(), Value::Table(t.keys));
        }
        None => out.push_str("# [collector] not configured: `run` needs it, `check` does not\n"),
    }
    let spool = Settings::default()
        .path("dir", &c.spool.dir)
        .count("max_results", c.spool.max_results)
        .duration("max_age", c.spool.max_age);
    head.insert("spool".into(), Value::Table(spool.keys));
    let schedule = Settings::default()
        .duration("start_jitter", c.start_jitter)
        .duration("timeout", c.probe_timeout);
    head.insert("schedule".into(), Value::Table(schedule.keys));
    if c.labels.is_empty() {
        out.push_str("# [labels] none: the collector can select this host by name only\n");
    } else {
        let labels = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        head.insert("labels".into(), Value::Table(labels));
    }
    out.push_str(&to_toml(&head));
    for s in &c.probes {
        out.push_str(&format!("\n# check {}\n", s.probe.check_id()));
        for n in &s.settings.notes {
            out.push_str(&format!("# {n}\n"));
        }
        let mut doc = Table::new();
        doc.insert(
            s.section.into(),
            Value::Array(vec![Value::Table(s.settings.keys.clone())]),
        );
        out.push_str(&to_toml(&doc));
    }
    out
}

fn to_toml(t: &Table) -> String {
    toml::to_string(t).unwrap_or_else(|e| format!("# cannot print this part: {e}\n"))
}
