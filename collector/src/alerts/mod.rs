//! The alert engine: turns the transition log into alerts and queued notifications.
//!
//! Invariants:
//! - transitions are consumed in id order from a cursor kept in the database; each change
//!   commits together with the cursor move, its event and its outbox rows
//!   (`AlertStore::write_alert`), so a crash or restart neither skips nor repeats a
//!   transition, and nothing decided is ever lost before delivery;
//! - every write is a compare-and-set on the cursor and the alert's version: a second engine
//!   (another collector on the same PostgreSQL) that loses the race rereads and goes on;
//! - decisions are made only by the pure functions in [`lifecycle`]; this module gathers
//!   their inputs (open alerts, silences, recent changes, routes) and stores their outputs;
//! - notification texts are rendered once, when queued ([`render`]), so retries resend the
//!   same message.

pub mod lifecycle;
pub mod render;
pub mod routes;
#[cfg(test)]
mod tests;

use crate::config::Thresholds;
use crate::config::alerting::Alerting;
use crate::config::glob_match;
use crate::config::reloadable::Reloadable;
use crate::status::Status;
use crate::store::Store;
use crate::store::StoreResult;
use crate::store::alerts::{AGENT_CHECK, Alert, AlertFields, AlertWrite, NewEvent, Silence};
use crate::store::outbox::{Channel, NewNotification};
use backwatch_proto::model::{Observation, ProbeKind};
use chrono::{DateTime, Utc};
use lifecycle::{Change, Effect, Outcome};
use routes::Target;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Transitions read per round trip.
const BATCH: u32 = 200;

/// Response procedure of the agent's own alert (not a check rule, so not in `rules`).
pub const AGENT_PROCEDURE: &str = "Check that the host is up and reachable; check the \
    backwatch-agent service and its log (systemctl status backwatch-agent); check the network \
    path and the agent's certificate to the collector.";

pub struct Engine {
    store: Arc<dyn Store>,
    cfg: Reloadable<Alerting>,
    thresholds: Reloadable<Thresholds>,
    /// Wakes the delivery worker when something was queued.
    queued: Arc<Notify>,
    /// When every backup set was last looked at for a bad one without an alert.
    sets_swept: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// How often every backup set is looked at for a bad one without an alert (see
/// `carry_on_sets`), besides right after one of their alerts was resolved.
const SETS_SWEEP_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What one [`Engine::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub transitions: usize,
    pub writes: usize,
    pub notifications: usize,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: Reloadable<Alerting>,
        thresholds: Reloadable<Thresholds>,
        queued: Arc<Notify>,
    ) -> Self {
        Engine {
            store,
            cfg,
            thresholds,
            queued,
            sets_swept: std::sync::Mutex::new(None),
        }
    }

    /// Run [`Engine::step`] every `alerts.evaluate_every`, and at once when this collector's
    /// ingest recorded a status change (`changed`), until the process ends. Only while
    /// `leader` says so: with several collectors on one store, one evaluates, and changes
    /// ingested by the others wait for its next tick.
    pub async fn run(self, leader: crate::leader::Leader, changed: Arc<Notify>) {
        let mut tick = tokio::time::interval(self.cfg.get().evaluate_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed.notified() => {}
            }
            if !leader.is_leader() {
                continue;
            }
            if let Err(e) = self.step(Utc::now()).await {
                error!(error = %e, "alert evaluation failed; retrying next round");
            }
        }
    }

    /// Consume every new transition, then apply what time alone changes (reminders, end of
    /// flapping, notices a silence held back).
    pub async fn step(&self, now: DateTime<Utc>) -> StoreResult<Step> {
        let mut step = Step::default();
        let mut sets_closed = HashSet::new();
        self.consume(now, &mut step, &mut sets_closed).await?;
        self.tick(now, &mut step, &mut sets_closed).await?;
        // Also every few minutes, whatever closed: a carry-on lost to a crash, a store error
        // or a change of leader between the resolution and the carry-on is made up then.
        if self.sets_sweep_due(now) {
            sets_closed.extend([ProbeKind::PgBackRest, ProbeKind::Barman]);
        }
        for kind in sets_closed {
            self.carry_on_sets(kind, now, &mut step).await?;
        }
        if step.notifications > 0 {
            self.queued.notify_one();
        }
        Ok(step)
    }

    /// `sets_closed` collects the backup tool kinds whose alerts were resolved.
    async fn consume(
        &self,
        now: DateTime<Utc>,
        step: &mut Step,
        sets_closed: &mut HashSet<ProbeKind>,
    ) -> StoreResult<()> {
        let cfg = self.cfg.get();
        let p = &cfg.policy;
        loop {
            let cursor = self.store.alert_cursor().await?;
            let batch = self.store.transitions_after(cursor, BATCH).await?;
            let Some(last) = batch.last().map(|t| t.id) else {
                return Ok(());
            };
            let mut open: HashMap<(String, String), Alert> = self
                .store
                .open_alerts()
                .await?
                .into_iter()
                .map(|a| ((a.fields.host.clone(), a.fields.check.clone()), a))
                .collect();
            let silences = self.active_silences(now).await?;
            // A retired host's last results (a stream cut only at its next standing check)
            // open nothing: its alerts are being closed.
            let retired = self.store.retired_set().await?;
            let mut at = cursor;
            let mut conflict = false;
            for t in &batch {
                step.transitions += 1;
                if retired.contains(&t.host) {
                    continue;
                }
                let mut key = (t.host.clone(), t.check.clone());
                let host_silent = agent_silent(&open, &t.host);
                let effect = lifecycle::effect(&t.check, t.to, host_silent, p);
                // One backup set reported by several hosts (the nodes of an HA pair probing
                // one stanza, or a backup server beside them) is one alert: a peer's open
                // alert carries a second host's bad news, and it resolves only when no host
                // reporting the set is bad any more.
                if effect != Effect::Ignore
                    && let Some(peers) = self.backup_set_peers(&t.host, &t.check, &retired).await?
                {
                    if !open.contains_key(&key)
                        && let Some((k, _)) = peers.iter().find(|(k, _)| open.contains_key(k))
                    {
                        key = k.clone();
                    }
                    let peer_bad = peers
                        .iter()
                        .any(|(_, st)| matches!(st, Status::Warning | Status::Critical));
                    if effect == Effect::Good && peer_bad && open.contains_key(&key) {
                        continue;
                    }
                }
                let existing = open.get(&key);
                if effect == Effect::Ignore || (existing.is_none() && effect == Effect::Good) {
                    // Nothing to record: the cursor passes it with the next write.
                    continue;
                }
                let recent_changes = if p.flap_changes > 0 {
                    let since = t.at - p.flap_window_delta();
                    self.store
                        .change_times(&t.host, &t.check, since, t.id)
                        .await?
                        .len()
                } else {
                    0
                };
                let change = Change {
                    host: &t.host,
                    check: &t.check,
                    status: t.to,
                    effect,
                    summary: &t.summary,
                    at: t.at,
                    recent_changes: u32::try_from(recent_changes).unwrap_or(u32::MAX),
                    silenced: self.silenced(&silences, &t.host, &t.check),
                };
                let Some(outcome) = lifecycle::on_change(existing.map(|a| &a.fields), &change, p)
                else {
                    continue;
                };
                let target = existing.map(|a| (a.id, a.version));
                match self
                    .write(Some((at, t.id)), target, &outcome, now, Some(t.id), step)
                    .await?
                {
                    Some(id) => {
                        at = t.id;
                        if outcome.fields.resolved_at.is_some()
                            && let Some(kind) = backup_tool(&t.check)
                        {
                            sets_closed.insert(kind);
                        }
                        let before = existing.cloned();
                        remember(&mut open, key, before, id, outcome.fields);
                    }
                    None => {
                        conflict = true;
                        break;
                    }
                }
            }
            if conflict {
                warn!("another alert engine moved first; rereading");
                continue;
            }
            if last > at {
                self.store.advance_alert_cursor(at, last).await?;
            }
        }
    }

    async fn tick(
        &self,
        now: DateTime<Utc>,
        step: &mut Step,
        sets_closed: &mut HashSet<ProbeKind>,
    ) -> StoreResult<()> {
        let silences = self.active_silences(now).await?;
        let retired: HashMap<String, crate::store::RetiredHost> = self
            .store
            .retired_hosts()
            .await?
            .into_iter()
            .map(|r| (r.host.clone(), r))
            .collect();
        for a in self.store.open_alerts().await? {
            let f = &a.fields;
            if let Some(r) = retired.get(&f.host) {
                let o = lifecycle::on_retired(f, &r.retired_by, &r.reason, now);
                self.write(None, Some((a.id, a.version)), &o, now, None, step)
                    .await?;
                sets_closed.extend(backup_tool(&f.check));
                continue;
            }
            let silenced = self.silenced(&silences, &f.host, &f.check);
            let acked = a.acknowledged.is_some();
            if let Some(o) = lifecycle::on_tick(f, acked, now, silenced, &self.cfg.get().policy) {
                // A conflict means someone else just handled it; the next round rereads.
                self.write(None, Some((a.id, a.version)), &o, now, None, step)
                    .await?;
            }
        }
        Ok(())
    }

    /// Other live hosts' checks reporting the same backup sets as `host`'s `check` (a backup
    /// tool's check with the same
    /// [`set_identity`](backwatch_proto::model::BackupToolObs::set_identity)), with their
    /// current status; `None` for any other check, or sets whose cluster the tool did not
    /// name. A retired host is no peer: its last word is stale, and its alerts are closing.
    async fn backup_set_peers(
        &self,
        host: &str,
        check: &str,
        retired: &HashSet<String>,
    ) -> StoreResult<Option<Vec<((String, String), Status)>>> {
        let Some(kind) = backup_tool(check) else {
            return Ok(None);
        };
        let mut states = self.store.check_states_of_kind(kind).await?;
        states.retain(|s| !retired.contains(&s.host));
        let Some(mine) = states
            .iter()
            .find(|s| s.host == host && s.check == check)
            .and_then(identity)
        else {
            return Ok(None);
        };
        Ok(Some(
            states
                .iter()
                .filter(|s| s.host != host || s.check != check)
                .filter(|s| identity(s).as_deref() == Some(mine.as_str()))
                .map(|s| ((s.host.clone(), s.check.clone()), s.status))
                .collect(),
        ))
    }

    /// Whether the periodic backup set sweep is due; if so, it counts as done from `now`.
    fn sets_sweep_due(&self, now: DateTime<Utc>) -> bool {
        let mut last = self.sets_swept.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| now - t >= SETS_SWEEP_EVERY || now < t);
        if due {
            *last = Some(now);
        }
        due
    }

    /// After an alert of `kind` was resolved: every backup set still bad on a live host but
    /// with no open alert on any host reporting it gets one, opened on the first such host as
    /// its own change. The set's alert lives on one host's check (the first to go bad); when
    /// that host or check is retired, its alert is resolved with it, and a peer that has been
    /// bad all along sends no new transition that would open another.
    async fn carry_on_sets(
        &self,
        kind: ProbeKind,
        now: DateTime<Utc>,
        step: &mut Step,
    ) -> StoreResult<()> {
        let p = &self.cfg.get().policy;
        let retired = self.store.retired_set().await?;
        let open: HashMap<(String, String), Alert> = self
            .store
            .open_alerts()
            .await?
            .into_iter()
            .map(|a| ((a.fields.host.clone(), a.fields.check.clone()), a))
            .collect();
        let mut states = self.store.check_states_of_kind(kind).await?;
        states.retain(|s| !retired.contains(&s.host));
        states.sort_by(|a, b| (&a.host, &a.check).cmp(&(&b.host, &b.check)));
        let mut sets: BTreeMap<String, Vec<&crate::store::CheckState>> = BTreeMap::new();
        for s in &states {
            if let Some(id) = identity(s) {
                sets.entry(id).or_default().push(s);
            }
        }
        let silences = self.active_silences(now).await?;
        for members in sets.values() {
            let has_alert = members
                .iter()
                .any(|s| open.contains_key(&(s.host.clone(), s.check.clone())));
            // The worst of them: the alert's audience is its severity.
            let bad = [Status::Critical, Status::Warning]
                .iter()
                .find_map(|worst| members.iter().find(|s| s.status == *worst));
            let (false, Some(bad)) = (has_alert, bad) else {
                continue;
            };
            let host_silent = agent_silent(&open, &bad.host);
            let change = Change {
                host: &bad.host,
                check: &bad.check,
                status: bad.status,
                effect: lifecycle::effect(&bad.check, bad.status, host_silent, p),
                summary: &bad.summary,
                at: now,
                recent_changes: 0,
                silenced: self.silenced(&silences, &bad.host, &bad.check),
            };
            if let Some(o) = lifecycle::on_change(None, &change, p) {
                info!(host = %bad.host, check = %bad.check,
                    "backup set still bad after its alert's host or check was retired: alert carried on here");
                self.write(None, None, &o, now, None, step).await?;
            }
        }
        Ok(())
    }

    /// Silences in force now: the stored ones and the maintenance windows open now.
    async fn active_silences(&self, now: DateTime<Utc>) -> StoreResult<Vec<Silence>> {
        let mut all = self.store.silences(Some(now)).await?;
        all.retain(|s| s.active_at(now));
        all.extend(
            self.cfg
                .get()
                .maintenance
                .iter()
                .flat_map(|w| w.silences_at(now)),
        );
        Ok(all)
    }

    fn silenced(&self, silences: &[Silence], host: &str, check: &str) -> bool {
        let thresholds = self.thresholds.get();
        let groups = thresholds.groups_of(host);
        silences.iter().any(|s| {
            s.host.as_deref().is_none_or(|p| glob_match(p, host))
                && s.group.as_deref().is_none_or(|g| groups.contains(&g))
                && s.check.as_deref().is_none_or(|p| glob_match(p, check))
        })
    }

    /// Operators' text for the check (by id, then by kind), else the built-in one.
    pub fn procedure(&self, check: &str) -> String {
        self.cfg.get().procedure(check)
    }
}

/// Whether `host`'s agent is silent: its own alert (`agent.contact`) is open and not ok; its
/// checks' unknowns are then the silence's, not their own news.
fn agent_silent(open: &HashMap<(String, String), Alert>, host: &str) -> bool {
    open.get(&(host.to_string(), AGENT_CHECK.to_string()))
        .is_some_and(|a| a.fields.status != Status::Ok)
}

/// The backup tool kind of `check` (whose sets several hosts may report), if it is one.
fn backup_tool(check: &str) -> Option<ProbeKind> {
    match ProbeKind::of_check(check)? {
        kind @ (ProbeKind::PgBackRest | ProbeKind::Barman) => Some(kind),
        _ => None,
    }
}

/// The backup set a tool check's last result reports, when the tool named its cluster.
fn identity(st: &crate::store::CheckState) -> Option<String> {
    match st.last_result.as_ref()?.observation.as_ref()? {
        Observation::PgBackRest(o) | Observation::Barman(o) => o.set_identity(),
        _ => None,
    }
}

/// What acknowledging `alert` in Backwatch tells the on-call services: PagerDuty's
/// `acknowledge` under the alert's dedup key, for each PagerDuty route that was told of the
/// open alert (it heard the severity last notified; a silenced alert told no one). Other
/// channels get nothing: an acknowledgement is a mark in Backwatch, not a notice.
pub fn acknowledgement_notices(
    cfg: &Alerting,
    thresholds: &Thresholds,
    alert: &crate::store::alerts::Alert,
    by: &str,
    now: DateTime<Utc>,
) -> Vec<NewNotification> {
    let f = &alert.fields;
    let Some(told) = f
        .notified_severity
        .filter(|_| f.resolved_at.is_none() && !f.silenced)
    else {
        return Vec::new();
    };
    let groups = thresholds.groups_of(&f.host);
    cfg.routes
        .iter()
        .filter(|r| r.hears(&f.host, &groups, &f.check, told))
        .filter_map(|r| match &r.target {
            Target::PagerDuty { routing_key, url } => Some(NewNotification {
                kind: "acknowledged".into(),
                route: r.name.clone(),
                channel: Channel::Webhook,
                recipient: url.clone(),
                subject: format!("[ACKNOWLEDGED] {} {} by {by}", f.host, f.check),
                body_text: String::new(),
                body_html: String::new(),
                payload: render::pagerduty_acknowledge(alert.id, routing_key),
                message_id: format!("<{}@{}>", uuid::Uuid::new_v4(), cfg.message_domain),
                thread_id: None,
                created_at: now,
            }),
            _ => None,
        })
        .collect()
}

impl crate::config::alerting::Alerting {
    /// The response procedure of `check`: the operators' `[procedures]` text (by check id,
    /// then by kind), else the built-in one; what alerts carry and the host page shows.
    pub fn procedure(&self, check: &str) -> String {
        let kind = check.split('.').next().unwrap_or(check);
        if let Some(text) = self
            .procedures
            .get(check)
            .or_else(|| self.procedures.get(kind))
        {
            return text.clone();
        }
        if check == AGENT_CHECK {
            return AGENT_PROCEDURE.to_string();
        }
        backwatch_proto::model::ProbeKind::from_name(kind)
            .map_or("", crate::rules::procedure::of)
            .to_string()
    }
}

impl Engine {
    async fn write(
        &self,
        cursor: Option<(i64, i64)>,
        existing: Option<(i64, i64)>,
        o: &Outcome,
        now: DateTime<Utc>,
        transition_id: Option<i64>,
        step: &mut Step,
    ) -> StoreResult<Option<i64>> {
        let f = &o.fields;
        let details = match (&o.notice, f.check.as_str()) {
            (None, _) | (_, AGENT_CHECK) => serde_json::Value::Null,
            _ => self
                .store
                .check_state(&f.host, &f.check)
                .await?
                .map_or(serde_json::Value::Null, |s| s.details),
        };
        let procedure = self.procedure(&f.check);
        let render = |id: i64| self.notifications(id, o, &details, &procedure, now);
        let write = AlertWrite {
            cursor,
            existing,
            fields: f,
            event: NewEvent {
                at: if transition_id.is_some() {
                    f.updated_at
                } else {
                    now
                },
                kind: o.event,
                summary: o.summary.clone(),
                transition_id,
            },
            notifications: &render,
        };
        let Some(id) = self.store.write_alert(&write).await? else {
            return Ok(None);
        };
        let sent = self.audience_size(o);
        step.writes += 1;
        step.notifications += sent;
        info!(host = %f.host, check = %f.check, alert = id, event = o.event,
            status = %f.status, notifications = sent, silenced = f.silenced, "alert {}", o.event);
        Ok(Some(id))
    }

    /// How many messages [`Engine::notifications`] makes for this outcome.
    fn audience_size(&self, o: &Outcome) -> usize {
        let Some(notice) = o.notice else {
            return 0;
        };
        let f = &o.fields;
        let thresholds = self.thresholds.get();
        let groups = thresholds.groups_of(&f.host);
        self.cfg
            .get()
            .routes
            .iter()
            .filter(|r| r.hears(&f.host, &groups, &f.check, notice.audience))
            .map(|r| r.recipients().len())
            .sum()
    }

    /// One message per route that hears the notice and per recipient of that route.
    fn notifications(
        &self,
        alert_id: i64,
        o: &Outcome,
        details: &serde_json::Value,
        procedure: &str,
        now: DateTime<Utc>,
    ) -> Vec<NewNotification> {
        let Some(notice) = o.notice else {
            return Vec::new();
        };
        let f = &o.fields;
        let thresholds = self.thresholds.get();
        let groups = thresholds.groups_of(&f.host);
        let cfg = self.cfg.get();
        let host_url = render::host_url(&cfg.public_url, &f.host);
        let thread_id = format!(
            "<alert-{alert_id}-{}@{}>",
            f.opened_at.timestamp_millis(),
            cfg.message_domain
        );
        let mut out = Vec::new();
        for route in &cfg.routes {
            if !route.hears(&f.host, &groups, &f.check, notice.audience) {
                continue;
            }
            let ctx = render::Context {
                alert_id,
                alert: f,
                kind: notice.kind,
                event_summary: &o.summary,
                details,
                procedure,
                host_url: &host_url,
                api_url: &cfg.api_url,
                route: &route.name,
                now,
            };
            let rendered = render::render(&ctx);
            for (channel, recipient) in route.recipients() {
                // Fixed here, stored with the row, reused by every retry.
                let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), cfg.message_domain);
                let payload = match (&route.target, channel) {
                    (_, Channel::Email) => String::new(),
                    (Target::Slack(_), _) => render::slack_payload(&ctx, &rendered),
                    (Target::PagerDuty { routing_key, .. }, _) => {
                        render::pagerduty_payload(&ctx, &rendered, routing_key, &groups)
                    }
                    _ => render::webhook_payload(&ctx, &rendered, &message_id),
                };
                out.push(NewNotification {
                    kind: notice.kind.as_str().to_string(),
                    route: route.name.clone(),
                    channel,
                    recipient: recipient.to_string(),
                    subject: rendered.subject.clone(),
                    body_text: rendered.text.clone(),
                    body_html: match channel {
                        Channel::Email => rendered.html.clone(),
                        Channel::Webhook => String::new(),
                    },
                    payload,
                    message_id,
                    thread_id: Some(thread_id.clone()),
                    created_at: now,
                });
            }
        }
        out
    }
}

/// Keep the engine's view of open alerts in step with what it just wrote.
fn remember(
    open: &mut HashMap<(String, String), Alert>,
    key: (String, String),
    before: Option<Alert>,
    id: i64,
    fields: AlertFields,
) {
    if fields.resolved_at.is_some() {
        open.remove(&key);
        return;
    }
    let (version, acknowledged) = before.map_or((0, None), |a| (a.version + 1, a.acknowledged));
    open.insert(
        key,
        Alert {
            id,
            version,
            fields,
            acknowledged,
            false_positive: None,
        },
    );
}
