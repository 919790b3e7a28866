//! Host labels as the collector knows them, and the `name=value` selectors that use them.
//!
//! An agent declares its labels (`[labels]` in its file) and sends them in every Hello; the
//! store keeps them with the host. Each collector holds them in a [`HostLabels`] registry:
//! updated at once by the Hello it receives itself, and reloaded from the store every minute
//! for the hosts that stream to another collector sharing the store. Group membership is
//! computed from it on every use, so a host that changes its labels changes groups (and thus
//! routes, overrides, maintenance windows) with its next Hello, without a reload.
//!
//! A selector is an entry of `[groups]` of the form `name=value` (`value` may use `*`); any
//! other entry is a host name pattern. Host names never contain `=`, so the two cannot be
//! confused.

use crate::config::glob_match;
use crate::store::Store;
use backwatch_proto::model::labels::{self, Labels};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often labels written by other collectors are read back from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Every host's labels, shared by the engine, ingest, API and delivery.
#[derive(Clone, Default, Debug)]
pub struct HostLabels(Arc<RwLock<HashMap<String, Labels>>>);

impl HostLabels {
    /// The host's labels (empty for a host that declared none or is unknown).
    pub fn of(&self, host: &str) -> Labels {
        self.read(|m| m.get(host).cloned().unwrap_or_default())
    }

    pub fn set(&self, host: &str, labels: Labels) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        if labels.is_empty() {
            m.remove(host);
        } else {
            m.insert(host.to_string(), labels);
        }
    }

    /// Replaces everything with what the store holds.
    pub async fn load(&self, store: &dyn Store) -> crate::store::StoreResult<()> {
        let all: HashMap<String, Labels> = store
            .hosts()
            .await?
            .into_iter()
            .filter(|h| !h.facts.labels.is_empty())
            .map(|h| (h.host, h.facts.labels))
            .collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    /// Reload from the store every [`REFRESH_EVERY`], for hosts that stream elsewhere.
    pub async fn refresh(self, store: Arc<dyn Store>) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.load(store.as_ref()).await {
                tracing::warn!(error = %e, "cannot reload host labels; keeping the known ones");
            }
        }
    }

    /// Every distinct `name=value` pair of the fleet, for the dashboard's filter.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.read(|m| {
            m.values()
                .flat_map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect()
        });
        out.sort();
        out.dedup();
        out
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<String, Labels>) -> T) -> T {
        f(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The fleet as its views show it: the stored hosts without the retired ones (their history
/// stays in the store) and, with a label selector (`env=prod`), only those it picks. The fleet
/// API and the reports read it.
pub async fn fleet_hosts(
    store: &dyn Store,
    only: Option<&Member>,
) -> crate::store::StoreResult<Vec<crate::store::HostRecord>> {
    let retired = store.retired_set().await?;
    let mut hosts = store.hosts().await?;
    hosts.retain(|h| {
        !retired.contains(&h.host) && only.is_none_or(|m| m.matches(&h.host, &h.facts.labels))
    });
    Ok(hosts)
}

/// What an agent sent, made safe to keep: labels the rules refuse are left out (an older or
/// foreign agent is not trusted to have validated them) and named, and at most
/// [`labels::MAX_LABELS`] are kept.
pub fn accept(sent: impl IntoIterator<Item = (String, String)>) -> (Labels, Vec<String>) {
    let mut kept = Labels::new();
    let mut refused = Vec::new();
    let mut sent: Vec<(String, String)> = sent.into_iter().collect();
    sent.sort();
    for (name, value) in sent {
        let problem = labels::name_problem(&name).or_else(|| labels::value_problem(&value));
        if problem.is_some() || kept.len() >= labels::MAX_LABELS {
            refused.push(name.chars().take(labels::MAX_NAME_LEN).collect());
        } else {
            kept.insert(name, value);
        }
    }
    (kept, refused)
}

/// One `[groups]` entry: a label selector or a host name pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// `name=value`: hosts whose label `name` matches `value` (a `*` pattern).
    Label { name: String, value: String },
    /// A host name or pattern.
    Host(String),
}

impl Member {
    pub fn parse(entry: &str) -> Result<Member, String> {
        match entry.split_once('=') {
            None => Ok(Member::Host(entry.to_string())),
            Some((name, value)) => {
                let (name, value) = (name.trim(), value.trim());
                if let Some(p) = labels::name_problem(name) {
                    return Err(format!("label selector {entry:?}: {p}"));
                }
                if value.is_empty() {
                    return Err(format!(
                        "label selector {entry:?} has no value (\"{name}=*\" selects any value)"
                    ));
                }
                Ok(Member::Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
            }
        }
    }

    pub fn matches(&self, host: &str, labels: &Labels) -> bool {
        match self {
            Member::Host(p) => glob_match(p, host),
            Member::Label { name, value } => labels.get(name).is_some_and(|v| glob_match(value, v)),
        }
    }

    pub fn is_label(&self) -> bool {
        matches!(self, Member::Label { .. })
    }

    /// A label selector only (the `label=` filter of the API, `--label` of the CLI).
    pub fn selector(text: &str) -> Result<Member, String> {
        match Member::parse(text)? {
            m @ Member::Label { .. } => Ok(m),
            Member::Host(_) => Err(format!(
                "{text:?} is not a label selector: expected name=value (e.g. env=prod)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_patterns_match_names() {
        let prod = Member::parse("env=prod").unwrap();
        let any_billing = Member::parse("cluster=billing*").unwrap();
        let db = Member::parse("db-*").unwrap();
        let labels = l(&[("env", "prod"), ("cluster", "billing-eu")]);
        assert!(prod.matches("x", &labels));
        assert!(any_billing.matches("x", &labels));
        assert!(!prod.matches("x", &l(&[("env", "staging")])));
        assert!(!prod.matches("env=prod", &Labels::new()));
        assert!(db.matches("db-1", &Labels::new()));
        assert!(!db.matches("web-1", &labels));
    }

    #[test]
    fn a_bad_selector_says_what_is_wrong() {
        assert!(
            Member::parse("2env=prod")
                .unwrap_err()
                .contains("not a label name")
        );
        assert!(Member::parse("env=").unwrap_err().contains("env=*"));
    }

    #[test]
    fn accept_drops_refused_labels_and_names_them() {
        let (kept, refused) = accept([
            ("env".to_string(), "prod".to_string()),
            ("host".to_string(), "spoof".to_string()),
            ("bad-name".to_string(), "x".to_string()),
        ]);
        assert_eq!(kept, l(&[("env", "prod")]));
        assert_eq!(refused, vec!["bad-name".to_string(), "host".to_string()]);
        let many = (0..40).map(|i| (format!("l{i:02}"), "v".to_string()));
        let (kept, refused) = accept(many);
        assert_eq!((kept.len(), refused.len()), (32, 8));
    }

    #[test]
    fn the_registry_forgets_a_host_that_drops_its_labels() {
        let r = HostLabels::default();
        r.set("a", l(&[("env", "prod")]));
        r.set("b", l(&[("env", "prod"), ("dc", "x")]));
        assert_eq!(
            r.pairs(),
            vec![
                ("dc".to_string(), "x".to_string()),
                ("env".to_string(), "prod".to_string())
            ]
        );
        r.set("a", Labels::new());
        assert!(r.of("a").is_empty());
    }
}
