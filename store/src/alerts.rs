//! What the store keeps for alerting: alerts and their events, silences, and the cursor the
//! alert engine holds over the transition log.
//!
//! Invariants every backend keeps (and `suite_alerts` proves for both):
//! - [`AlertStore::transitions_after`] hands out transitions in id order and never one whose
//!   writer could still commit a smaller id, so a cursor over ids skips nothing;
//! - [`AlertStore::write_alert`] commits the cursor move, the alert, its event and its
//!   notifications together, or nothing when the cursor or the alert's version moved since
//!   the engine read them (another engine got there first);
//! - at most one open alert exists per (host, check);
//! - acknowledgement and false-positive marks are set once and never overwritten.

use super::StoreResult;
use super::outbox::NewNotification;
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The pseudo-check of the agent itself: unknown while the host is silent (docs/checks.md
/// R28), ok when it talks. Its transitions are written by `set_host_silent_at`.
pub const AGENT_CHECK: &str = "agent.contact";

/// How loud an alert is; decides which routes hear about it. `Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!("{other:?} is not one of \"warning\", \"critical\"")),
        }
    }
}

/// A row of the transition log with its position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedTransition {
    pub id: i64,
    pub host: String,
    pub check: String,
    pub at: DateTime<Utc>,
    pub from: Option<Status>,
    pub to: Status,
    pub summary: String,
}

/// The part of an alert the engine owns and rewrites as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertFields {
    pub host: String,
    pub check: String,
    /// The check's latest status as the alert saw it (`ok` only while flapping keeps it open).
    pub status: Status,
    /// Severity of the latest not-ok status.
    pub severity: Severity,
    /// Highest severity during the incident.
    pub peak_severity: Severity,
    /// Highest severity anyone was notified of; `None` while every notice was withheld.
    pub notified_severity: Option<Severity>,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Time of the check's latest status change (flapping ends a window after it).
    pub last_change_at: DateTime<Utc>,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub flapping: bool,
    /// The latest notice was withheld by a silence.
    pub silenced: bool,
}

/// Who marked an alert, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    /// Bumped by every engine write; the engine's compare-and-set token.
    pub version: i64,
    #[serde(flatten)]
    pub fields: AlertFields,
    pub acknowledged: Option<Mark>,
    pub false_positive: Option<Mark>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    pub alert_id: i64,
    pub at: DateTime<Utc>,
    /// `opened`, `escalated`, `deescalated`, `changed`, `flapping`, `stable`, `reminder`,
    /// `notified`, `resolved`, `acknowledged`, `false_positive`.
    pub kind: String,
    pub status: Status,
    pub summary: String,
    /// Notifications were queued with this event.
    pub notified: bool,
    pub transition_id: Option<i64>,
}

/// An event the engine records with an alert change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    pub summary: String,
    pub transition_id: Option<i64>,
}

/// Builds the notifications of a change once the alert's id is known (a new alert gets its
/// id inside the writing transaction).
pub type RenderNotifications<'a> = &'a (dyn Fn(i64) -> Vec<NewNotification> + Send + Sync);

/// One atomic step of the engine.
pub struct AlertWrite<'a> {
    /// Move the alert cursor from `.0` to `.1`; the write fails when it is not at `.0`.
    pub cursor: Option<(i64, i64)>,
    /// `None`: insert a new alert; `Some((id, version))`: update that alert at that version.
    pub existing: Option<(i64, i64)>,
    pub fields: &'a AlertFields,
    pub event: NewEvent,
    pub notifications: RenderNotifications<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    Open,
    Resolved,
    All,
}

/// What became of an acknowledgement or false-positive mark.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkOutcome {
    Marked(Alert),
    /// Marked before; the alert with the earlier mark.
    AlreadyMarked(Alert),
    /// A false positive is judged after the fact: the alert is still open.
    StillOpen(Alert),
    NotFound,
}

/// A maintenance window. Every matcher given must match; at least one is given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    /// Host name or `*` pattern.
    pub host: Option<String>,
    /// Group from the collector's `[groups]`.
    pub group: Option<String>,
    /// Check id or `*` pattern (`wal.*`).
    pub check: Option<String>,
    pub created_by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Who ended it before its time.
    pub ended_by: Option<String>,
}

impl Silence {
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub host: Option<String>,
    pub group: Option<String>,
    pub check: Option<String>,
    pub created_by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait AlertStore: Send + Sync {
    /// Id of the last transition the alert engine has handled.
    async fn alert_cursor(&self) -> StoreResult<i64>;

    /// Move the cursor from `from` to `to` when nothing else changes; false when it was not
    /// at `from`.
    async fn advance_alert_cursor(&self, from: i64, to: i64) -> StoreResult<bool>;

    /// Transitions with an id above `after`, oldest first, at most `limit`; only ids below
    /// which no writer is still in flight (see the module invariants).
    async fn transitions_after(&self, after: i64, limit: u32)
    -> StoreResult<Vec<LoggedTransition>>;

    /// Times of the status changes of one check since `since`, up to transition `up_to`
    /// inclusive: the input of flapping detection, the same whenever it is asked.
    async fn change_times(
        &self,
        host: &str,
        check: &str,
        since: DateTime<Utc>,
        up_to: i64,
    ) -> StoreResult<Vec<DateTime<Utc>>>;

    async fn open_alerts(&self) -> StoreResult<Vec<Alert>>;

    /// Apply one engine step atomically. Returns the alert's id, or `None` when the cursor
    /// or the alert moved since they were read (nothing was written).
    async fn write_alert(&self, write: &AlertWrite<'_>) -> StoreResult<Option<i64>>;

    /// Newest first.
    async fn alerts(&self, filter: AlertFilter, limit: u32) -> StoreResult<Vec<Alert>>;

    async fn alert(&self, id: i64) -> StoreResult<Option<Alert>>;

    /// Oldest first.
    async fn alert_events(&self, alert_id: i64) -> StoreResult<Vec<AlertEvent>>;

    /// Acknowledge alert `id` once; `notices` (an on-call service told of the acknowledgement)
    /// are queued in the same transaction, and only when this call is the one that marks it.
    async fn acknowledge_alert(
        &self,
        id: i64,
        mark: &Mark,
        notices: &[super::outbox::NewNotification],
    ) -> StoreResult<MarkOutcome>;

    async fn mark_false_positive(&self, id: i64, mark: &Mark) -> StoreResult<MarkOutcome>;

    async fn add_silence(&self, silence: &NewSilence) -> StoreResult<Silence>;

    /// Silences not yet ended at `at` (active or upcoming), or every silence when `None`;
    /// ordered by id.
    async fn silences(&self, at: Option<DateTime<Utc>>) -> StoreResult<Vec<Silence>>;

    /// End a silence at `at` (an upcoming one never starts). `None` when there is no such
    /// silence; an already ended one is returned unchanged.
    async fn end_silence(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Silence>>;
}
