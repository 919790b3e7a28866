//! Live updates for the dashboard: `GET /api/v1/events`, a Server-Sent Events stream.
//!
//! Invariants:
//! - one shared task polls the store's change marks ([`Store::change_marks`]) every
//!   [`POLL_EVERY`], whatever the number of open pages: one cheap query per second in total;
//! - it polls even while nobody listens, so a page that subscribes and then loads its data
//!   misses nothing: every change committed after the load is announced after the subscription;
//! - an event says only *that* something changed (`changed`, a sequence number); the page
//!   refetches through the JSON API under its own credentials, so the stream reveals nothing;
//! - bursts coalesce: the channel keeps only the newest number, a slow page gets one event;
//! - every stream ends when the collector is asked to stop, so a graceful shutdown does not
//!   wait for open browsers.

use super::ApiState;
use crate::store::Store;
use axum::extract::State;
use axum::http::header::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies and browsers from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Seq(u64),
    Closed,
}

/// The shared change feed.
pub struct Changes {
    tx: watch::Sender<Feed>,
}

impl Changes {
    /// Starts the polling task over `store`.
    pub fn start(store: Arc<dyn Store>) -> Arc<Changes> {
        let changes = Arc::new(Changes {
            tx: watch::Sender::new(Feed::Seq(0)),
        });
        tokio::spawn(poll(store, changes.clone()));
        changes
    }

    /// A change this process made that the marks may not show (a silence added or ended).
    pub fn bump(&self) {
        self.tx.send_if_modified(|f| match f {
            Feed::Seq(n) => {
                *n += 1;
                true
            }
            Feed::Closed => false,
        });
    }

    fn close(&self) {
        self.tx.send_replace(Feed::Closed);
    }
}

async fn poll(store: Arc<dyn Store>, changes: Arc<Changes>) {
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => {
                changes.close();
                return;
            }
        }
        match store.change_marks().await {
            Ok(marks) => {
                if last.is_some_and(|l| l != marks) {
                    changes.bump();
                }
                last = Some(marks);
            }
            // The API reports store trouble on its own requests; here it only delays updates.
            Err(e) => tracing::debug!(error = %e, "reading change marks failed"),
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `GET /api/v1/events`: `ready` once, then `changed` after every change; data is a number.
pub async fn events(State(s): State<ApiState>) -> impl IntoResponse {
    let mut rx = s.dashboard.changes.tx.subscribe();
    let current = *rx.borrow_and_update();
    let first = match current {
        Feed::Seq(n) => Some(Ok::<_, Infallible>(
            Event::default()
                .event("ready")
                .retry(Duration::from_secs(2))
                .data(n.to_string()),
        )),
        Feed::Closed => None,
    };
    let open = first.is_some();
    let rest = stream::unfold((rx, open), |(mut rx, open)| async move {
        if !open {
            return None;
        }
        rx.changed().await.ok()?;
        let feed = *rx.borrow_and_update();
        match feed {
            Feed::Seq(n) => Some((
                Ok(Event::default().event("changed").data(n.to_string())),
                (rx, true),
            )),
            Feed::Closed => None,
        }
    });
    let body = stream::iter(first).chain(rest);
    (
        // nginx buffers responses unless told otherwise; a buffered stream is no stream.
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}
