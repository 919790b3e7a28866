//! Fleet history behind one small trait, with two backends over sqlx.
//!
//! Invariants every backend keeps (and `suite` proves for both):
//! - results are stored idempotently by `result_id`: a replay changes nothing and reports
//!   "already stored";
//! - a result, the check's current state and a status transition are written in one
//!   transaction, so an acknowledged result never exists without its state;
//! - times are stored as Unix milliseconds (UTC), identical on SQLite and PostgreSQL;
//! - a change of a host's silent flag is a transition of the pseudo-check
//!   [`alerts::AGENT_CHECK`], so the alert engine reads agent silence from the same log.
//!
//! Alerting (alerts, silences, the outbox) has its own traits in `alerts` and `outbox`; every
//! store implements them too.

pub mod alerts;
pub mod enroll;
pub mod outbox;
pub mod reports;
mod sql;
// The contract suite: the store's own tests run it on SQLite, the end-to-end tests on a real
// PostgreSQL, and other crates' tests use its helpers; never built into a release binary.
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite_alerts;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite_dashboard;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite_enroll;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite_outbox;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite_reports;

pub use sql::{SqlStore, redact_url, redact_webhook};

use backwatch_proto::model::{Observation, ProbeKind, ProbeResult};
use backwatch_rules::status::{Status, Verdict};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How a check's summary starts while its host's agent is silent (set by the collector's
/// silence sweep, not by the agent): the agent's own next result, even of the same status, is
/// then a change of state, so that the alert engine judges it (the silence's unknown is not
/// alerted, the agent's may be).
pub const AGENT_SILENT_SUMMARY: &str = "agent silent since";

/// A check unknown only because its host's agent went silent (the sweep's, see
/// [`AGENT_SILENT_SUMMARY`]), not by a result of its own.
pub fn silence_unknown(status: Status, summary: &str) -> bool {
    status == Status::Unknown && summary.starts_with(AGENT_SILENT_SUMMARY)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening store {url_redacted}: {source}")]
    Open {
        url_redacted: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating store: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("store query {what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("store data {what}: {problem}")]
    Corrupt { what: &'static str, problem: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the agent said about itself when its stream opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostFacts {
    pub agent_version: String,
    pub hostname: String,
    pub os: String,
    pub instance_id: String,
    /// collector clock - agent clock at Hello, in milliseconds (positive: agent is behind).
    pub clock_skew_ms: i64,
    /// The agent's `[labels]`.
    pub labels: backwatch_proto::model::labels::Labels,
}

/// Where a result stands in its check's order (milliseconds): its measurement time, but never
/// later than its arrival. One result from an agent whose clock ran ahead must not make every
/// later (correct) result look older and freeze the check's state. The store orders a check's
/// state by it; ingest's cache of previous states follows the same rule.
pub fn ordered_at(result: &ProbeResult, received_at: DateTime<Utc>) -> i64 {
    result
        .measured_at
        .timestamp_millis()
        .min(received_at.timestamp_millis())
}

/// A result with the verdict the rules gave it, ready to store.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub result: ProbeResult,
    pub received_at: DateTime<Utc>,
    pub verdict: Verdict,
}

/// The current state of one check on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckState {
    pub host: String,
    pub check: String,
    pub status: Status,
    pub summary: String,
    /// When the check entered its current status.
    pub since: DateTime<Utc>,
    /// measured_at of the latest result (agent clock).
    pub observed_at: Option<DateTime<Utc>>,
    /// When the collector received the latest result (collector clock; used for silence).
    pub received_at: Option<DateTime<Utc>>,
    /// The agent's schedule for this check, seconds.
    pub interval_secs: u32,
    pub last_result_id: Option<String>,
    /// The latest result itself, for rules that compare with the previous observation.
    pub last_result: Option<ProbeResult>,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostRecord {
    pub host: String,
    pub first_seen: DateTime<Utc>,
    pub last_contact: DateTime<Utc>,
    pub silent: bool,
    pub facts: HostFacts,
}

/// A host taken out of the fleet: who did it, when and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetiredHost {
    pub host: String,
    pub retired_at: DateTime<Utc>,
    pub retired_by: String,
    pub reason: String,
}

/// What the silence sweep needs of a check: no results, no JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckClock {
    pub host: String,
    pub check: String,
    pub status: Status,
    pub summary: String,
    pub received_at: Option<DateTime<Utc>>,
    pub interval_secs: u32,
}

/// One stored result, as history shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub result_id: String,
    pub check: String,
    pub measured_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub status: Status,
    pub summary: String,
    pub error: Option<String>,
    pub observation: Option<Observation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub host: String,
    pub check: String,
    pub at: DateTime<Utc>,
    pub from: Option<Status>,
    pub to: Status,
    pub summary: String,
}

/// One host's part of a group commit: its new results (may be none) and the time it was last
/// heard from.
#[derive(Debug, Clone, Copy)]
pub struct HostWrite<'a> {
    pub host: &'a str,
    pub items: &'a [Evaluated],
    pub contact: DateTime<Utc>,
}

/// What a group commit did for one [`HostWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWritten {
    /// One entry per item, in order, as [`Store::record_results`] answers.
    pub inserted: Vec<Inserted>,
    /// Whether the host is marked silent (the caller clears it: it just spoke).
    pub silent: bool,
    /// Whether a result changed its check's status (a transition was recorded): the alert
    /// engine has something to do.
    pub changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

#[async_trait::async_trait]
pub trait Store:
    alerts::AlertStore
    + outbox::OutboxStore
    + enroll::EnrollStore
    + reports::ReportStore
    + Send
    + Sync
    + 'static
{
    /// Record that `host` is talking to us now; `facts` when it just said Hello. Returns
    /// whether the host is currently marked silent (the caller then clears it).
    async fn touch_host(
        &self,
        host: &str,
        at: DateTime<Utc>,
        facts: Option<&HostFacts>,
    ) -> StoreResult<bool>;

    /// Store evaluated results of one host in one transaction. For each new result the
    /// check's state is replaced and, when its status changed, a transition recorded with
    /// `received_at` as its time. Results whose id is already stored are left untouched.
    /// Returns one entry per input, in order.
    async fn record_results(&self, host: &str, items: &[Evaluated]) -> StoreResult<Vec<Inserted>>;

    /// Group commit: for every write, what [`Store::record_results`] and
    /// [`Store::touch_host`] do, all in one transaction (one disk flush for many agents).
    /// Writes are applied in the order given; callers sort them by host so that concurrent
    /// group commits (several collectors on one PostgreSQL) lock rows in the same order.
    /// All or nothing: on an error nothing of the group is stored.
    async fn record_group(&self, writes: &[HostWrite<'_>]) -> StoreResult<Vec<HostWritten>>;

    /// Set a check's status without a new result (silence, overdue): records the transition
    /// and returns true when the status changes; with the same status only the summary is
    /// refreshed; does nothing when the check does not exist, or when a result was received
    /// after `unless_received_after` (the caller judged a state that is already gone).
    async fn set_check_status(
        &self,
        host: &str,
        check: &str,
        status: Status,
        summary: &str,
        at: DateTime<Utc>,
        unless_received_after: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;

    /// Retire a check its agent no longer has (a probe removed from the configuration): the
    /// row leaves `check_state`, so the check leaves the host and is never overdue, and a
    /// transition to ok with `summary` is recorded when it was not ok, so its alert resolves.
    /// Its stored results stay until retention. Returns false when there is no such check.
    async fn retire_check(
        &self,
        host: &str,
        check: &str,
        summary: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Set the status of a pseudo-check the collector itself keeps for a host (no results, no
    /// `check_state` row: e.g. `agent.checks`, the host is over its check limit): records a
    /// transition from its last recorded status (ok when none) and returns true, or does
    /// nothing when that already is `status`, so repeating it raises one alert.
    async fn set_pseudo_check(
        &self,
        host: &str,
        check: &str,
        status: Status,
        summary: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Set the host's silent flag now; see [`Store::set_host_silent_at`].
    async fn set_host_silent(&self, host: &str, silent: bool) -> StoreResult<()> {
        self.set_host_silent_at(host, silent, Utc::now(), None)
            .await
            .map(|_| ())
    }

    /// Set the host's silent flag; when it changes, record a transition of
    /// [`alerts::AGENT_CHECK`] at `at` (to unknown when silent, to ok when back) and return
    /// true. With `quiet_since`, a host is marked silent only if its last contact is still at
    /// or before that time: contact that arrived while the sweep was deciding wins.
    async fn set_host_silent_at(
        &self,
        host: &str,
        silent: bool,
        at: DateTime<Utc>,
        quiet_since: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;

    /// Every host that ever reported, retired ones included (see [`Store::retired_hosts`]).
    async fn hosts(&self) -> StoreResult<Vec<HostRecord>>;

    /// Take a host out of the fleet (README, "Retire a host"); false when it already was.
    async fn retire_host(&self, r: &RetiredHost) -> StoreResult<bool>;

    /// Put a retired host back; false when it was not retired. Its checks start afresh (their
    /// states go; results and history stay), so a check still bad at its next result is
    /// alerted again.
    async fn unretire_host(&self, host: &str) -> StoreResult<bool>;

    /// The retired hosts, by name.
    async fn retired_hosts(&self) -> StoreResult<Vec<RetiredHost>>;

    /// `host`'s retirement, if it is retired (one keyed read: asked at every stream open).
    async fn retired_host(&self, host: &str) -> StoreResult<Option<RetiredHost>>;

    /// The names of the retired hosts: what fleet views, reports and the silence sweep leave
    /// out.
    async fn retired_set(&self) -> StoreResult<std::collections::HashSet<String>> {
        Ok(self
            .retired_hosts()
            .await?
            .into_iter()
            .map(|r| r.host)
            .collect())
    }

    async fn host(&self, host: &str) -> StoreResult<Option<HostRecord>>;

    /// Current state of every check of `host` (all hosts when `None`), ordered by host, check.
    async fn check_states(&self, host: Option<&str>) -> StoreResult<Vec<CheckState>>;

    async fn check_state(&self, host: &str, check: &str) -> StoreResult<Option<CheckState>>;

    /// Current state of every check of one kind (id `<kind>.<name>`, e.g. every `drill.*`)
    /// of every host, ordered by host, check: a fleet-wide look-up without reading the rest.
    async fn check_states_of_kind(&self, kind: ProbeKind) -> StoreResult<Vec<CheckState>>;

    /// Status and timing of every check of every host, ordered by host, check: one query
    /// for the silence sweep however large the fleet.
    async fn check_clocks(&self) -> StoreResult<Vec<CheckClock>>;

    /// Results of `host` measured at or after `since`, oldest first, at most `limit`;
    /// only of `check` when given.
    async fn history(
        &self,
        host: &str,
        check: Option<&str>,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<HistoryEntry>>;

    /// Delete the results of `host` measured before `before` (retention); returns how many.
    /// Check states and transitions are kept: they are small and what history is read from
    /// once the raw results are gone (hourly rollups and finished notifications have their
    /// own prune: `ReportStore::prune_rollups`, `OutboxStore::prune_notifications`).
    async fn prune_results(&self, host: &str, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Status transitions of `host` at or after `since`, oldest first.
    async fn transitions(&self, host: &str, since: DateTime<Utc>) -> StoreResult<Vec<Transition>>;

    /// Ids of the newest status transition and of the newest alert event. They grow whenever
    /// a check's status, a host's silence or an alert (including its marks) changes, and cost
    /// two index lookups: the dashboard's live updates poll them every second.
    async fn change_marks(&self) -> StoreResult<(i64, i64)>;

    /// The last result of each UTC day of every check of `kind` (`disk.*`), over all hosts,
    /// measured at or after `since`; ordered by host, check, time. The input of the fleet
    /// trends.
    async fn daily_last_results(
        &self,
        kind: ProbeKind,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, HistoryEntry)>>;
}
