//! Routing: which audiences hear about which alert. Pure; built from `[[routes]]`.
//!
//! A route hears a notice when it takes alerts, the notice's audience severity is at least
//! its `min_status`, the host is listed in `hosts` (patterns) or belongs to one of `groups`
//! (when either is given), and the check matches one of `checks` (when given). A route with
//! `daily_summary` receives the daily report; with `alerts = false` nothing else.

use crate::config::glob_match;
use crate::store::alerts::Severity;
use crate::store::outbox::Channel;

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Mailboxes as written in the configuration ("DBA team <dba@example.com>"), validated.
    Email(Vec<String>),
    /// An http(s) URL receiving a JSON POST per notice.
    Webhook(String),
    /// A Slack incoming webhook: the message as Slack blocks.
    Slack(String),
    /// PagerDuty Events v2: trigger and resolve with a stable dedup key per alert.
    PagerDuty { url: String, routing_key: String },
    /// An Alertmanager's base URL: its alerts are kept in sync, not queued per notice
    /// (`notify/alertmanager.rs`).
    Alertmanager(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub target: Target,
    pub min_status: Severity,
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    pub checks: Vec<String>,
    pub alerts: bool,
    pub daily_summary: bool,
}

impl Route {
    /// Does this route hear a notice of `audience` severity about `check` on `host`?
    pub fn hears(&self, host: &str, host_groups: &[&str], check: &str, audience: Severity) -> bool {
        self.alerts && audience >= self.min_status && self.covers(host, host_groups, check)
    }

    /// Do the host and check filters let `check` on `host` through?
    pub fn covers(&self, host: &str, host_groups: &[&str], check: &str) -> bool {
        let host_ok = (self.hosts.is_empty() && self.groups.is_empty())
            || self.hosts.iter().any(|p| glob_match(p, host))
            || self
                .groups
                .iter()
                .any(|g| host_groups.contains(&g.as_str()));
        let check_ok = self.checks.is_empty() || self.checks.iter().any(|p| glob_match(p, check));
        host_ok && check_ok
    }

    /// One (channel, recipient) per message this route sends.
    pub fn recipients(&self) -> Vec<(Channel, &str)> {
        match &self.target {
            Target::Email(to) => to.iter().map(|a| (Channel::Email, a.as_str())).collect(),
            Target::Webhook(url) => vec![(Channel::Webhook, url.as_str())],
            Target::Slack(url) | Target::PagerDuty { url, .. } => {
                vec![(Channel::Webhook, url.as_str())]
            }
            Target::Alertmanager(_) => Vec::new(),
        }
    }
}

/// The routes that receive the daily summary.
pub fn summary_routes(routes: &[Route]) -> impl Iterator<Item = &Route> {
    routes.iter().filter(|r| r.daily_summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Severity::{Critical, Warning};

    fn route(name: &str, min: Severity) -> Route {
        Route {
            name: name.into(),
            target: Target::Email(vec![format!("{name}@example.com")]),
            min_status: min,
            hosts: vec![],
            groups: vec![],
            checks: vec![],
            alerts: true,
            daily_summary: false,
        }
    }

    /// The procedure's audiences: DBA all alerts, sysadmin critical, management summary.
    fn procedure_routes() -> Vec<Route> {
        let management = Route {
            alerts: false,
            daily_summary: true,
            ..route("management", Warning)
        };
        vec![
            route("dba", Warning),
            route("sysadmin", Critical),
            management,
        ]
    }

    fn hearing(
        routes: &[Route],
        host: &str,
        groups: &[&str],
        check: &str,
        s: Severity,
    ) -> Vec<String> {
        routes
            .iter()
            .filter(|r| r.hears(host, groups, check, s))
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn procedure_audiences() {
        let r = procedure_routes();
        assert_eq!(
            hearing(&r, "db1", &[], "wal.main", Critical),
            ["dba", "sysadmin"]
        );
        assert_eq!(hearing(&r, "db1", &[], "disk.backup", Warning), ["dba"]);
        let summary: Vec<_> = summary_routes(&r).map(|r| r.name.as_str()).collect();
        assert_eq!(summary, ["management"]);
    }

    #[test]
    fn host_group_and_check_filters() {
        let mut r = route("reporting-wal", Warning);
        r.hosts = vec!["rep-*".into()];
        r.groups = vec!["eu".into()];
        r.checks = vec!["wal.*".into()];
        let rows = [
            ("rep-1", &[][..], "wal.main", true),
            ("db1", &["eu"][..], "wal.main", true),
            ("db1", &[][..], "wal.main", false),
            ("rep-1", &[][..], "disk.backup", false),
        ];
        for (host, groups, check, want) in rows {
            assert_eq!(
                r.hears(host, groups, check, Critical),
                want,
                "{host} {groups:?} {check}"
            );
        }
    }

    #[test]
    fn webhook_has_one_recipient() {
        let mut r = route("chat", Warning);
        r.target = Target::Webhook("https://chat.example.com/hook".into());
        assert_eq!(
            r.recipients(),
            [(Channel::Webhook, "https://chat.example.com/hook")]
        );
    }
}
