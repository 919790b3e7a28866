//! WAL archiving probe: the raw facts rules A1–A8 need, read from PostgreSQL in two essential
//! statements (settings and archiver; the waiting files) and a few optional ones (the system
//! identifier, base backups running, a segment's age), which a slow server goes without.
//!
//! Invariants:
//! - Never hangs: connecting (DNS, TCP, startup, authentication) is bounded by
//!   `connect_timeout` as a whole, each statement by the server-side `statement_timeout`, and
//!   the query phase as a whole by a client-side limit, because a black-holed network is not
//!   stopped by anything the server does.
//! - Not connecting or a failing settings statement is an `Err` ("cannot connect: ...",
//!   "query failed: ...", "timed out after ..."); the password never appears in any text.
//! - The pending list (`.ready` files) and `db_now` come from one statement, so the oldest
//!   pending file's age is computed on the database host's clock (A3), immune to agent or
//!   collector clock skew. When that statement is not permitted or not available, the probe
//!   still succeeds with `pending_source = Unavailable` and a note saying why.
//! - Timestamps cross the wire as integer microseconds since the epoch (tokio-postgres has no
//!   chrono support enabled), exact so that A1's `last_failed_time > last_archived_time` tie
//!   rule sees the same values the server compared.

use super::unswitched;
use super::wal_positions;
use super::{Outcome, Probe};
use backwatch_common::error::chain;
use backwatch_proto::model::{
    Observation, PendingSource, ProbeKind, RunningBaseBackup, WAL_SEGMENT_HEADER_BYTES, WalObs,
    parse_lsn,
};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Row};

#[derive(Debug, Clone)]
pub struct WalProbe {
    pub name: String,
    pub pg: Config,
    /// Bound on the whole connection setup, authentication included.
    pub connect_timeout: Duration,
    /// Server-side limit per statement (at least 1 ms: 0 would mean "no limit" to PostgreSQL).
    pub statement_timeout: Duration,
    /// Ask the collector for the A8 exposure advisory (sent in the observation).
    pub exposure_advisory: bool,
    /// The previous sample's conclusion about the current segment (see [`unswitched`]).
    pub unswitched: Arc<Mutex<Option<unswitched::Tracked>>>,
    /// What dates an estimate's oldest waiting segment (see
    /// [`WalProbe::date_estimated_oldest`]).
    pub pending_seen: Arc<Mutex<Seen>>,
}

/// What the probe saw of an estimate's waiting segments, over its samples.
#[derive(Debug, Default)]
pub struct Seen {
    /// The oldest waiting segment's name and when the probe first saw it oldest.
    pub oldest: Option<(String, DateTime<Utc>)>,
    /// Each current segment and when the probe first saw it current, oldest first, at most
    /// [`CURRENTS_KEPT`]: a segment was complete by the first sample at which a later one was
    /// current.
    pub currents: std::collections::VecDeque<(DateTime<Utc>, String)>,
}

/// Current segments remembered: ten days of samples every 15 min, if each found a new one.
const CURRENTS_KEPT: usize = 1024;

#[async_trait::async_trait]
impl Probe for WalProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Wal
    }

    fn target(&self) -> String {
        redacted(&self.pg)
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        self.observe_wal().await.map(Observation::Wal)
    }
}

/// Connection parameters for logs and `check` output: everything needed to recognise the
/// target, never the password. Ports default to 5432 as in tokio-postgres.
pub fn redacted(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let addrs: Vec<String> = cfg.get_hostaddrs().iter().map(|a| a.to_string()).collect();
    let ports: Vec<String> = match cfg.get_ports() {
        [] => vec!["5432".into()],
        ports => ports.iter().map(|p| p.to_string()).collect(),
    };
    let mut parts = Vec::new();
    for (key, value) in [
        ("host", (!hosts.is_empty()).then(|| hosts.join(","))),
        ("hostaddr", (!addrs.is_empty()).then(|| addrs.join(","))),
        ("port", Some(ports.join(","))),
        ("user", cfg.get_user().map(String::from)),
        ("dbname", cfg.get_dbname().map(String::from)),
    ] {
        if let Some(value) = value {
            parts.push(format!("{key}={}", quote(&value)));
        }
    }
    parts.join(" ")
}

/// libpq connection-string quoting, only where a value needs it.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
    }
}

// === the probe ===

impl WalProbe {
    async fn observe_wal(&self) -> Result<WalObs, String> {
        // The optional statements run only while the query phase's limit leaves room (see
        // `with_session`): a slow server still gets its verdict from the essential two.
        let deadline = tokio::time::Instant::now() + self.query_limit();
        let deadline = deadline
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(deadline);
        let (mut obs, dating) = self
            .with_session(async |client: &Client| query(client, deadline).await)
            .await?;
        obs.exposure_advisory = self.exposure_advisory;
        self.track_unswitched(&mut obs, dating);
        self.date_estimated_oldest(&mut obs, Utc::now());
        Ok(obs)
    }

    /// An estimate from WAL positions names the oldest waiting segment, but its age needs
    /// `pg_stat_file()`, which `pg_monitor` does not grant: undated, a hung archiver would look
    /// fine for ever. The probe dates it itself: it has waited at least since the first sample
    /// that found it oldest (this agent's clock, both ends), so the delay limit is still passed,
    /// at most one interval late. An agent restart starts the count again.
    fn date_estimated_oldest(&self, obs: &mut WalObs, now: DateTime<Utc>) {
        let mut seen = self.pending_seen.lock().unwrap_or_else(|e| e.into_inner());
        let undated = obs.pending_source == PendingSource::WalPositions
            && obs.oldest_ready_age_secs.is_none();
        let Some(name) = obs.oldest_ready_name.clone().filter(|_| undated) else {
            *seen = Seen::default();
            return;
        };
        if let Some(current) = obs.current_wal_file.as_deref()
            && seen.currents.back().is_none_or(|(_, c)| c != current)
        {
            if seen.currents.len() >= CURRENTS_KEPT {
                seen.currents.pop_front();
            }
            seen.currents.push_back((now, current.to_string()));
        }
        let oldest_since = match seen.oldest.as_ref() {
            Some((n, t)) if *n == name => *t,
            _ => now,
        };
        seen.oldest = Some((name.clone(), oldest_since));
        // An archiver that moves but falls behind changes the oldest at every sample; the
        // segment was complete, though, by the first sample that found a later one current.
        // Names of one timeline compare by position as text (fixed-width upper-case hex).
        let completed_by = seen
            .currents
            .iter()
            .find(|(_, c)| c.get(..8) == name.get(..8) && c.get(8..) > name.get(8..))
            .map(|(t, _)| *t);
        let since = completed_by.map_or(oldest_since, |t| t.min(oldest_since));
        obs.oldest_ready_age_secs = Some((now - since).num_seconds().max(0));
        let note = obs.pending_note.get_or_insert_with(String::new);
        note.push_str(&format!(
            "; its age is at least how long this agent has known it complete (since {})",
            since.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }

    /// Dates committed work in the current segment from this sample and the previous one.
    /// A standby, or a sample lacking a fact, forgets the history: after a promotion the
    /// segments and transaction ids are the new primary's.
    fn track_unswitched(&self, obs: &mut WalObs, dating: Dating) {
        let sample = (|| {
            if obs.in_recovery {
                return None;
            }
            let seg = u64::try_from(obs.wal_segment_size_bytes)
                .ok()
                .filter(|s| *s > 0)?;
            let lsn = parse_lsn(obs.current_lsn.as_deref()?)?;
            Some(unswitched::Sample {
                segment: obs.current_wal_file.clone()?,
                next_xid: obs.next_xid?,
                in_progress: dating.in_progress,
                switched_at: dating.last_completed,
                written: lsn % seg > WAL_SEGMENT_HEADER_BYTES,
                at: obs.db_now?,
            })
        })();
        let mut kept = self.unswitched.lock().unwrap_or_else(|e| e.into_inner());
        *kept = sample.map(|s| unswitched::next(kept.as_ref(), s, obs.archive_timeout_secs));
        if let Some(t) = kept.as_ref() {
            obs.unswitched_writes_since = t.since;
            obs.unswitched_writes_note = t.undated.then(|| unswitched::UNDATED_NOTE.to_string());
        }
    }

    /// Connect, set the session's `statement_timeout`, run `queries`, and close. The whole
    /// query phase is bounded too: the time of two statements, each bounded by the server,
    /// plus `connect_timeout` of slack; a caller with more statements gives the others only
    /// what is left (see `optional`). Every probe that asks PostgreSQL goes through here.
    pub(crate) async fn with_session<T>(
        &self,
        queries: impl AsyncFnOnce(&Client) -> Result<T, String>,
    ) -> Result<T, String> {
        let session = self.connect().await?;
        let statement_timeout = self.effective_statement_timeout();
        let limit = self.query_limit();
        let bounded = async {
            let ms = statement_timeout.as_millis().min(i32::MAX as u128); // PostgreSQL's maximum
            session
                .client
                .batch_execute(&format!("SET statement_timeout = {ms}"))
                .await
                .map_err(|e| format!("query failed: {}", chain(&e)))?;
            queries(&session.client).await
        };
        let result = match timeout(limit, bounded).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} running queries", secs(limit))),
        };
        session.close().await;
        result
    }

    /// Whether the server is a standby now (`pg_is_in_recovery()`), and its major version
    /// (`server_version_num / 10000`, which is the major from PostgreSQL 10 on).
    pub(crate) async fn role_and_major(&self) -> Result<(bool, u32), String> {
        self.with_session(async |client: &Client| {
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(), current_setting('server_version_num')::int / 10000",
                    &[],
                )
                .await
                .map_err(|e| format!("query failed: {}", chain(&e)))?;
            let standby = row
                .try_get::<_, bool>(0)
                .map_err(|e| format!("query failed: {}", chain(&e)))?;
            let major = row
                .try_get::<_, i32>(1)
                .map_err(|e| format!("query failed: {}", chain(&e)))?;
            Ok((standby, u32::try_from(major).unwrap_or(0)))
        })
        .await
    }

    /// At least 1 ms: 0 would mean "no limit" to PostgreSQL.
    /// The query phase's limit (see `with_session`): two statements and `connect_timeout`
    /// of network slack.
    fn query_limit(&self) -> Duration {
        self.connect_timeout
            .saturating_add(self.effective_statement_timeout().saturating_mul(2))
    }

    pub(crate) fn effective_statement_timeout(&self) -> Duration {
        self.statement_timeout.max(Duration::from_millis(1))
    }

    /// Connects within `connect_timeout` (DNS, TCP, startup and authentication as a whole).
    /// Shared with the archive directory probe, which asks the same server what it archived.
    pub(crate) async fn connect(&self) -> Result<Session, String> {
        let mut cfg = self.pg.clone();
        // tokio-postgres applies this to each TCP/socket connect only; the timeout around the
        // call also covers DNS, the startup exchange and authentication.
        cfg.connect_timeout(self.connect_timeout);
        if cfg.get_application_name().is_none() {
            // So a DBA can tell the monitor's sessions apart in pg_stat_activity.
            cfg.application_name("backwatch-agent");
        }
        let (client, connection) = match timeout(self.connect_timeout, cfg.connect(NoTls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(format!("cannot connect: {}", chain(&e))),
            Err(_) => {
                return Err(format!(
                    "timed out after {} connecting",
                    secs(self.connect_timeout)
                ));
            }
        };
        let connection = AbortOnDrop(tokio::spawn(async move {
            // Its failures also fail the pending query, which reports them.
            if let Err(e) = connection.await {
                tracing::debug!(error = %chain(&e), "postgresql connection ended");
            }
        }));
        Ok(Session { client, connection })
    }
}

/// An open connection; [`Session::close`] ends it cleanly, dropping it aborts it.
pub(crate) struct Session {
    pub(crate) client: Client,
    connection: AbortOnDrop,
}

impl Session {
    pub(crate) async fn close(self) {
        let Session {
            client,
            mut connection,
        } = self;
        // Dropping the client lets the connection send Terminate, so the server logs a clean
        // disconnect; a server that stopped answering gets a second, then the abort.
        drop(client);
        let _ = timeout(Duration::from_secs(1), &mut connection.0).await;
    }
}

/// Aborts the connection task however the probe ends, so a dead server cannot leak a task.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What dates work in the current segment besides the observation (agent-side only, see
/// [`unswitched`]).
#[derive(Default)]
struct Dating {
    /// The writing transactions open at the sample.
    in_progress: Vec<i64>,
    /// When the newest completed segment was completed (database clock).
    last_completed: Option<DateTime<Utc>>,
}

/// A statement the verdict can do without, given until `deadline`: `None` when it did not
/// finish by then (the essential statements' results are kept either way).
async fn optional<T>(
    deadline: tokio::time::Instant,
    statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Option<Result<T, tokio_postgres::Error>> {
    let r = tokio::time::timeout_at(deadline, statement).await.ok();
    if r.is_none() {
        tracing::debug!("an optional statement was skipped: the server is slow");
    }
    r
}

/// The observation, and what dates work in the current segment. `deadline`: after it, the
/// optional statements are left out.
async fn query(
    client: &Client,
    deadline: tokio::time::Instant,
) -> Result<(WalObs, Dating), String> {
    let row = client
        .query_one(STATUS_SQL, &[])
        .await
        .map_err(|e| format!("query failed: {}", chain(&e)))?;
    let mut obs = status_from_row(&row).map_err(|e| format!("query failed: {e}"))?;
    let mut dating = Dating {
        in_progress: get::<Option<Vec<i64>>>(&row, "in_progress_xids")
            .map_err(|e| format!("query failed: {e}"))?
            .unwrap_or_default(),
        last_completed: None,
    };
    // Not available (PostgreSQL 10 and 11) or not permitted (no pg_monitor): estimated from
    // the WAL positions instead; any other failure is no measure at all.
    let mut estimate = false;
    let pending = match client.query_one(PENDING_SQL, &[]).await {
        Ok(row) => pending_from_row(&row).map_err(|e| format!("query failed: {e}")),
        Err(e) => {
            estimate = matches!(
                e.code(),
                Some(c) if *c == SqlState::UNDEFINED_FUNCTION || *c == SqlState::INSUFFICIENT_PRIVILEGE
            );
            Err(pending_note(e.code(), &e))
        }
    };
    match pending {
        Ok(p) => {
            obs.pending_source = PendingSource::ArchiveStatusdir;
            obs.ready_segments = p.ready_segments;
            obs.ready_history = p.ready_history;
            obs.ready_other = p.ready_other;
            obs.oldest_ready_name = p.oldest_name;
            obs.oldest_ready_age_secs = p.oldest_age_secs;
            obs.last_archive_latency_ms = p.last_archive_latency_ms;
            dating.last_completed = p.last_completed;
            // Same statement as the ages above: the clock they were computed on.
            obs.db_now = Some(p.db_now);
        }
        Err(note) if estimate => estimate_pending(client, &mut obs, note, deadline).await,
        Err(note) => {
            obs.pending_source = PendingSource::Unavailable;
            obs.pending_note = Some(note);
        }
    }
    // Optional, in a statement of its own: a server that revoked it is still judged; only
    // the link to restore drills (by this identifier) is missing then.
    match optional(deadline, client.query_one(SYSTEM_ID_SQL, &[])).await {
        Some(Ok(row)) => obs.system_identifier = row.try_get(0).ok().flatten(),
        Some(Err(e)) => tracing::debug!(error = %chain(&e), "system identifier not readable"),
        None => {}
    }
    // Base backups being sent now (the view exists from PostgreSQL 13): a stuck one is named.
    if obs.server_version_num >= 130_000 {
        match optional(deadline, client.query(RUNNING_BASE_BACKUPS_SQL, &[])).await {
            None => {}
            Some(Ok(rows)) => {
                obs.base_backups_running = rows
                    .iter()
                    .filter_map(|r| {
                        Some(RunningBaseBackup {
                            pid: r.try_get(0).ok()?,
                            application_name: r.try_get(1).ok().flatten(),
                            phase: r.try_get::<_, Option<String>>(2).ok().flatten()?,
                            running_secs: r.try_get(3).ok()?,
                        })
                    })
                    .collect();
            }
            Some(Err(e)) => {
                tracing::debug!(error = %chain(&e), "running base backups not readable")
            }
        }
    }
    Ok((obs, dating))
}

/// Base backups in progress, longest first: how long each WAL sender has run, on the database
/// clock (backend_start is NULL to a role without pg_read_all_stats: then 0, never a false
/// "stuck").
const RUNNING_BASE_BACKUPS_SQL: &str = "SELECT p.pid, a.application_name, p.phase::text, \
     COALESCE(EXTRACT(EPOCH FROM now() - a.backend_start), 0)::int8 \
     FROM pg_stat_progress_basebackup p LEFT JOIN pg_stat_activity a ON a.pid = p.pid \
     ORDER BY 4 DESC LIMIT 20";

/// The cluster's identity, shared by its standbys and every restore of its backups.
const SYSTEM_ID_SQL: &str = "SELECT system_identifier::text FROM pg_control_system()";

/// The pending work by WAL positions (see `wal_positions`), the oldest segment's age from its
/// file in pg_wal when `pg_stat_file()` may read it; `why` the listing was not available.
async fn estimate_pending(
    client: &Client,
    obs: &mut WalObs,
    why: String,
    deadline: tokio::time::Instant,
) {
    let seg_size = u64::try_from(obs.wal_segment_size_bytes).unwrap_or(0);
    let e = match wal_positions::estimate(
        obs.current_wal_file.as_deref(),
        obs.current_lsn.as_deref(),
        obs.last_archived_wal.as_deref(),
        seg_size,
    ) {
        Ok(e) => e,
        Err(no) => {
            obs.pending_source = PendingSource::Unavailable;
            obs.pending_note = Some(format!("{why}; no estimate from WAL positions: {no}"));
            return;
        }
    };
    let mut note = format!(
        "{why}; pending WAL estimated from WAL positions instead (the segments after the last \
         archived one up to the current one, as check_pgactivity does)"
    );
    if let Some(name) = &e.oldest {
        match optional(deadline, client.query_one(SEGMENT_AGE_SQL, &[name])).await {
            Some(Ok(row)) => obs.oldest_ready_age_secs = row.try_get(0).ok().flatten(),
            None => note.push_str("; the oldest one's age is unknown: the server was too slow"),
            Some(Err(err)) => {
                let what = match err.code() {
                    Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                        "pg_stat_file() not permitted (superuser, or EXECUTE on \
                         pg_stat_file(text, boolean))"
                            .to_string()
                    }
                    _ => chain(&err),
                };
                note.push_str(&format!("; the oldest one's age is unknown: {what}"));
            }
        }
    }
    obs.pending_source = PendingSource::WalPositions;
    obs.ready_segments = e.segments;
    obs.oldest_ready_name = e.oldest;
    obs.pending_note = Some(note);
}

/// Age of a segment's file in pg_wal on the database clock: it was last written when the
/// segment was completed, i.e. when it became ready for the archiver. NULL when gone.
const SEGMENT_AGE_SQL: &str = "SELECT (extract(epoch FROM now() - \
     (pg_stat_file('pg_wal/' || $1::text, true)).modification))::int8";

/// Why the pending list could not be read, phrased as what to do about it.
fn pending_note(code: Option<&SqlState>, e: &tokio_postgres::Error) -> String {
    match code {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            "pg_ls_archive_statusdir() not permitted: grant pg_monitor to the monitoring role"
                .into()
        }
        Some(c) if *c == SqlState::UNDEFINED_FUNCTION => {
            "pg_ls_archive_statusdir() needs PostgreSQL 12 or later".into()
        }
        _ => format!("query failed: {}", chain(e)),
    }
}

/// `archive_command` as it may leave the host: stored by the collector and shown in its API
/// (to callers with role `ack` or more). Commands sometimes carry credentials; those values are
/// masked, the shape of the command is kept so an operator can still see what runs. The rules
/// only need empty / `(disabled)` / set. Masked, quoted or not, wherever they appear (also
/// inside a quoted connection string):
/// - `NAME=value` and `--name=value` where the name says secret (`PGPASSWORD=`, `password=`,
///   `AWS_SECRET_ACCESS_KEY=`, `?token=`), and the word after `--password`-like flags;
/// - the password of `user:pass` after `-u`/`--user`/`-U`/`--proxy-user` (curl) and in URLs
///   (`s3://user:pass@host`);
/// - sshpass's `-p secret` / `-psecret`.
///
/// Best effort: a secret in a form not listed (a positional argument, a custom flag) stays.
pub fn redact_command(cmd: &str) -> String {
    let mut masked: Vec<(usize, usize)> = Vec::new();
    masked.extend(secret_assignments(cmd));
    masked.extend(url_passwords(cmd));
    masked.extend(secret_arguments(cmd));
    masked.retain(|(a, b)| a < b);
    masked.sort();
    let mut out = String::with_capacity(cmd.len());
    let mut at = 0;
    for (a, b) in masked {
        if b <= at {
            continue; // inside a range already masked
        }
        out.push_str(&cmd[at..a.max(at)]);
        if a >= at {
            out.push_str("***");
        }
        at = b;
    }
    out.push_str(&cmd[at..]);
    out
}

const SECRET_WORDS: [&str; 7] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
];

fn sensitive(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// The value starting at `i`: inside its quotes when quoted, else up to whitespace, a quote
/// or a shell operator.
fn value_at(cmd: &str, i: usize) -> (usize, usize) {
    let rest = &cmd[i..];
    match rest.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let inner = i + 1;
            let end = cmd[inner..].find(q).map_or(cmd.len(), |e| inner + e);
            (inner, end)
        }
        _ => {
            let end = rest
                .find(|c: char| c.is_whitespace() || "'\";&|)".contains(c))
                .map_or(cmd.len(), |e| i + e);
            (i, end)
        }
    }
}

/// `NAME=value` with a secret-sounding name, anywhere (also `--password=`, `?token=`).
fn secret_assignments(cmd: &str) -> Vec<(usize, usize)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    cmd.match_indices('=')
        .filter_map(|(eq, _)| {
            let name_start = cmd[..eq].rfind(|c: char| !is_name(c)).map_or(0, |p| p + 1);
            let name = cmd[name_start..eq].trim_start_matches('-');
            sensitive(name).then(|| value_at(cmd, eq + 1))
        })
        .collect()
}

/// The password in `scheme://user:password@host`.
fn url_passwords(cmd: &str) -> Vec<(usize, usize)> {
    cmd.match_indices("://")
        .filter_map(|(i, _)| {
            let start = i + 3;
            let rest = &cmd[start..];
            let authority = rest
                .find(|c: char| c.is_whitespace() || "/?#'\"".contains(c))
                .map_or(rest, |e| &rest[..e]);
            let at = authority.rfind('@')?;
            let colon = authority[..at].find(':')?;
            Some((start + colon + 1, start + at))
        })
        .collect()
}

/// Words of `cmd` as byte ranges, split at whitespace outside quotes.
fn words(cmd: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quote = None;
    for (i, c) in cmd.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push((s, i));
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, cmd.len()));
    }
    out
}

/// Secrets given as flag arguments: `--password x`, `-u user:pass`, `sshpass -p x`.
fn secret_arguments(cmd: &str) -> Vec<(usize, usize)> {
    let words = words(cmd);
    let text = |k: usize| words.get(k).map(|&(a, b)| &cmd[a..b]);
    // After `-u`, only what follows the first ':' is the password (`sudo -u postgres` has none).
    let after_colon = |(a, b): (usize, usize)| {
        let w = &cmd[a..b];
        let colon = a + w.find(':')? + 1;
        // Quoted (`'user:pass word'`): up to the closing quote, spaces and all.
        let quoted = w.len() > 1 && w.starts_with(['\'', '"']) && w.ends_with(&w[..1]);
        Some(if quoted {
            (colon, b - 1)
        } else {
            value_at(cmd, colon)
        })
    };
    let mut out = Vec::new();
    let mut sshpass_options = false;
    for (k, &(a, b)) in words.iter().enumerate() {
        let w = &cmd[a..b];
        let next = || words.get(k + 1).map(|&(na, _)| value_at(cmd, na));
        if sshpass_options {
            match w {
                "-p" => out.extend(next()),
                _ if w.starts_with("-p") => out.push((a + 2, b)),
                _ => {}
            }
            // sshpass's own options come before the command it runs; `-P prompt` takes one.
            let takes_value = |o: &str| ["-p", "-P", "-f", "-d"].contains(&o);
            sshpass_options =
                w.starts_with('-') || text(k.wrapping_sub(1)).is_some_and(takes_value);
        }
        if w == "sshpass" || w.ends_with("/sshpass") {
            sshpass_options = true;
            continue;
        }
        match w {
            "-u" | "--user" | "-U" | "--proxy-user" => {
                out.extend(words.get(k + 1).and_then(|&r| after_colon(r)));
            }
            _ if w.starts_with("--user=") || w.starts_with("--proxy-user=") => {
                out.extend(after_colon((a + w.find('=').unwrap_or(0) + 1, b)));
            }
            _ if w.starts_with("-u") && w.len() > 2 && !w.starts_with("--") => {
                out.extend(after_colon((a + 2, b)));
            }
            _ if w.starts_with("--") && !w.contains('=') && sensitive(w) => out.extend(next()),
            _ => {}
        }
    }
    out
}

// === SQL ===

/// Settings, role and archiver statistics in one statement, so they describe one moment.
///
/// `archive_command` is read with `current_setting()`, which fails loudly if a server ever
/// restricts it, rather than through the filtered `pg_settings` view, which would show a hidden
/// value as empty and fake an "archiving disabled" alarm (A5). The one call that needs
/// `pg_monitor` is `pg_ls_archive_statusdir()`, in the pending statement.
/// Timestamps: `extract(epoch ...)` is numeric from PG 14 and float8 before; for present-day
/// dates float8 is within 0.5 µs, so rounding to integer microseconds is exact either way.
const STATUS_SQL: &str = "
SELECT current_setting('server_version_num')::int4 AS server_version_num,
       pg_is_in_recovery() AS in_recovery,
       current_setting('archive_mode') AS archive_mode,
       current_setting('archive_command') AS archive_command,
       coalesce(current_setting('archive_library', true), '') AS archive_library,
       (SELECT setting::int8 FROM pg_settings WHERE name = 'archive_timeout')
           AS archive_timeout_secs,
       -- unit is 'B' from PG 11; PG 10 reports 8kB blocks
       (SELECT setting::int8 * CASE unit WHEN '8kB' THEN 8192 WHEN 'kB' THEN 1024
                                         WHEN 'MB' THEN 1048576 ELSE 1 END
          FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size_bytes,
       a.archived_count,
       a.last_archived_wal,
       (extract(epoch FROM a.last_archived_time) * 1000000)::int8 AS last_archived_us,
       a.failed_count,
       a.last_failed_wal,
       (extract(epoch FROM a.last_failed_time) * 1000000)::int8 AS last_failed_us,
       (extract(epoch FROM a.stats_reset) * 1000000)::int8 AS stats_reset_us,
       -- a standby has no current WAL position of its own, only what it received (A6)
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text
            ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal_file,
       -- moves only when a transaction writes; reading it takes no transaction id
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE txid_snapshot_xmax(txid_current_snapshot()) END AS next_xid,
       -- the writing transactions still open, of the same snapshot (at most 1,000): one that
       -- ends later than a newer one committed moves no xmax (see `unswitched`)
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ARRAY(SELECT txid_snapshot_xip(txid_current_snapshot()) LIMIT 1000)
       END AS in_progress_xids,
       (extract(epoch FROM now()) * 1000000)::int8 AS db_now_us
  FROM pg_stat_archiver a";

/// The `.ready` files waiting for the archiver and the database clock, in one statement (A3).
///
/// Counted: 24-hex-digit segments, timeline history files, and the rest (`.partial`,
/// `.backup`) separately. The oldest is taken among segments and history files, because the
/// archiver serves history files first and a stuck one holds back every segment behind it.
/// `[.]` instead of `\.` works whatever `standard_conforming_strings` says.
///
/// The same listing gives the latency of the last archived file: its `.done` file is its
/// `.ready` file renamed, so it keeps the time the segment was handed to the archiver, and
/// `last_archived_time − that` is how long it waited plus how long `archive_command` took
/// (`.done` files live until the next checkpoint; NULL once removed). The newest segment's
/// status file, by name, keeps when it was completed: the switch into the current segment,
/// before which no work in it can date (see [`unswitched`]).
const PENDING_SQL: &str = "
WITH listing AS (
    SELECT name, modification FROM pg_ls_archive_statusdir()
), ready AS (
    SELECT name, modification,
           CASE WHEN name ~ '^[0-9A-F]{24}[.]ready$' THEN 'segment'
                WHEN name ~ '^[0-9A-F]{8}[.]history[.]ready$' THEN 'history'
                ELSE 'other' END AS class
      FROM listing
     WHERE name ~ '[.]ready$'
), oldest AS (
    SELECT name, modification
      FROM ready
     WHERE class IN ('segment', 'history')
     ORDER BY modification, name
     LIMIT 1
)
SELECT count(*) FILTER (WHERE class = 'segment') AS ready_segments,
       count(*) FILTER (WHERE class = 'history') AS ready_history,
       count(*) FILTER (WHERE class = 'other') AS ready_other,
       (SELECT left(name, -length('.ready')) FROM oldest) AS oldest_ready_name,
       (SELECT extract(epoch FROM now() - modification)::int8 FROM oldest)
           AS oldest_ready_age_secs,
       (SELECT (extract(epoch FROM a.last_archived_time - l.modification) * 1000)::int8
          FROM listing l, pg_stat_archiver a
         WHERE l.name = a.last_archived_wal || '.done') AS last_archive_latency_ms,
       (SELECT (extract(epoch FROM modification) * 1000000)::int8
          FROM listing
         WHERE name ~ '^[0-9A-F]{24}[.](ready|done)$'
         ORDER BY left(name, 24) DESC
         LIMIT 1) AS last_completed_us,
       (extract(epoch FROM now()) * 1000000)::int8 AS db_now_us
  FROM ready";

fn status_from_row(row: &Row) -> Result<WalObs, String> {
    Ok(WalObs {
        server_version_num: get(row, "server_version_num")?,
        in_recovery: get(row, "in_recovery")?,
        archive_mode: get(row, "archive_mode")?,
        archive_command: redact_command(&get::<String>(row, "archive_command")?),
        archive_library: get(row, "archive_library")?,
        archive_timeout_secs: get(row, "archive_timeout_secs")?,
        wal_segment_size_bytes: get(row, "wal_segment_size_bytes")?,
        archived_count: get(row, "archived_count")?,
        last_archived_wal: get(row, "last_archived_wal")?,
        last_archived_time: time(row, "last_archived_us")?,
        failed_count: get(row, "failed_count")?,
        last_failed_wal: get(row, "last_failed_wal")?,
        last_failed_time: time(row, "last_failed_us")?,
        stats_reset: time(row, "stats_reset_us")?,
        db_now: time(row, "db_now_us")?,
        current_lsn: get(row, "current_lsn")?,
        current_wal_file: get(row, "current_wal_file")?,
        next_xid: get(row, "next_xid")?,
        ..WalObs::default()
    })
}

struct Pending {
    ready_segments: i64,
    ready_history: i64,
    ready_other: i64,
    oldest_name: Option<String>,
    oldest_age_secs: Option<i64>,
    last_archive_latency_ms: Option<i64>,
    last_completed: Option<DateTime<Utc>>,
    db_now: DateTime<Utc>,
}

fn pending_from_row(row: &Row) -> Result<Pending, String> {
    Ok(Pending {
        ready_segments: get(row, "ready_segments")?,
        ready_history: get(row, "ready_history")?,
        ready_other: get(row, "ready_other")?,
        oldest_name: get(row, "oldest_ready_name")?,
        oldest_age_secs: get(row, "oldest_ready_age_secs")?,
        last_archive_latency_ms: get(row, "last_archive_latency_ms")?,
        last_completed: time(row, "last_completed_us")?,
        db_now: time(row, "db_now_us")?.ok_or("column db_now_us: unexpected null")?,
    })
}

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, String> {
    row.try_get(column)
        .map_err(|e| format!("column {column}: {}", chain(&e)))
}

/// A nullable timestamp sent as microseconds since the epoch.
pub(crate) fn time(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>, String> {
    match get::<Option<i64>>(row, column)? {
        None => Ok(None),
        Some(us) => DateTime::from_timestamp_micros(us)
            .map(Some)
            .ok_or_else(|| format!("column {column}: {us} µs is out of range")),
    }
}

/// "0.5s", "10s".
pub(crate) fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_archive_command_are_masked() {
        use super::redact_command as r;
        assert_eq!(
            r("test ! -f /archive/%f && cp %p /archive/%f"),
            "test ! -f /archive/%f && cp %p /archive/%f"
        );
        assert_eq!(
            r("AWS_SECRET_ACCESS_KEY=abc123 wal-g wal-push %p"),
            "AWS_SECRET_ACCESS_KEY=*** wal-g wal-push %p"
        );
        assert_eq!(
            r("sshpass -p hunter2 scp %p b:/a/%f"),
            "sshpass -p *** scp %p b:/a/%f"
        );
        assert_eq!(
            r("curl --password hunter2 -T %p x"),
            "curl --password *** -T %p x"
        );
        assert_eq!(
            r("rclone copy %p s3://backup:hunter2@minio/wal"),
            "rclone copy %p s3://backup:***@minio/wal"
        );
        assert_eq!(r(""), "");
        assert_eq!(r("(disabled)"), "(disabled)");
    }

    #[test]
    fn credentials_in_other_forms_are_masked() {
        use super::redact_command as r;
        for (cmd, shown) in [
            (
                "curl -s -u backup:hunter2 -T %p https://h/wal/%f",
                "curl -s -u backup:*** -T %p https://h/wal/%f",
            ),
            (
                "curl --user 'backup:hunter 2' -T %p x",
                "curl --user 'backup:***' -T %p x",
            ),
            ("curl --user=backup:hunter2 x", "curl --user=backup:*** x"),
            ("curl -ubackup:hunter2 x", "curl -ubackup:*** x"),
            (
                "sudo -u postgres cp %p /a/%f",
                "sudo -u postgres cp %p /a/%f",
            ),
            (
                "sshpass -phunter2 scp %p b:/a/%f",
                "sshpass -p*** scp %p b:/a/%f",
            ),
            (
                "/usr/bin/sshpass -v -p 'hunter 2' scp -p %p b:/a/%f",
                "/usr/bin/sshpass -v -p '***' scp -p %p b:/a/%f",
            ),
            (
                "PGPASSWORD='hunter 2' pg_receivewal",
                "PGPASSWORD='***' pg_receivewal",
            ),
            (
                "export PGPASSWORD=hunter2; cp %p /a/%f",
                "export PGPASSWORD=***; cp %p /a/%f",
            ),
            (
                "psql \"host=db password=hunter2 user=x\" -c 'select 1'",
                "psql \"host=db password=*** user=x\" -c 'select 1'",
            ),
            (
                "sh -c 'PASSWORD=\"hunter 2\" upload %p'",
                "sh -c 'PASSWORD=\"***\" upload %p'",
            ),
            (
                "rclone copy %p 's3://backup:hunter2@minio/wal'",
                "rclone copy %p 's3://backup:***@minio/wal'",
            ),
            (
                "curl -T %p \"https://h/put?token=hunter2&f=%f\"",
                "curl -T %p \"https://h/put?token=***&f=%f\"",
            ),
            (
                "curl -T %p https://user@h/%f",
                "curl -T %p https://user@h/%f",
            ),
        ] {
            assert_eq!(r(cmd), shown, "{cmd}");
            assert!(!r(cmd).contains("hunter"), "{cmd}");
        }
    }

    use super::*;
    use std::time::Instant;

    const PASSWORD: &str = "hunter2-secret";

    fn probe(port: u16, connect_timeout: Duration) -> WalProbe {
        let mut pg = Config::new();
        pg.host("127.0.0.1")
            .port(port)
            .user("backwatch")
            .password(PASSWORD)
            .dbname("postgres");
        WalProbe {
            name: "main".into(),
            pg,
            connect_timeout,
            statement_timeout: Duration::from_secs(5),
            exposure_advisory: false,
            unswitched: Default::default(),
            pending_seen: Default::default(),
        }
    }

    #[tokio::test]
    async fn an_optional_statement_past_the_deadline_is_left_out() {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, tokio_postgres::Error>(1)
        };
        assert!(optional(deadline, slow).await.is_none());
        let quick = async { Ok::<_, tokio_postgres::Error>(2) };
        assert!(matches!(optional(deadline, quick).await, Some(Ok(2))));
    }

    #[test]
    fn an_undated_estimate_is_dated_by_how_long_the_probe_has_seen_it() {
        let p = probe(1, Duration::from_secs(1));
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let estimate = |oldest: &str| WalObs {
            pending_source: PendingSource::WalPositions,
            ready_segments: 3,
            oldest_ready_name: Some(oldest.into()),
            current_wal_file: Some("000000010000000000000008".into()),
            pending_note: Some("pg_ls_archive_statusdir() not permitted".into()),
            ..WalObs::default()
        };
        let dated = |obs: WalObs, at: DateTime<Utc>| {
            let mut obs = obs;
            p.date_estimated_oldest(&mut obs, at);
            obs
        };
        let first = dated(estimate("000000010000000000000005"), t0);
        assert_eq!(first.oldest_ready_age_secs, Some(0));
        // Still the oldest 20 minutes later: a hung archiver, at least 20 minutes old.
        let later = dated(
            estimate("000000010000000000000005"),
            t0 + chrono::Duration::minutes(20),
        );
        assert_eq!(later.oldest_ready_age_secs, Some(1200));
        assert!(
            later
                .pending_note
                .as_deref()
                .is_some_and(|n| n.contains("at least how long this agent has known it complete")),
            "{:?}",
            later.pending_note
        );
        // The archiver moved on, but 6 was complete already at the first sample (8 was
        // current): at least 21 minutes, not 0.
        let moved = dated(
            estimate("000000010000000000000006"),
            t0 + chrono::Duration::minutes(21),
        );
        assert_eq!(moved.oldest_ready_age_secs, Some(21 * 60));
        // One the probe never knew complete before (9, current now 10) starts at 0.
        let mut fresh = estimate("000000010000000000000009");
        fresh.current_wal_file = Some("00000001000000000000000A".into());
        let fresh = dated(fresh, t0 + chrono::Duration::minutes(22));
        assert_eq!(fresh.oldest_ready_age_secs, Some(0));
        // A dated listing needs nothing from the probe, and forgets what it saw.
        let listed = WalObs {
            pending_source: PendingSource::ArchiveStatusdir,
            oldest_ready_name: Some("000000010000000000000006".into()),
            oldest_ready_age_secs: Some(5),
            ..WalObs::default()
        };
        assert_eq!(dated(listed, t0).oldest_ready_age_secs, Some(5));
        let seen = p.pending_seen.lock().unwrap();
        assert!(seen.oldest.is_none() && seen.currents.is_empty());
    }

    #[tokio::test]
    async fn closed_port_is_cannot_connect_quickly() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let started = Instant::now();
        let err = probe(port, Duration::from_secs(10))
            .observe()
            .await
            .expect_err("nothing listens");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.starts_with("cannot connect: "), "{err}");
        assert!(err.contains("Connection refused"), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accepts and keeps every connection open without ever answering.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let started = Instant::now();
        let err = probe(port, Duration::from_millis(500))
            .observe()
            .await
            .expect_err("the server never answers");
        let elapsed = started.elapsed();
        server.abort();
        assert_eq!(err, "timed out after 0.5s connecting");
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn redacted_hides_the_password() {
        let mut cfg = Config::new();
        cfg.host_path("/var/run/postgresql")
            .port(5432)
            .user("backwatch")
            .password(PASSWORD)
            .dbname("postgres");
        assert_eq!(
            redacted(&cfg),
            "host=/var/run/postgresql port=5432 user=backwatch dbname=postgres"
        );
    }

    #[test]
    fn redacted_lists_hosts_and_quotes_odd_values() {
        let cfg: Config = "host=db1,db2 port=5433,5434 user='back watch' password=x dbname=it\\'s"
            .parse()
            .expect("valid connection string");
        assert_eq!(
            redacted(&cfg),
            r"host=db1,db2 port=5433,5434 user='back watch' dbname='it\'s'"
        );
        assert_eq!(redacted(&Config::new()), "port=5432");
    }

    #[test]
    fn durations_print_as_seconds() {
        assert_eq!(secs(Duration::from_millis(500)), "0.5s");
        assert_eq!(secs(Duration::from_secs(10)), "10s");
    }

    /// Checks the SQL against a real server: that it parses, decodes, and that the privilege
    /// fallback works. Needs the local PostgreSQL (socket /var/run/postgresql, trust auth for
    /// user postgres) and creates then drops the role `backwatch_probe_test`. Run as root:
    /// `cargo test -p backwatch-agent probe::wal_archive -- --ignored --nocapture`
    #[tokio::test]
    #[ignore = "needs the local PostgreSQL at /var/run/postgresql"]
    async fn local_postgresql() {
        let mut pg = Config::new();
        pg.host_path("/var/run/postgresql")
            .port(5432)
            .user("postgres")
            .dbname("postgres");
        let mut probe = WalProbe {
            name: "local".into(),
            pg: pg.clone(),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            exposure_advisory: false,
            unswitched: Default::default(),
            pending_seen: Default::default(),
        };

        let Ok(Observation::Wal(obs)) = probe.observe().await else {
            panic!("local PostgreSQL not observed");
        };
        println!("superuser: {obs:#?}");
        assert!(obs.server_version_num >= 120_000);
        assert_eq!(obs.pending_source, PendingSource::ArchiveStatusdir);
        assert_eq!(obs.pending_note, None);
        assert!(obs.wal_segment_size_bytes >= 1 << 20);
        assert!(obs.archive_timeout_secs >= 0);
        assert!(obs.current_lsn.is_some());
        assert_eq!(obs.current_wal_file.is_some(), !obs.in_recovery);
        let db_now = obs.db_now.expect("db_now");
        assert!((db_now - Utc::now()).num_seconds().abs() < 60);

        // A role that may read settings but not the archive status directory: the probe must
        // still succeed and say why the pending list is missing.
        let (admin, connection) = pg.connect(NoTls).await.expect("connect as postgres");
        tokio::spawn(connection);
        admin
            .batch_execute(
                "DROP ROLE IF EXISTS backwatch_probe_test;
                 CREATE ROLE backwatch_probe_test NOLOGIN;
                 GRANT pg_read_all_settings TO backwatch_probe_test;",
            )
            .await
            .expect("create test role");
        probe.pg.options("-c role=backwatch_probe_test");
        let outcome = probe.observe().await;
        admin
            .batch_execute("DROP ROLE backwatch_probe_test")
            .await
            .expect("drop test role");
        let Ok(Observation::Wal(obs)) = outcome else {
            panic!("unprivileged observation failed: {outcome:?}");
        };
        println!("unprivileged: {obs:#?}");
        // Not permitted: the estimate from WAL positions is tried, and says why not when it
        // cannot be made (this server has archived nothing).
        assert!(
            obs.pending_note.as_deref().is_some_and(|n| n.starts_with(
                "pg_ls_archive_statusdir() not permitted: grant pg_monitor to the monitoring role"
            )),
            "{:?}",
            obs.pending_note
        );
        assert!(obs.db_now.is_some());

        // The pending statement's classification, on a made-up archive_status listing.
        let listing = "(VALUES
            ('000000010000000000000003.ready', 0::int8, now() - interval '5 min'),
            ('000000010000000000000004.ready', 0, now() - interval '1 min'),
            ('00000002.history.ready', 0, now() - interval '20 min'),
            ('000000010000000000000002.partial.ready', 0, now() - interval '1 h'),
            ('000000010000000000000002.00000028.backup.ready', 0, now() - interval '2 h'),
            ('000000010000000000000001.done', 0, now() - interval '3 h')
        ) AS f(name, size, modification)";
        let sql = PENDING_SQL.replace("pg_ls_archive_statusdir()", listing);
        let row = admin.query_one(&sql, &[]).await.expect("pending sql");
        let p = pending_from_row(&row).expect("decodes");
        assert_eq!(
            (p.ready_segments, p.ready_history, p.ready_other),
            (2, 1, 2)
        );
        assert_eq!(p.oldest_name.as_deref(), Some("00000002.history"));
        assert_eq!(p.oldest_age_secs, Some(1200));
        // The switch into the current segment: when the newest segment by name completed.
        let completed = p.last_completed.expect("a segment's status file");
        assert_eq!((p.db_now - completed).num_seconds(), 60);
        let sql = PENDING_SQL.replace(
            "pg_ls_archive_statusdir()",
            "(SELECT 'x' AS name, now() AS modification WHERE false) AS f",
        );
        let p =
            pending_from_row(&admin.query_one(&sql, &[]).await.expect("empty")).expect("decodes");
        assert_eq!(
            (p.ready_segments, p.oldest_name, p.oldest_age_secs),
            (0, None, None)
        );

        // PostgreSQL 10 and 11 have no pg_ls_archive_statusdir(); other errors are quoted.
        let e = admin
            .query_one("SELECT pg_no_such_function()", &[])
            .await
            .expect_err("42883");
        assert_eq!(
            pending_note(e.code(), &e),
            "pg_ls_archive_statusdir() needs PostgreSQL 12 or later"
        );
        let e = admin.query_one("SELECT 1/0", &[]).await.expect_err("22012");
        assert_eq!(
            pending_note(e.code(), &e),
            "query failed: db error: ERROR: division by zero"
        );
    }
}
