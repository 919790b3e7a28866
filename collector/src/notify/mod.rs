//! The delivery worker: sends what the alert engine queued in the outbox.
//!
//! Guarantee (README "Delivery guarantees"): every queued notification is delivered at least
//! once, and at most once except in one window. A row is claimed (state `sending`, a lease,
//! this worker's id) before anything goes out; the claim is renewed before each attempt and
//! every later step is conditional on still holding it. Just before the message body goes to
//! the server, the row is marked handed over. So:
//! - crash before the hand-over mark: the server never got a complete message; the row is
//!   sent again (at the next start of this worker, which releases its old claims, or by any
//!   worker once the lease ran out) and arrives once;
//! - crash after the server accepted the message and before the row was marked sent: the
//!   message is sent again, with the same Message-ID (and webhook `Idempotency-Key`), and the
//!   log says a duplicate is possible. SMTP has no way to ask a server "did you take this?";
//!   this window is the round trip of the final dot plus one database write;
//! - a definite refusal (4xx) is retried with exponential backoff and jitter, a permanent
//!   one of the message (5xx, a broken address) fails at once; a refusal of the session or
//!   endpoint (SMTP connect/TLS/login, HTTP 401/403/404) refuses every message alike and is
//!   retried; after `give_up_after` the row fails too. The
//!   server's answer is kept on the row for the API and logged.
//!
//! Destinations (the SMTP relay, each webhook URL) are independent: each gets its rows one at a
//! time in a task of its own and no new claims while that runs, so one that hangs until its
//! timeout delays nothing of another's.

pub mod alertmanager;
pub mod email;
pub mod webhook;

use crate::config::alerting::{Alerting, Delivery};
use crate::config::reloadable::Reloadable;
use crate::store::outbox::{Channel, Destination, Notification};
use crate::store::{Store, StoreResult};
use chrono::{DateTime, TimeDelta, Utc};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{self, JoinSet};
use tracing::{error, info, warn};

/// Rows claimed per round trip; each is renewed before its attempt.
const CLAIM_BATCH: u32 = 16;

/// A destination's task ended: it is free for new claims.
fn finished(
    done: Result<(task::Id, ()), task::JoinError>,
    busy: &mut HashMap<task::Id, Destination>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            error!(error = %e, "a delivery task failed; its claims wait for their lease");
            e.id()
        }
    };
    busy.remove(&id);
}

/// `rows` grouped by destination, each group in the order given, groups in order of their
/// first row.
fn by_destination(rows: Vec<Notification>) -> Vec<(Destination, Vec<Notification>)> {
    let mut groups: Vec<(Destination, Vec<Notification>)> = Vec::new();
    for n in rows {
        let d = n.destination();
        match groups.iter_mut().find(|(g, _)| *g == d) {
            Some((_, group)) => group.push(n),
            None => groups.push((d, vec![n])),
        }
    }
    groups
}

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The server's answer or the connection problem, for the outbox and the log.
    pub text: String,
    /// Asking again will not help.
    pub permanent: bool,
    /// The message may have been accepted although no answer said so.
    pub in_doubt: bool,
    /// The destination did not answer (no connection, no answer in time) or refused the
    /// session: its next message would fare the same, after as long a wait.
    pub unreachable: bool,
}

/// Exponential backoff: `initial · 2^(attempts − 1)`, at most `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

/// When to try again after attempt number `attempts` failed, or `None` to give up.
/// `jitter` in [0, 1) spreads retries by up to a tenth of the delay.
pub fn next_attempt(
    attempts: u32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    d: &Delivery,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let give_up = TimeDelta::from_std(d.give_up_after).unwrap_or(TimeDelta::MAX);
    if now - created_at >= give_up {
        return None;
    }
    let delay = backoff(attempts, d.retry_initial, d.retry_max);
    let delay = delay + delay.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
    Some(now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX))
}

pub struct Worker {
    store: Arc<dyn Store>,
    cfg: Reloadable<Alerting>,
    /// `delivery.worker_id` as at start: it names this worker's claims, so it does not change
    /// with a reload.
    worker_id: String,
    /// Built from the configuration they were made for; rebuilt when a reload replaced it.
    senders: std::sync::Mutex<Arc<Senders>>,
    queued: Arc<Notify>,
}

/// What sends: the SMTP client (when `[smtp]` is set) and the HTTP client, with the
/// configuration they were built from.
struct Senders {
    cfg: Arc<Alerting>,
    mailer: Option<email::Mailer>,
    poster: webhook::Poster,
}

impl Senders {
    fn new(cfg: Arc<Alerting>) -> Result<Senders, String> {
        Ok(Senders {
            mailer: cfg.smtp.as_ref().map(email::Mailer::new).transpose()?,
            poster: webhook::Poster::new(cfg.delivery.webhook_timeout)?,
            cfg,
        })
    }
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: Reloadable<Alerting>,
        queued: Arc<Notify>,
    ) -> Result<Worker, String> {
        let senders = Senders::new(cfg.get())?;
        Ok(Worker {
            store,
            worker_id: senders.cfg.delivery.worker_id.clone(),
            cfg,
            senders: std::sync::Mutex::new(Arc::new(senders)),
            queued,
        })
    }

    fn id(&self) -> &str {
        &self.worker_id
    }

    /// The senders for the running configuration; after a reload, new ones (or, if the new
    /// `[smtp]` cannot be used, the previous ones, with the reason logged).
    fn senders(&self) -> Arc<Senders> {
        let cfg = self.cfg.get();
        let mut current = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current.cfg, &cfg) {
            match Senders::new(cfg) {
                Ok(s) => *current = Arc::new(s),
                Err(e) => {
                    error!(error = %e, "reloaded delivery settings unusable; keeping the previous ones")
                }
            }
        }
        current.clone()
    }

    /// Deliver until the process ends. Each destination's claimed rows go out in a task of
    /// their own, one at a time (in order, over one SMTP session), and a destination with a
    /// task running gets no new claims; so one that hangs until its timeout (a webhook that
    /// takes the request and never answers, an SMTP relay behind a dead route) holds back its
    /// own messages only, and every other destination's go out meanwhile.
    pub async fn run(self) {
        match self.store.release_claims(self.id(), Utc::now()).await {
            Ok(0) => {}
            Ok(n) => {
                info!(worker = %self.id(), claims = n, "released claims left by this worker's previous run")
            }
            Err(e) => error!(error = %e, "releasing old claims failed; they wait for their lease"),
        }
        let worker = Arc::new(self);
        let mut lanes = JoinSet::new();
        let mut busy: HashMap<task::Id, Destination> = HashMap::new();
        loop {
            while let Some(done) = lanes.try_join_next_with_id() {
                finished(done, &mut busy);
            }
            let taken: Vec<Destination> = busy.values().cloned().collect();
            match worker.claim(Utc::now(), &taken).await {
                Ok(rows) if !rows.is_empty() => {
                    for (destination, rows) in by_destination(rows) {
                        let w = worker.clone();
                        let lane = lanes.spawn(async move { w.deliver_each(&rows).await });
                        busy.insert(lane.id(), destination);
                    }
                    // More may be due for the destinations that are still free.
                    continue;
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "claiming notifications failed; retrying"),
            }
            // Woken when a destination becomes free, at once when the engine queues
            // something; polling covers retries coming due and other collectors' rows.
            tokio::select! {
                Some(done) = lanes.join_next_with_id() => finished(done, &mut busy),
                _ = worker.queued.notified() => {}
                _ = tokio::time::sleep(worker.cfg.get().delivery.poll_every) => {}
            }
        }
    }

    /// Claim due rows of the destinations not in `busy`; each counts an attempt.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        busy: &[Destination],
    ) -> StoreResult<Vec<Notification>> {
        self.store
            .claim_notifications(self.id(), now, self.lease_from(now), CLAIM_BATCH, busy)
            .await
    }

    /// Try each of one destination's claimed rows once, in order. Once the destination did
    /// not answer or refused the session, the rest are not tried now: each would wait as long
    /// for the same answer while holding its claim, and they retry on their own schedule.
    async fn deliver_each(&self, rows: &[Notification]) {
        let senders = self.senders();
        let mut smtp: Option<AsyncSmtpConnection> = None;
        let mut unreachable: Option<String> = None;
        for n in rows {
            let done = match &unreachable {
                None => self.deliver(n, &mut smtp, &senders).await,
                Some(text) => {
                    let f = Failure {
                        text: format!(
                            "not tried: the destination failed the message before: {text}"
                        ),
                        permanent: false,
                        in_doubt: n.handed_over_at.is_some(),
                        unreachable: true,
                    };
                    self.settle(n, Err(f), &senders).await.map(|_| None)
                }
            };
            match done {
                Ok(Some(f)) if f.unreachable => unreachable = Some(f.text),
                Ok(_) => {}
                Err(e) => {
                    error!(error = %e, "delivery: the store failed; the rest of these claims wait for their lease");
                    break;
                }
            }
        }
        if let Some(mut conn) = smtp {
            let _ = conn.quit().await;
        }
    }

    fn lease_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + TimeDelta::from_std(self.cfg.get().delivery.lease).unwrap_or(TimeDelta::MAX)
    }

    /// One attempt at `n`, recorded; its failure, if it failed.
    async fn deliver(
        &self,
        n: &Notification,
        smtp: &mut Option<AsyncSmtpConnection>,
        senders: &Senders,
    ) -> StoreResult<Option<Failure>> {
        if !self
            .store
            .renew_claim(n.id, self.id(), self.lease_from(Utc::now()))
            .await?
        {
            warn!(
                notification = n.id,
                "claim lost to another worker; leaving it"
            );
            return Ok(None);
        }
        if n.handed_over_at.is_some() {
            warn!(notification = n.id, message_id = %n.message_id, recipient = %n.recipient_shown(),
                "an earlier attempt was interrupted after the message was handed to the server; \
                 sending again with the same Message-ID (the recipient may get it twice)");
        }
        let outcome = match n.channel {
            Channel::Email => self.email(n, smtp, senders).await?,
            Channel::Webhook => self.webhook(n, senders).await?,
        };
        let failure = outcome.as_ref().err().cloned();
        self.settle(n, outcome, senders).await?;
        Ok(failure)
    }

    /// Record how the attempt at `n` ended: sent, or failed with its retry (or none).
    async fn settle(
        &self,
        n: &Notification,
        outcome: Result<String, Failure>,
        senders: &Senders,
    ) -> StoreResult<()> {
        let now = Utc::now();
        match outcome {
            Ok(answer) => {
                if self.store.mark_sent(n.id, self.id(), now).await? {
                    info!(notification = n.id, route = %n.route, recipient = %n.recipient_shown(),
                        kind = %n.kind, attempts = n.attempts, answer = %answer, "notification sent");
                } else {
                    warn!(
                        notification = n.id,
                        "sent, but the claim was lost meanwhile; another worker may send it again"
                    );
                }
            }
            Err(f) => {
                let retry = if f.permanent {
                    None
                } else {
                    next_attempt(
                        n.attempts,
                        n.created_at,
                        now,
                        &senders.cfg.delivery,
                        fastrand::f64(),
                    )
                };
                self.store
                    .mark_attempt_failed(n.id, self.id(), &f.text, retry, f.in_doubt)
                    .await?;
                match retry {
                    Some(at) => {
                        warn!(notification = n.id, route = %n.route, recipient = %n.recipient_shown(),
                        attempts = n.attempts, retry_in_s = (at - now).num_seconds(), answer = %f.text,
                        "notification not delivered; will retry")
                    }
                    None => {
                        error!(notification = n.id, route = %n.route, recipient = %n.recipient_shown(),
                        attempts = n.attempts, answer = %f.text, "notification given up")
                    }
                }
            }
        }
        Ok(())
    }

    /// One email attempt: connect (or reuse), MAIL/RCPT/DATA, mark handed over, body.
    /// The outer `Result` is the store's; the inner one the delivery's.
    async fn email(
        &self,
        n: &Notification,
        smtp: &mut Option<AsyncSmtpConnection>,
        senders: &Senders,
    ) -> StoreResult<Result<String, Failure>> {
        let Some(mailer) = &senders.mailer else {
            return Ok(Err(Failure {
                text: "no [smtp] section is configured".into(),
                permanent: true,
                in_doubt: false,
                unreachable: false,
            }));
        };
        let (to, body) = match mailer.message(n) {
            Ok(m) => m,
            Err(f) => return Ok(Err(f)),
        };
        let mut handed_over = false;
        let attempt = async {
            let conn = match smtp {
                Some(c) => c,
                None => smtp.insert(mailer.connect().await.map_err(Ok)?),
            };
            mailer.begin(conn, &to, &body).await.map_err(Ok)?;
            match self
                .store
                .mark_handed_over(n.id, self.id(), Utc::now())
                .await
            {
                Ok(true) => handed_over = true,
                Ok(false) => {
                    return Err(Ok(Failure {
                        text: "claim lost before the hand-over; not sent".into(),
                        permanent: false,
                        in_doubt: false,
                        unreachable: false,
                    }));
                }
                Err(e) => return Err(Err(e)),
            }
            mailer.finish(conn, &body).await.map_err(Ok)
        };
        let outcome = tokio::time::timeout(mailer.timeout(), attempt).await;
        let result = match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Ok(f))) => Err(f),
            Ok(Err(Err(store))) => {
                *smtp = None;
                return Err(store);
            }
            Err(_) => Err(Failure {
                text: format!(
                    "no answer within {}",
                    humantime::format_duration(mailer.timeout())
                ),
                permanent: false,
                in_doubt: handed_over,
                // After the hand-over the relay answered everything up to the body: a slow
                // upload of a large message is this message's, not the relay's.
                unreachable: !handed_over,
            }),
        };
        if result.is_err() {
            // A connection in an unknown protocol state is not reused.
            if let Some(mut conn) = smtp.take() {
                conn.abort().await;
            }
        }
        Ok(result)
    }

    async fn webhook(
        &self,
        n: &Notification,
        senders: &Senders,
    ) -> StoreResult<Result<String, Failure>> {
        if !self
            .store
            .mark_handed_over(n.id, self.id(), Utc::now())
            .await?
        {
            return Ok(Err(Failure {
                text: "claim lost before the hand-over; not sent".into(),
                permanent: false,
                in_doubt: false,
                unreachable: false,
            }));
        }
        Ok(senders.poster.send(n).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
            give_up_after: Duration::from_secs(3 * 86400),
            lease: Duration::from_secs(300),
            poll_every: Duration::from_secs(5),
            webhook_timeout: Duration::from_secs(30),
            alertmanager_every: Duration::from_secs(30),
            worker_id: "test".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let d = delivery();
        let rows = [(1, 30), (2, 60), (3, 120), (6, 960), (7, 1800), (40, 1800)];
        for (attempts, secs) in rows {
            assert_eq!(
                backoff(attempts, d.retry_initial, d.retry_max).as_secs(),
                secs,
                "{attempts}"
            );
        }
    }

    #[test]
    fn retries_stop_after_give_up_after() {
        let d = delivery();
        let created = DateTime::<Utc>::from_timestamp(1_735_689_600, 0).expect("time");
        let now = created + TimeDelta::hours(1);
        assert_eq!(
            next_attempt(2, created, now, &d, 0.0),
            Some(now + TimeDelta::seconds(60))
        );
        assert_eq!(
            next_attempt(2, created, now, &d, 0.5),
            Some(now + TimeDelta::seconds(63))
        );
        assert_eq!(
            next_attempt(9, created, created + TimeDelta::days(3), &d, 0.0),
            None
        );
    }
}
