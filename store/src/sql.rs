//! [`SqlStore`]: the [`Store`] over sqlx's `Any` driver, for SQLite and PostgreSQL.
//!
//! Why one `Any`-based implementation rather than a SQLite copy and a PostgreSQL copy: the SQL
//! is the same for both (`$N` placeholders, `ON CONFLICT` upserts, integer times), except
//! where [`Backend`] branches: the migration set, how a write transaction starts, the row lock
//! taken before a read-modify-write, and SQLite's connection pragmas. Two typed copies would
//! duplicate every query and decoder and drift apart; the price is `Any`'s narrow value set,
//! which the schema accepts on purpose.
//!
//! Invariants:
//! - every write is one transaction; a batch of results commits as a whole or not at all;
//! - the state of a check reflects its newest measurement: a result measured before the
//!   state's `observed_at` (a spool replay arriving after newer results) is stored in
//!   `results` but changes neither the state nor the transitions;
//! - times are Unix milliseconds (UTC), booleans 0/1, JSON is TEXT; sub-millisecond precision
//!   is dropped, except inside the `last_result` JSON;
//! - migrations are compiled into the binary and recorded in `_sqlx_migrations`; `open`
//!   applies the missing ones and refuses a database whose applied migrations were edited;
//! - a URL is only ever shown through [`redact_url`].

mod alerts;
mod dashboard;
mod enroll;
mod group;
mod multi_row;
mod outbox;
mod read;
mod reports;
mod rollups;
mod silences;
#[cfg(test)]
mod tests;
mod url;
mod write;

pub use url::{redact_url, redact_webhook};

use super::{
    CheckClock, CheckState, Evaluated, HistoryEntry, HostFacts, HostRecord, HostWrite, HostWritten,
    Inserted, RetiredHost, Store, StoreError, StoreResult, Transition,
};
use backwatch_proto::model::ProbeKind;
use backwatch_rules::status::Status;
use chrono::{DateTime, Utc};
use read::{check_state, history_entry, host_record, transition};

/// One `retired_hosts` row.
/// Labels as stored: a JSON object (a map of strings always serialises).
fn labels_json(labels: &backwatch_proto::model::labels::Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn retired_host(row: &sqlx::any::AnyRow) -> StoreResult<RetiredHost> {
    Ok(RetiredHost {
        host: read::get(row, "host")?,
        retired_at: read::time(row, "retired_at")?,
        retired_by: read::get(row, "retired_by")?,
        reason: read::get(row, "reason")?,
    })
}
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, SqlStr, Transaction};
use std::borrow::Cow;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use url::sqlite_url;
use write::{Change, insert_transition, query_error, read_state};

/// `LIKE` pattern of the check ids of `kind` (`wal.%`; kind names are lowercase letters, no
/// wildcard). Not a text range (`'wal.' <= id < 'wal/'`): in a database created in a glibc
/// locale such as `en_US.UTF-8`, punctuation sorts last and `'wal.main' < 'wal/'` is false, so
/// the range selected nothing; `LIKE` matches characters whatever the collation.
fn kind_checks(kind: ProbeKind) -> String {
    format!("{}.%", kind.name())
}

/// What differs between the two databases; everything else is shared SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A migration compiled into the binary: the collector is deployed without its source tree.
struct Embedded {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The migrations of one backend, `migrations/<backend>/`: both backends have the same
/// versions, files and descriptions, so a migration is listed once, here.
macro_rules! migrations {
    ($backend:literal) => {
        migrations!(@list $backend;
            1, "0001_initial.sql", "initial";
            2, "0002_alerts.sql", "alerts";
            3, "0003_reports.sql", "reports";
            4, "0004_enrollment.sql", "enrollment";
            5, "0005_ingest_lookups.sql", "ingest lookups";
            6, "0006_rollup_filesystem.sql", "rollup filesystem";
            7, "0007_certificates.sql", "certificates";
            8, "0008_rollup_recovery.sql", "rollup recovery";
            9, "0009_rollup_latency.sql", "rollup latency";
            10, "0010_retired_hosts.sql", "retired hosts";
            11, "0011_host_labels.sql", "host labels";
            12, "0012_kind_names.sql", "kind names";
            13, "0013_outbox_order.sql", "outbox order";
        )
    };
    (@list $backend:literal; $($version:literal, $file:literal, $description:literal;)*) => {
        &[$(Embedded {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../migrations/", $backend, "/", $file)),
        }),*]
    };
}

const SQLITE_MIGRATIONS: &[Embedded] = migrations!("sqlite");
const POSTGRES_MIGRATIONS: &[Embedded] = migrations!("postgres");

/// Record `change` in the transition log and commit the transaction it belongs to.
async fn commit_transition(
    mut tx: Tx,
    backend: Backend,
    change: &Change<'_>,
    what: &'static str,
) -> StoreResult<()> {
    insert_transition(&mut tx, backend, change).await?;
    tx.commit().await.map_err(query_error(what))
}

/// The status a pseudo-check's latest transition left it in (ok when it has none).
async fn pseudo_status(
    conn: &mut sqlx::AnyConnection,
    host: &str,
    check: &str,
) -> StoreResult<Status> {
    let last: Option<String> = sqlx::query(
        "SELECT to_status FROM transitions WHERE host = $1 AND check_id = $2 \
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(host)
    .bind(check)
    .fetch_optional(conn)
    .await
    .map_err(query_error("read pseudo-check"))?
    .map(|row| read::get(&row, "to_status"))
    .transpose()?;
    match last.as_deref() {
        Some(s) => read::parse_status("to_status", s),
        None => Ok(Status::Ok),
    }
}

/// PostgreSQL advisory lock key of the transition log (see `write::insert_transition`).
const TRANSITION_LOG_LOCK: i64 = 0x4277_5472_616e_7331;

impl Backend {
    fn from_url(url: &str) -> Option<Backend> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    fn embedded(self) -> &'static [Embedded] {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    fn migrator(self) -> Migrator {
        let migrations = self
            .embedded()
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    SqlStr::from_static(m.sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
    }

    /// Reads the state a write is about to replace. On PostgreSQL the row is locked, so a
    /// concurrent writer of the same check (ingest and the silence scan) waits instead of
    /// deciding on a stale status; SQLite has no row locks and needs none (see `begin`).
    /// A check's very first result has no row to lock yet: two first results written at
    /// the same moment could both record a transition from nothing. One stream per host
    /// makes that rare, and the state still ends right.
    fn state_for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "SELECT status, summary, received_at FROM check_state \
                 WHERE host = $1 AND check_id = $2"
            }
            Backend::Postgres => {
                "SELECT status, summary, received_at FROM check_state \
                 WHERE host = $1 AND check_id = $2 FOR UPDATE"
            }
        }
    }
}

const TOUCH_HOST: &str = include_str!("queries/touch_host.sql");
const TOUCH_HOST_WITH_FACTS: &str = include_str!("queries/touch_host_with_facts.sql");

// The column list of each SELECT sits next to the decoder that reads those names; `concat!`
// keeps the result a `&'static str`, which is what sqlx accepts without `AssertSqlSafe`.
macro_rules! select_hosts {
    ($tail:literal) => {
        concat!(
            "SELECT host, first_seen, last_contact, silent, agent_version, hostname, os, \
             instance_id, clock_skew_ms, labels FROM hosts ",
            $tail
        )
    };
}
macro_rules! select_states {
    ($tail:literal) => {
        concat!(
            "SELECT host, check_id, status, summary, since, observed_at, received_at, \
             interval_secs, last_result_id, last_result, details FROM check_state ",
            $tail
        )
    };
}
macro_rules! select_history {
    ($tail:literal) => {
        concat!(
            "SELECT result_id, check_id, measured_at, received_at, status, summary, error, \
             observation FROM results ",
            $tail
        )
    };
}

/// Fleet history in SQLite or PostgreSQL, chosen by the URL given to [`SqlStore::open`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: the writers of this process queue here, first come first served, before they
    /// ask SQLite for its one write lock (see [`SqlStore::write_gate`]).
    gate: Arc<Mutex<()>>,
}

/// A write transaction; on SQLite it also holds the write gate until it ends.
struct Tx {
    tx: Transaction<'static, Any>,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

static INSTALL_DRIVERS: Once = Once::new();

impl SqlStore {
    /// Opens (for SQLite: creates when missing) the database at `url` and applies the
    /// embedded migrations. `url` is `sqlite:<path>`, `sqlite://<path>`, `sqlite::memory:`
    /// (one connection, gone when the store is dropped: for tests), or
    /// `postgres[ql]://user[:password]@host[:port]/database`.
    pub async fn open(url: &str) -> StoreResult<SqlStore> {
        // `AnyPool` panics without installed drivers. sqlx ignores repeated installs; the
        // `Once` only spares every later open the call.
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let open_error = |source| StoreError::Open {
            url_redacted: redact_url(url),
            source,
        };
        let backend = Backend::from_url(url).ok_or_else(|| {
            open_error(sqlx::Error::Configuration(
                "unsupported scheme (expected sqlite: or postgres://)".into(),
            ))
        })?;
        let pool = match backend {
            Backend::Sqlite => open_sqlite(url).await,
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // A lock wait or a half-dead server must not hold an agent's
                            // stream forever: fail the batch (no ack, the agent replays).
                            conn.execute("SET statement_timeout = '30s'").await?;
                            conn.execute("SET lock_timeout = '10s'").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
            }
        }
        .map_err(open_error)?;
        backend
            .migrator()
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(SqlStore {
            pool,
            backend,
            gate: Arc::default(),
        })
    }

    /// Closes every connection; later calls fail. Lets a caller (or a test) release the
    /// SQLite file before opening it again.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// On SQLite, waits for this process's earlier writers to finish; `None` on PostgreSQL,
    /// whose writers run concurrently. Every write (a transaction, or a single statement)
    /// takes it first. Why: a SQLite writer that finds the lock taken sleeps in its busy
    /// handler, retrying after 1, 2, 5 … up to 100 ms, and under ingest load the lock is
    /// free only between two group commits, so the alert engine's write lost that race for
    /// a second and more, and result-to-alert latency followed. Queued here, a write waits
    /// for the writes ahead of it and no longer. `busy_timeout` still covers other
    /// processes on the same file (the CLI).
    async fn write_gate(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.gate.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    async fn begin(&self) -> StoreResult<Tx> {
        let gate = self.write_gate().await;
        let tx = match self.backend {
            // A deferred SQLite transaction that reads and then writes fails at once with
            // SQLITE_BUSY (busy_timeout does not wait for it) when another connection wrote
            // in between; taking the write lock first makes writers queue on busy_timeout.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        Ok(Tx {
            tx: tx.map_err(query_error("begin transaction"))?,
            _gate: gate,
        })
    }
}

async fn open_sqlite(url: &str) -> Result<AnyPool, sqlx::Error> {
    let (url, in_memory) = sqlite_url(url);
    if !in_memory {
        // WAL lets the API read while ingest writes. It is a property of the file, and
        // switching to it takes an exclusive lock busy_timeout cannot wait for, so it is set
        // once on a lone connection before the pool opens several.
        let mut conn = AnyConnection::connect(&url).await?;
        let mode: String = conn
            .fetch_one("PRAGMA journal_mode = WAL")
            .await?
            .try_get(0)?;
        conn.close().await?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, "sqlite store is not in WAL mode");
        }
    }
    let options = AnyPoolOptions::new().after_connect(|conn, _meta| {
        Box::pin(async move {
            // FULL, not NORMAL: an ack promises the agent it may drop the result from its
            // spool, and in WAL mode NORMAL can lose the last commits on power failure. The
            // cost is one fsync per batch, not per result.
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA busy_timeout = 5000").await?;
            // 32 MiB of page cache per connection rather than SQLite's 2 MiB: the pages
            // ingest touches every minute (check states, rollups, the tails of the indexes)
            // then stay in memory instead of being read again from the OS on every group.
            conn.execute("PRAGMA cache_size = -32768").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            Ok(())
        })
    });
    let options = if in_memory {
        // Through `Any` every connection re-parses the URL and so gets its own private
        // in-memory database: keep exactly one, forever.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        // SQLite has one writer at a time anyway; a few connections let reads proceed.
        options.max_connections(4)
    };
    options.connect(&url).await
}

// === impl Store ===

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn touch_host(
        &self,
        host: &str,
        at: DateTime<Utc>,
        facts: Option<&HostFacts>,
    ) -> StoreResult<bool> {
        let at = at.timestamp_millis();
        let query = match facts {
            None => sqlx::query(TOUCH_HOST).bind(host).bind(at),
            Some(f) => sqlx::query(TOUCH_HOST_WITH_FACTS)
                .bind(host)
                .bind(at)
                .bind(f.agent_version.as_str())
                .bind(f.hostname.as_str())
                .bind(f.os.as_str())
                .bind(f.instance_id.as_str())
                .bind(f.clock_skew_ms)
                .bind(labels_json(&f.labels)),
        };
        let _gate = self.write_gate().await;
        let row = query
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("touch host"))?;
        Ok(read::get::<i64>(&row, "silent")? != 0)
    }

    async fn record_group(&self, writes: &[HostWrite<'_>]) -> StoreResult<Vec<HostWritten>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let out = group::write(&mut tx, self.backend, writes, true).await?;
        tx.commit().await.map_err(query_error("commit group"))?;
        Ok(out)
    }

    async fn record_results(&self, host: &str, items: &[Evaluated]) -> StoreResult<Vec<Inserted>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let write = HostWrite {
            host,
            items,
            contact: Utc::now(), // not recorded: record_results leaves the host alone
        };
        let mut out = group::write(&mut tx, self.backend, &[write], false).await?;
        tx.commit().await.map_err(query_error("commit results"))?;
        Ok(out.pop().map(|w| w.inserted).unwrap_or_default())
    }

    async fn set_check_status(
        &self,
        host: &str,
        check: &str,
        status: Status,
        summary: &str,
        at: DateTime<Utc>,
        unless_received_after: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let Some(prev) = read_state(&mut tx, self.backend, host, check).await? else {
            return Ok(false);
        };
        if let (Some(guard), Some(received)) = (unless_received_after, prev.received_at)
            && received > guard.timestamp_millis()
        {
            return Ok(false); // a fresh result landed after the caller looked
        }
        // Leaving the silence's unknown for another unknown (a check of a host back from
        // silence that still sends nothing: overdue) is a change, as for a result (see
        // `group`): the silence's was never alerted per check.
        let leaves_silence = crate::silence_unknown(prev.status, &prev.summary)
            && !crate::silence_unknown(status, summary);
        if prev.status == status && !leaves_silence {
            if prev.summary != summary {
                // Same status, better explanation (an overdue check whose host then went
                // silent): refresh the words, no transition.
                sqlx::query(
                    "UPDATE check_state SET summary = $3 WHERE host = $1 AND check_id = $2",
                )
                .bind(host)
                .bind(check)
                .bind(summary)
                .execute(&mut *tx)
                .await
                .map_err(query_error("update check summary"))?;
                tx.commit()
                    .await
                    .map_err(query_error("commit check summary"))?;
            }
            return Ok(false);
        }
        let at = at.timestamp_millis();
        sqlx::query(
            "UPDATE check_state SET status = $3, summary = $4, since = $5 \
             WHERE host = $1 AND check_id = $2",
        )
        .bind(host)
        .bind(check)
        .bind(status.as_str())
        .bind(summary)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(query_error("update check status"))?;
        let change = Change {
            host,
            check,
            at,
            from: Some(prev.status),
            to: status,
            summary,
            result_id: None,
        };
        commit_transition(tx, self.backend, &change, "commit check status").await?;
        Ok(true)
    }

    async fn retire_check(
        &self,
        host: &str,
        check: &str,
        summary: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let Some(prev) = read_state(&mut tx, self.backend, host, check).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM check_state WHERE host = $1 AND check_id = $2")
            .bind(host)
            .bind(check)
            .execute(&mut *tx)
            .await
            .map_err(query_error("retire check"))?;
        if prev.status == Status::Ok {
            tx.commit().await.map_err(query_error("commit retire"))?;
            return Ok(true);
        }
        let change = Change {
            host,
            check,
            at: at.timestamp_millis(),
            from: Some(prev.status),
            to: Status::Ok,
            summary,
            result_id: None,
        };
        commit_transition(tx, self.backend, &change, "commit retire").await?;
        Ok(true)
    }

    async fn set_pseudo_check(
        &self,
        host: &str,
        check: &str,
        status: Status,
        summary: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // Read first without the write gate: at every hello this finds nothing to change.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(query_error("read pseudo-check"))?;
        if pseudo_status(&mut conn, host, check).await? == status {
            return Ok(false);
        }
        drop(conn);
        let mut tx = self.begin().await?;
        let from = pseudo_status(&mut tx, host, check).await?;
        if from == status {
            return Ok(false);
        }
        let change = Change {
            host,
            check,
            at: at.timestamp_millis(),
            from: Some(from),
            to: status,
            summary,
            result_id: None,
        };
        commit_transition(tx, self.backend, &change, "commit pseudo-check").await?;
        Ok(true)
    }

    async fn set_host_silent_at(
        &self,
        host: &str,
        silent: bool,
        at: DateTime<Utc>,
        quiet_since: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // Compare-and-set on last_contact: an agent that spoke after the sweep looked at it
        // is not silent, whatever the sweep concluded.
        let Some(row) = sqlx::query(
            "UPDATE hosts SET silent = $2 WHERE host = $1 AND silent <> $2 \
             AND ($3 < 0 OR last_contact <= $3) RETURNING last_contact",
        )
        .bind(host)
        .bind(i64::from(silent))
        .bind(quiet_since.map_or(-1, |t| t.timestamp_millis()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("set host silent"))?
        else {
            return Ok(false);
        };
        let last_contact: i64 = read::get(&row, "last_contact")?;
        let (from, to, summary) = if silent {
            let quiet_secs = (at.timestamp_millis() - last_contact) / 1000;
            let since = DateTime::from_timestamp_millis(last_contact).unwrap_or(at);
            let summary = format!(
                "agent silent since {} (no contact for {})",
                since.format("%Y-%m-%d %H:%M:%S UTC"),
                backwatch_rules::human::duration(quiet_secs)
            );
            (Status::Ok, Status::Unknown, summary)
        } else {
            (
                Status::Unknown,
                Status::Ok,
                "agent reporting again".to_string(),
            )
        };
        let change = Change {
            host,
            check: super::alerts::AGENT_CHECK,
            at: at.timestamp_millis(),
            from: Some(from),
            to,
            summary: &summary,
            result_id: None,
        };
        commit_transition(tx, self.backend, &change, "commit host silence").await?;
        Ok(true)
    }

    async fn hosts(&self) -> StoreResult<Vec<HostRecord>> {
        sqlx::query(select_hosts!("ORDER BY host"))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list hosts"))?
            .iter()
            .map(host_record)
            .collect()
    }

    async fn retire_host(&self, r: &RetiredHost) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO retired_hosts (host, retired_at, retired_by, reason) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (host) DO NOTHING",
        )
        .bind(&r.host)
        .bind(r.retired_at.timestamp_millis())
        .bind(&r.retired_by)
        .bind(&r.reason)
        .execute(&self.pool)
        .await
        .map_err(query_error("retire host"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn unretire_host(&self, host: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM retired_hosts WHERE host = $1")
            .bind(host)
            .execute(&mut *tx)
            .await
            .map_err(query_error("un-retire host"))?;
        if done.rows_affected() == 1 {
            // Retiring resolved the host's alerts and froze its checks' states (its streams
            // were refused). Back in the fleet its checks start afresh: a check still bad at
            // the agent's next result is then a change, and alerted, rather than the same
            // state as before, which opens nothing. Results and history stay.
            sqlx::query("DELETE FROM check_state WHERE host = $1")
                .bind(host)
                .execute(&mut *tx)
                .await
                .map_err(query_error("clear states of an un-retired host"))?;
        }
        tx.commit().await.map_err(query_error("commit un-retire"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn retired_hosts(&self) -> StoreResult<Vec<RetiredHost>> {
        sqlx::query("SELECT host, retired_at, retired_by, reason FROM retired_hosts ORDER BY host")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list retired hosts"))?
            .iter()
            .map(retired_host)
            .collect()
    }

    async fn retired_host(&self, host: &str) -> StoreResult<Option<RetiredHost>> {
        sqlx::query(
            "SELECT host, retired_at, retired_by, reason FROM retired_hosts WHERE host = $1",
        )
        .bind(host)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read retired host"))?
        .as_ref()
        .map(retired_host)
        .transpose()
    }

    async fn host(&self, host: &str) -> StoreResult<Option<HostRecord>> {
        sqlx::query(select_hosts!("WHERE host = $1"))
            .bind(host)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read host"))?
            .as_ref()
            .map(host_record)
            .transpose()
    }

    async fn check_states(&self, host: Option<&str>) -> StoreResult<Vec<CheckState>> {
        let query = match host {
            Some(host) => {
                sqlx::query(select_states!("WHERE host = $1 ORDER BY check_id")).bind(host)
            }
            None => sqlx::query(select_states!("ORDER BY host, check_id")),
        };
        query
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list check states"))?
            .iter()
            .map(check_state)
            .collect()
    }

    async fn check_states_of_kind(&self, kind: ProbeKind) -> StoreResult<Vec<CheckState>> {
        sqlx::query(select_states!(
            "WHERE check_id LIKE $1 ORDER BY host, check_id"
        ))
        .bind(kind_checks(kind))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list check states of a kind"))?
        .iter()
        .map(check_state)
        .collect()
    }

    async fn check_state(&self, host: &str, check: &str) -> StoreResult<Option<CheckState>> {
        sqlx::query(select_states!("WHERE host = $1 AND check_id = $2"))
            .bind(host)
            .bind(check)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read check state"))?
            .as_ref()
            .map(check_state)
            .transpose()
    }

    async fn history(
        &self,
        host: &str,
        check: Option<&str>,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<HistoryEntry>> {
        // Two statements rather than `($2 IS NULL OR check_id = $2)`, so each can use its
        // index and PostgreSQL's cached plan does not have to serve both shapes.
        let query = match check {
            Some(check) => sqlx::query(select_history!(
                "WHERE host = $1 AND check_id = $2 AND measured_at >= $3 \
                 ORDER BY measured_at, result_id LIMIT $4"
            ))
            .bind(host)
            .bind(check),
            None => sqlx::query(select_history!(
                "WHERE host = $1 AND measured_at >= $2 ORDER BY measured_at, result_id LIMIT $3"
            ))
            .bind(host),
        };
        query
            .bind(since.timestamp_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("read history"))?
            .iter()
            .map(history_entry)
            .collect()
    }

    async fn check_clocks(&self) -> StoreResult<Vec<CheckClock>> {
        sqlx::query(
            "SELECT host, check_id, status, summary, received_at, interval_secs \
             FROM check_state ORDER BY host, check_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read check clocks"))?
        .iter()
        .map(|row| {
            Ok(CheckClock {
                host: read::get(row, "host")?,
                check: read::get(row, "check_id")?,
                status: read::status(row, "status")?,
                summary: read::get(row, "summary")?,
                received_at: read::opt_time(row, "received_at")?,
                interval_secs: u32::try_from(read::get::<i64>(row, "interval_secs")?)
                    .unwrap_or(u32::MAX),
            })
        })
        .collect()
    }

    async fn prune_results(&self, host: &str, before: DateTime<Utc>) -> StoreResult<u64> {
        // Per host, so the delete walks the (host, measured_at) index instead of the table.
        // Look before deleting: a read takes no write lock, and on SQLite every writer queues
        // for the one write lock behind ingest's group commits. An hourly pass over a fleet
        // whose hosts mostly have nothing to delete then costs reads, not a thousand queued
        // writes that stall ingest while they wait.
        let due = sqlx::query("SELECT 1 FROM results WHERE host = $1 AND measured_at < $2 LIMIT 1")
            .bind(host)
            .bind(before.timestamp_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("look for results to prune"))?;
        if due.is_none() {
            return Ok(0);
        }
        let _gate = self.write_gate().await;
        Ok(
            sqlx::query("DELETE FROM results WHERE host = $1 AND measured_at < $2")
                .bind(host)
                .bind(before.timestamp_millis())
                .execute(&self.pool)
                .await
                .map_err(query_error("prune results"))?
                .rows_affected(),
        )
    }

    async fn transitions(&self, host: &str, since: DateTime<Utc>) -> StoreResult<Vec<Transition>> {
        sqlx::query(
            "SELECT host, check_id, at, from_status, to_status, summary FROM transitions \
             WHERE host = $1 AND at >= $2 ORDER BY at, id",
        )
        .bind(host)
        .bind(since.timestamp_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read transitions"))?
        .iter()
        .map(transition)
        .collect()
    }

    async fn change_marks(&self) -> StoreResult<(i64, i64)> {
        self.read_change_marks().await
    }

    async fn daily_last_results(
        &self,
        kind: ProbeKind,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, HistoryEntry)>> {
        self.read_daily_last_results(kind, since).await
    }
}
