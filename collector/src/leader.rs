//! Which collector runs the fleet-wide singleton duties (silence detection, alert evaluation,
//! retention) when several collectors share one PostgreSQL.
//!
//! Ingest, the API and notification delivery scale out: every collector does them (delivery
//! claims outbox rows with leases and `FOR UPDATE SKIP LOCKED`). The duties that judge the
//! whole fleet run on one collector at a time, the holder of a session-level advisory lock on
//! a connection of its own:
//! - the lock belongs to that connection, so a collector that dies (SIGKILL, crash, lost
//!   network) loses it as soon as PostgreSQL notices the connection is gone: immediately for a
//!   closed socket, within about 30 s for a silent host (TCP keepalives set on the session);
//! - a follower tries to take the lock every [`CHECK_EVERY`]; the leader pings its connection
//!   as often and stops leading when a ping fails or hangs;
//! - the window in which two collectors may both believe they lead (a leader whose ping has
//!   not failed yet while PostgreSQL already dropped its session) is at most one check
//!   interval, and every duty is safe in that window anyway: the silence sweep and the alert
//!   engine write with compare-and-set, retention deletes idempotently. Leadership saves work
//!   and contention; correctness never rests on it.
//!
//! A SQLite store belongs to one collector process, which always leads.

use sqlx::{AnyConnection, Connection, Executor};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often a follower tries the lock and a leader checks it still holds it.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Advisory lock key of the singleton duties ("BwLeader" in ASCII).
const LEADER_LOCK: i64 = 0x4277_4c65_6164_6572;

/// Whether this collector currently runs the singleton duties; cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leader {
    rx: watch::Receiver<bool>,
}

impl Leader {
    /// Always leading: a SQLite store, or a test of one duty.
    pub fn always() -> Leader {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps reading `true` after the sender is gone.
        drop(tx);
        Leader { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Start competing for leadership over `store_url`; SQLite leads at once.
    pub fn start(store_url: &str) -> Leader {
        if !is_postgres(store_url) {
            return Leader::always();
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(compete(store_url.to_string(), tx));
        Leader { rx }
    }
}

/// Whether `url` names a PostgreSQL store (shared by several collectors) rather than SQLite.
pub fn is_postgres(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

async fn compete(url: String, tx: watch::Sender<bool>) {
    sqlx::any::install_default_drivers();
    loop {
        match tokio::time::timeout(CHECK_EVERY * 5, AnyConnection::connect(&url)).await {
            Ok(Ok(conn)) => hold(conn, &tx).await,
            Ok(Err(e)) => warn!(error = %e, "leader election: cannot connect to the store"),
            Err(_) => warn!("leader election: connecting to the store timed out"),
        }
        if tx.send_replace(false) {
            warn!("no longer leading: silence detection and alert evaluation stop here");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Use one connection until it fails: try the lock while following, ping while leading.
async fn hold(mut conn: AnyConnection, tx: &watch::Sender<bool>) {
    // A leader host that vanishes without closing its socket must not keep the lock for the
    // kernel's default two hours of keepalive silence.
    for setting in [
        "SET tcp_keepalives_idle = 10",
        "SET tcp_keepalives_interval = 5",
        "SET tcp_keepalives_count = 3",
        "SET statement_timeout = '5s'",
    ] {
        if let Err(e) = conn.execute(setting).await {
            warn!(error = %e, setting, "leader election: configuring the session");
            return;
        }
    }
    loop {
        if *tx.borrow() {
            match tokio::time::timeout(CHECK_EVERY, conn.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election: lost the store connection");
                    return;
                }
                Err(_) => {
                    warn!("leader election: the store did not answer a ping in time");
                    return;
                }
            }
        } else {
            let got = tokio::time::timeout(
                CHECK_EVERY,
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK)
                    .fetch_one(&mut conn),
            )
            .await;
            match got {
                Ok(Ok(true)) => {
                    tx.send_replace(true);
                    info!(
                        "leading: this collector runs silence detection, alert evaluation \
                         and retention for the fleet"
                    );
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election: trying the lock");
                    return;
                }
                Err(_) => {
                    warn!("leader election: the lock query did not answer in time");
                    return;
                }
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_always_leads() {
        assert!(Leader::always().is_leader());
        assert!(!is_postgres("sqlite:///var/lib/backwatch/collector.db"));
        assert!(is_postgres("PostgreSQL://u@h/db"));
    }
}
