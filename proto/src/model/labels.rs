//! Host labels (`[labels]` on the agent: `env = "prod"`, `cluster = "billing"`): one set of
//! rules for what a label may be, applied by the agent to its file, by the collector to what
//! an agent sends, and to the `name=value` selectors of the collector's `[groups]`.
//!
//! Names follow Prometheus label names, so a label can become an Alertmanager label as it is.
//! A few names are taken by Backwatch's own Alertmanager labels and refused.

use std::collections::BTreeMap;

/// A host's labels, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// Most labels one host may declare: labels name what a host is, not what it measures.
pub const MAX_LABELS: usize = 32;
/// Longest label name (characters).
pub const MAX_NAME_LEN: usize = 64;
/// Longest label value (characters).
pub const MAX_VALUE_LEN: usize = 128;
/// Names Backwatch sets itself on every Alertmanager alert.
pub const RESERVED: [&str; 5] = ["alertname", "host", "check", "severity", "groups"];

/// Why a label name cannot be used, or `None`.
pub fn name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.len() > MAX_NAME_LEN
    {
        return Some(format!(
            "{name:?} is not a label name (1-{MAX_NAME_LEN} of a-z, A-Z, 0-9, '_', not starting with a digit)"
        ));
    }
    if name.starts_with("__") {
        return Some(format!("{name:?}: names starting with \"__\" are reserved"));
    }
    if RESERVED.contains(&name) {
        return Some(format!(
            "{name:?} is set by Backwatch itself (reserved: {})",
            RESERVED.join(", ")
        ));
    }
    None
}

/// Why a label value cannot be used, or `None`.
pub fn value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty (leave the label out instead)".into());
    }
    if value.chars().count() > MAX_VALUE_LEN {
        return Some(format!("is longer than {MAX_VALUE_LEN} characters"));
    }
    if value.chars().any(char::is_control) {
        return Some("contains a control character".into());
    }
    None
}

/// Every problem of a set of labels, as (label name, problem); empty when usable.
pub fn problems(labels: &Labels) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if labels.len() > MAX_LABELS {
        out.push((
            String::new(),
            format!("{} labels; at most {MAX_LABELS}", labels.len()),
        ));
    }
    for (name, value) in labels {
        if let Some(p) = name_problem(name) {
            out.push((name.clone(), p));
        } else if let Some(p) = value_problem(value) {
            out.push((name.clone(), p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_and_spare_backwatch_own() {
        for ok in ["env", "cluster", "_x", "dc2", "Team_Name"] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", "2dc", "env-name", "a.b", "__meta", "host", "severity"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert!(name_problem(&"a".repeat(65)).is_some());
    }

    #[test]
    fn values_are_short_printable_text() {
        assert_eq!(value_problem("prod"), None);
        assert_eq!(value_problem("Billing (EU)"), None);
        assert!(value_problem("").is_some());
        assert!(value_problem("a\nb").is_some());
        assert!(value_problem(&"x".repeat(129)).is_some());
    }

    #[test]
    fn every_problem_of_a_set_is_named() {
        let mut l = Labels::new();
        l.insert("env".into(), "prod".into());
        l.insert("host".into(), "x".into());
        l.insert("team".into(), String::new());
        let p = problems(&l);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "host");
        assert_eq!(p[1].0, "team");
    }
}
