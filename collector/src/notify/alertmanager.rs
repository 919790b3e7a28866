//! Alertmanager routes (`channel = "alertmanager"`): Backwatch's alerts as Alertmanager alerts,
//! through its v2 API (`POST {url}/api/v2/alerts`), for teams whose on-call runs there.
//!
//! Alertmanager keeps an alert only while its source re-sends it (Prometheus does on every
//! evaluation): an alert not heard of again ends at its `endsAt`. So this is a state sync, not
//! the outbox's one-message-per-event: every `delivery.alertmanager_every` ([`RESEND`]), the
//! leading collector sends each route every open alert it hears, with `endsAt` a few periods
//! ahead, and the alerts resolved in the last [`RESOLVED_WINDOW`] with `endsAt` at their
//! resolution, which ends them there at once (also after an Alertmanager outage, within that
//! window). A failed send is logged and simply done again at the next period.
//!
//! Severity: a critical alert is sent twice, with `severity = "warning"` and with
//! `severity = "critical"`, as Prometheus's paired warning and critical rules fire: a label is
//! part of an Alertmanager alert's identity, so a single copy whose severity changed would
//! start a new alert and leave the warning one to end ("resolved") just as things got worse.
//! The usual inhibition rule (critical mutes warning, equal `host` and `check`) keeps it to one
//! notification; README shows it.
//!
//! Labels: `alertname` (`BackwatchCheck`), `host`, `check`, `severity` (`warning` or
//! `critical`), `groups` (the host's `[groups]`, comma-separated, when it has any), and the
//! host's own labels (the agent's `[labels]`: `env`, `cluster`, …) under their names, so
//! Alertmanager routes and inhibitions can use them; the names Backwatch sets are reserved.
//!
//! The routes are read from the running configuration at each period: a SIGHUP that adds or
//! changes an Alertmanager route takes effect at the next period.
//! Annotations: `summary`, `procedure` (the response procedure), `dashboard` (the host's
//! page), and `acknowledged` when someone acknowledged it in Backwatch. Acknowledgements and
//! silences stay Backwatch's: a silenced alert is not sent, an acknowledged one is, saying so.

use crate::alerts::routes::{Route, Target};
use crate::config::Thresholds;
use crate::config::alerting::Alerting;
use crate::config::reloadable::Reloadable;
use crate::leader::Leader;
use crate::store::Store;
use crate::store::alerts::{Alert, AlertFilter, Severity};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// How often open alerts are sent again, by default (`delivery.alertmanager_every`).
pub const RESEND: Duration = Duration::from_secs(30);
/// Resolved alerts are sent (ended) for this long after their resolution.
pub const RESOLVED_WINDOW: TimeDelta = TimeDelta::hours(1);
/// Most alerts read per period, open and resolved each.
const MAX_ALERTS: u32 = 10_000;

pub struct Sync {
    store: Arc<dyn Store>,
    alerting: Reloadable<Alerting>,
    thresholds: Reloadable<Thresholds>,
    client: reqwest::Client,
}

impl Sync {
    pub fn new(
        store: Arc<dyn Store>,
        alerting: Reloadable<Alerting>,
        thresholds: Reloadable<Thresholds>,
        timeout: Duration,
    ) -> Result<Sync, String> {
        let client = super::webhook::client(timeout)?;
        Ok(Sync {
            store,
            alerting,
            thresholds,
            client,
        })
    }

    pub async fn run(self, leader: Leader) {
        let mut tick = tokio::time::interval(self.alerting.get().delivery.alertmanager_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if leader.is_leader() {
                self.once(Utc::now()).await;
            }
        }
    }

    /// One period: every Alertmanager route gets what it hears.
    pub async fn once(&self, now: DateTime<Utc>) {
        let (alerting, thresholds) = (self.alerting.get(), self.thresholds.get());
        let is_alertmanager = |r: &&Route| matches!(r.target, Target::Alertmanager(_));
        if !alerting.routes.iter().any(|r| is_alertmanager(&r)) {
            return;
        }
        let open = self.store.alerts(AlertFilter::Open, MAX_ALERTS).await;
        let resolved = self.store.alerts(AlertFilter::Resolved, MAX_ALERTS).await;
        let (open, resolved) = match (open, resolved) {
            (Ok(o), Ok(r)) => (o, r),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "alertmanager: cannot read the alerts; trying again next period");
                return;
            }
        };
        let recent: Vec<&Alert> = resolved
            .iter()
            .filter(|a| {
                a.fields
                    .resolved_at
                    .is_some_and(|r| now - r <= RESOLVED_WINDOW)
            })
            .collect();
        for route in alerting.routes.iter().filter(is_alertmanager) {
            let Target::Alertmanager(url) = &route.target else {
                continue;
            };
            let items: Vec<Value> = open
                .iter()
                .chain(recent.iter().copied())
                .flat_map(|a| copies(a).map(move |level| (a, level)))
                .filter(|(a, level)| hears(&thresholds, route, a, *level))
                .map(|(a, level)| alert(&alerting, &thresholds, a, level, now))
                .collect();
            if items.is_empty() {
                continue;
            }
            let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            match self.client.post(&endpoint).json(&items).send().await {
                Ok(r) if r.status().is_success() => {
                    debug!(route = %route.name, alerts = items.len(), "alertmanager: sent");
                }
                Ok(r) => warn!(
                    route = %route.name,
                    status = %r.status(),
                    "alertmanager refused the alerts; sending again next period"
                ),
                Err(e) => warn!(
                    route = %route.name,
                    error = %backwatch_common::error::chain(&e.without_url()),
                    "alertmanager unreachable; sending again next period"
                ),
            }
        }
    }
}

/// The severities `a` is sent with: each up to its own.
fn copies(a: &Alert) -> impl Iterator<Item = Severity> {
    let own = a.fields.severity;
    [Severity::Warning, Severity::Critical]
        .into_iter()
        .filter(move |level| *level <= own)
}

/// `route` hears `a`'s copy of severity `level`.
fn hears(thresholds: &Thresholds, route: &Route, a: &Alert, level: Severity) -> bool {
    let f = &a.fields;
    let groups = thresholds.groups_of(&f.host);
    // A silenced notice stays withheld here too.
    !f.silenced && f.notified_severity.is_some() && route.hears(&f.host, &groups, &f.check, level)
}

fn alert(
    alerting: &Alerting,
    thresholds: &Thresholds,
    a: &Alert,
    level: Severity,
    now: DateTime<Utc>,
) -> Value {
    let f = &a.fields;
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    // Open: a few periods ahead, so one lost send does not end it; resolved: when it was.
    let every = alerting.delivery.alertmanager_every;
    let ends = f
        .resolved_at
        .unwrap_or(now + TimeDelta::from_std(every * 4).unwrap_or(TimeDelta::minutes(2)));
    let mut labels = json!({
        "alertname": "BackwatchCheck",
        "host": f.host,
        "check": f.check,
        "severity": level.as_str(),
    });
    let groups = thresholds.groups_of(&f.host);
    if !groups.is_empty() {
        labels["groups"] = Value::from(groups.join(","));
    }
    // Validated names, none of them one of the labels above (see `model::labels`).
    for (name, value) in thresholds.labels().of(&f.host) {
        labels[name.as_str()] = Value::from(value);
    }
    let dashboard = crate::alerts::render::host_url(&alerting.public_url, &f.host);
    let mut annotations = json!({
        "summary": f.summary,
        "procedure": alerting.procedure(&f.check),
        "dashboard": dashboard,
    });
    if let Some(m) = &a.acknowledged {
        annotations["acknowledged"] = Value::from(format!("by {} at {}", m.by, ts(m.at)));
    }
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": ts(f.opened_at),
        "endsAt": ts(ends),
        "generatorURL": dashboard,
    })
}
