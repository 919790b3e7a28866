//! The notification outbox: every message to every recipient, stored before anyone sends it.
//!
//! Invariants every backend keeps (and `suite_alerts` proves for both):
//! - a row is claimed by one worker at a time: a claim takes `pending` rows that are due and
//!   `sending` rows whose lease ran out, and on PostgreSQL skips rows another claim holds
//!   (`FOR UPDATE SKIP LOCKED`), so several collectors can share one outbox;
//! - every later step (`renew`, `handed_over`, `sent`, `failed attempt`) names the worker and
//!   does nothing unless that worker still holds the claim;
//! - `message_id` is fixed when the row is written and never changes, whatever the retries;
//! - `handed_over_at` is set before the body goes to the server and cleared only by a
//!   definite answer; a claim that finds it set knows the previous attempt is in doubt.

use super::StoreResult;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "email" => Ok(Channel::Email),
            "webhook" => Ok(Channel::Webhook),
            other => Err(format!("{other:?} is not one of \"email\", \"webhook\"")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting for its first attempt or its next retry.
    Pending,
    /// Claimed by a worker (or left so by one that died, until its lease runs out).
    Sending,
    Sent,
    /// Given up: a permanent refusal, or retries exhausted.
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(OutboxState::Pending),
            "sending" => Ok(OutboxState::Sending),
            "sent" => Ok(OutboxState::Sent),
            "failed" => Ok(OutboxState::Failed),
            other => Err(format!(
                "{other:?} is not one of \"pending\", \"sending\", \"sent\", \"failed\""
            )),
        }
    }
}

/// A message to one recipient, rendered completely before it is stored, so a retry sends
/// exactly what was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// `opened`, `escalated`, `reminder`, `flapping`, `stable`, `resolved`, `notified` or
    /// (later) `summary`.
    pub kind: String,
    pub route: String,
    pub channel: Channel,
    /// Email address, or the webhook URL.
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    /// The JSON document of a webhook; empty for email.
    pub payload: String,
    /// `<…@…>`, unique per row.
    pub message_id: String,
    /// Groups every message of one alert in a mail client (`References`).
    pub thread_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub alert_id: Option<i64>,
    pub event_id: Option<i64>,
    pub kind: String,
    pub route: String,
    pub channel: Channel,
    /// Shown redacted when it is a webhook URL (the credential is in its path or query).
    #[serde(serialize_with = "shown_recipient")]
    pub recipient: String,
    pub subject: String,
    #[serde(skip)]
    pub body_text: String,
    #[serde(skip)]
    pub body_html: String,
    #[serde(skip)]
    pub payload: String,
    pub message_id: String,
    pub thread_id: Option<String>,
    pub state: OutboxState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub handed_over_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The server's answer (or the connection problem) of the latest failed attempt.
    pub last_error: Option<String>,
    /// Inline parts (a report's charts): JSON array of
    /// [`Attachment`](super::reports::Attachment); `None` for plain messages.
    #[serde(skip)]
    pub attachments: Option<String>,
}

/// Where a notification goes out: the SMTP relay (every email goes through it), or one
/// webhook URL. A worker delivers to one destination at a time and to several at once, so
/// one that hangs until its timeout holds back only its own messages.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Smtp,
    Webhook(String),
}

/// Without the URL: it holds the webhook's credential.
impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Smtp => f.write_str("Smtp"),
            Destination::Webhook(url) => write!(f, "Webhook({})", super::redact_webhook(url)),
        }
    }
}

impl Notification {
    pub fn destination(&self) -> Destination {
        match self.channel {
            Channel::Email => Destination::Smtp,
            Channel::Webhook => Destination::Webhook(self.recipient.clone()),
        }
    }

    /// The recipient as logs and the API may show it: an email address as is, a webhook URL
    /// without its path and query.
    pub fn recipient_shown(&self) -> std::borrow::Cow<'_, str> {
        shown(self.channel, &self.recipient)
    }
}

fn shown(channel: Channel, recipient: &str) -> std::borrow::Cow<'_, str> {
    match channel {
        Channel::Email => recipient.into(),
        Channel::Webhook => super::redact_webhook(recipient).into(),
    }
}

/// Serialises a recipient; anything URL-shaped is a webhook's and is redacted, so no answer
/// of the API can carry one whole (the serializer does not see the channel).
fn shown_recipient<S: serde::Serializer>(recipient: &str, s: S) -> Result<S::Ok, S::Error> {
    let channel = if recipient.contains("://") {
        Channel::Webhook
    } else {
        Channel::Email
    };
    s.serialize_str(&shown(channel, recipient))
}

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queue messages that belong to no alert (the daily summary), in one transaction.
    async fn enqueue_notifications(&self, items: &[NewNotification]) -> StoreResult<()>;

    /// Claim up to `limit` due rows for `worker` until `lease_until`, oldest first, none of
    /// them going to a destination in `busy`; counts an attempt on each.
    async fn claim_notifications(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        busy: &[Destination],
    ) -> StoreResult<Vec<Notification>>;

    /// Put every claim of `worker` back to pending now: it is starting, so they are left from
    /// its previous life. Returns how many.
    async fn release_claims(&self, worker: &str, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Extend the claim; false when the worker lost it.
    async fn renew_claim(
        &self,
        id: i64,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Record that the body is about to go to the server; false when the claim is lost.
    async fn mark_handed_over(&self, id: i64, worker: &str, at: DateTime<Utc>)
    -> StoreResult<bool>;

    async fn mark_sent(&self, id: i64, worker: &str, at: DateTime<Utc>) -> StoreResult<bool>;

    /// Record a failed attempt: back to pending until `retry_at`, or failed for good when
    /// `None`. `in_doubt` keeps `handed_over_at` (no definite answer after the hand-over).
    async fn mark_attempt_failed(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        in_doubt: bool,
    ) -> StoreResult<bool>;

    /// Delete the notifications created before `before` that are finished (`sent`, or
    /// `failed`: given up), with their bodies and inline parts (retention). Pending and
    /// sending ones stay, however old: they are still to be delivered. Returns how many went.
    async fn prune_notifications(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// How many notifications are in each state (states with none left out): the delivery
    /// backlog and the given-up count for `/metrics`.
    async fn outbox_counts(&self) -> StoreResult<Vec<(OutboxState, i64)>>;

    /// Newest first; only rows in `state` when given; only of `alert_id` when given.
    async fn notifications(
        &self,
        state: Option<OutboxState>,
        alert_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Notification>>;
}
