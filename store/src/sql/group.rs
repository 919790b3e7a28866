//! The set-based write of a group commit: the results of many hosts in a constant number of
//! statements, whatever the group's size (each statement carries up to 256 rows, see
//! `multi_row`). Inside the caller's transaction:
//!
//! 1. insert every result (`ON CONFLICT DO NOTHING RETURNING`: what comes back is new);
//! 2. fold the new ones into their hour and day rollups (`rollups::apply_group`);
//! 3. read the states of the checks they belong to (locked on PostgreSQL), decide in memory,
//!    in arrival order, what each result does to its check, and write the final states;
//! 4. append the transitions;
//! 5. touch the hosts (their last contact), which also says whether one is marked silent.
//!
//! Invariants (the same as one-by-one writes had, and `store::suite` checks both backends):
//! - a result id seen twice in a group, or already stored, is a duplicate and changes nothing;
//! - the state of a check reflects its newest measurement; a result measured before the
//!   state's `observed_at` (a spool replay after newer results got through) is history only;
//! - a transition is recorded exactly when a result changed its check's status, with the
//!   result's `received_at` as its time, and several results of one check in one group give
//!   the transitions they would have given one at a time, in order;
//! - every statement takes its rows in key order, and every group runs the statements in the
//!   same order, so concurrent groups (several writers, several collectors) lock rows in one
//!   global order and cannot deadlock each other.

use super::multi_row::{AnyQuery, MultiRow};
use super::rollups::{self, NewResult};
use super::write::{Change, lock_transition_log, query_error, to_json};
use super::{Backend, read};
use crate::{Evaluated, HostWrite, HostWritten, Inserted, StoreResult, ordered_at};
use backwatch_rules::status::Status;
use sqlx::AnyConnection;
use std::collections::{BTreeMap, HashMap, HashSet};

static INSERT_RESULTS: MultiRow = MultiRow::new(include_str!("../queries/insert_result.sql"));
static UPSERT_STATES: MultiRow = MultiRow::new(include_str!("../queries/upsert_check_state.sql"));
static INSERT_TRANSITIONS: MultiRow =
    MultiRow::new(include_str!("../queries/insert_transition.sql"));
static TOUCH_HOSTS: MultiRow = MultiRow::new(include_str!("../queries/touch_host.sql"));

/// The states of the listed checks, each looked up by its primary key; see `rollups` for why
/// `CROSS JOIN` on SQLite and `LATERAL` (locking in key order) on PostgreSQL.
macro_rules! state_keys {
    () => {
        "WITH k (k_host, k_check) AS (VALUES (CAST($1 AS TEXT), CAST($2 AS TEXT))) "
    };
}
static READ_STATES_SQLITE: MultiRow = MultiRow::new(concat!(
    state_keys!(),
    "SELECT host, check_id, status, since, observed_at, summary FROM k CROSS JOIN check_state \
     WHERE host = k_host AND check_id = k_check"
));
static READ_STATES_POSTGRES: MultiRow = MultiRow::new(concat!(
    state_keys!(),
    "SELECT s.* FROM k CROSS JOIN LATERAL (SELECT host, check_id, status, since, observed_at, \
     summary FROM check_state WHERE host = k_host AND check_id = k_check FOR UPDATE) s"
));

/// One result of the group, as first seen (later copies of its id are duplicates).
struct Candidate<'a> {
    write: usize,
    index: usize,
    host: &'a str,
    item: &'a Evaluated,
    check: String,
    /// See [`ordered_at`].
    ordered_at: i64,
    received_at: i64,
}

/// What deciding a check needs of its state.
#[derive(Clone, Copy)]
struct Seen {
    status: Status,
    since: i64,
    observed_at: Option<i64>,
    /// Unknown because the host's agent was silent (the sweep's, see
    /// [`crate::AGENT_SILENT_SUMMARY`]), not by the agent's own result.
    silence: bool,
}

/// Store `writes` in the caller's transaction; `touch`: also record each host's contact (a
/// group commit does, `record_results` does not). One answer per write, in order.
pub(super) async fn write(
    conn: &mut AnyConnection,
    backend: Backend,
    writes: &[HostWrite<'_>],
    touch: bool,
) -> StoreResult<Vec<HostWritten>> {
    let mut out: Vec<HostWritten> = writes
        .iter()
        .map(|w| HostWritten {
            inserted: vec![Inserted::Duplicate; w.items.len()],
            silent: false,
            changed: false,
        })
        .collect();
    let candidates = candidates(writes)?;
    let new = insert_results(conn, &candidates).await?;
    let news: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| new.contains(&(c.host, c.item.result.result_id.as_str())))
        .collect();
    for c in &news {
        out[c.write].inserted[c.index] = Inserted::New;
    }
    let folded: Vec<NewResult<'_>> = news
        .iter()
        .map(|c| NewResult {
            host: c.host,
            check: &c.check,
            item: c.item,
        })
        .collect();
    rollups::apply_group(conn, backend, &folded).await?;
    let changes = apply_states(conn, backend, &news).await?;
    if !changes.is_empty() {
        if backend == Backend::Postgres {
            lock_transition_log(conn).await?;
        }
        INSERT_TRANSITIONS
            .execute(conn, &changes, |q, (_, c)| bind_change(q, c))
            .await
            .map_err(query_error("insert transitions"))?;
        for (write, _) in &changes {
            out[*write].changed = true;
        }
    }
    if touch {
        let silent = touch_hosts(conn, writes).await?;
        for (w, written) in writes.iter().zip(&mut out) {
            written.silent = silent.contains(w.host);
        }
    }
    Ok(out)
}

/// Every result of the group but repeats of an id already in it, in arrival order.
fn candidates<'a>(writes: &[HostWrite<'a>]) -> StoreResult<Vec<Candidate<'a>>> {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut out = Vec::new();
    for (write, w) in writes.iter().enumerate() {
        for (index, item) in w.items.iter().enumerate() {
            if !seen.insert((w.host, item.result.result_id.as_str())) {
                continue;
            }
            out.push(Candidate {
                write,
                index,
                host: w.host,
                item,
                check: item.result.check_id(),
                ordered_at: ordered_at(&item.result, item.received_at),
                received_at: item.received_at.timestamp_millis(),
            });
        }
    }
    Ok(out)
}

/// Insert the candidates' results; returns the (host, result id) of those that were new.
async fn insert_results<'a>(
    conn: &mut AnyConnection,
    candidates: &[Candidate<'a>],
) -> StoreResult<HashSet<(&'a str, &'a str)>> {
    // Serialised before the statement: binding cannot fail halfway.
    let mut rows: Vec<(&Candidate<'_>, Option<String>)> = candidates
        .iter()
        .map(|c| {
            let observation = c.item.result.observation.as_ref();
            Ok((
                c,
                observation.map(|o| to_json("observation", o)).transpose()?,
            ))
        })
        .collect::<StoreResult<_>>()?;
    rows.sort_by(|(a, _), (b, _)| {
        (a.host, &a.item.result.result_id).cmp(&(b.host, &b.item.result.result_id))
    });
    let returned = INSERT_RESULTS
        .fetch(conn, &rows, |q, (c, observation)| {
            let (r, v) = (&c.item.result, &c.item.verdict);
            q.bind(r.result_id.clone())
                .bind(c.host.to_string())
                .bind(c.check.clone())
                .bind(r.kind.name())
                .bind(r.measured_at.timestamp_millis())
                .bind(c.received_at)
                .bind(v.status.as_str())
                .bind(v.summary.clone())
                .bind(r.error.clone())
                .bind(observation.clone())
                .bind(i64::from(r.duration_ms))
                .bind(i64::from(r.interval_secs))
        })
        .await
        .map_err(query_error("insert results"))?;
    let mut new = HashSet::with_capacity(returned.len());
    let by_key: HashMap<(&str, &str), &Candidate<'a>> = candidates
        .iter()
        .map(|c| ((c.host, c.item.result.result_id.as_str()), c))
        .collect();
    for row in returned {
        let host: String = read::get(&row, "host")?;
        let id: String = read::get(&row, "result_id")?;
        if let Some(c) = by_key.get(&(host.as_str(), id.as_str())) {
            new.insert((c.host, c.item.result.result_id.as_str()));
        }
    }
    Ok(new)
}

/// Decide what each new result does to its check's state, write the final states, and
/// return the transitions to append (with the write each belongs to), in order.
async fn apply_states<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    news: &[&'a Candidate<'a>],
) -> StoreResult<Vec<(usize, Change<'a>)>> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: Vec<(&str, &str)> = news.iter().map(|c| (c.host, c.check.as_str())).collect();
    keys.sort_unstable();
    keys.dedup();
    let read_states = match backend {
        Backend::Sqlite => &READ_STATES_SQLITE,
        Backend::Postgres => &READ_STATES_POSTGRES,
    };
    let rows = read_states
        .fetch_keys(conn, &keys, |q, (host, check)| {
            q.bind(host.to_string()).bind(check.to_string())
        })
        .await
        .map_err(query_error("read check states"))?;
    let mut states: HashMap<(String, String), Seen> = HashMap::with_capacity(rows.len());
    for row in rows {
        let status = read::status(&row, "status")?;
        let summary: String = read::get(&row, "summary")?;
        let seen = Seen {
            status,
            since: read::get(&row, "since")?,
            observed_at: read::get(&row, "observed_at")?,
            silence: crate::silence_unknown(status, &summary),
        };
        states.insert(
            (read::get(&row, "host")?, read::get(&row, "check_id")?),
            seen,
        );
    }
    let mut finals: BTreeMap<(&str, &str), (&Candidate<'_>, i64)> = BTreeMap::new();
    let mut changes = Vec::new();
    for c in news {
        let key = (c.host.to_string(), c.check.clone());
        let prev = states.get(&key).copied();
        // The state shows the newest measurement. A result measured before the one the
        // state already holds belongs to history only: applying it would roll the status
        // back and invent two transitions. Equal times are applied: the later arrival wins.
        if prev.is_some_and(|p| p.observed_at.is_some_and(|seen| c.ordered_at < seen)) {
            continue;
        }
        let verdict = &c.item.verdict;
        let from = prev.map(|p| p.status);
        // The agent back with an unknown of its own (PostgreSQL did not start after a reboot):
        // a change from the silence's unknown, which the engine did not alert on.
        let changed = from != Some(verdict.status) || prev.is_some_and(|p| p.silence);
        let since = match prev {
            Some(p) if !changed => p.since,
            _ => c.received_at,
        };
        states.insert(
            key,
            Seen {
                status: verdict.status,
                since,
                observed_at: Some(c.ordered_at),
                silence: false,
            },
        );
        finals.insert((c.host, c.check.as_str()), (*c, since));
        if changed {
            let change = Change {
                host: c.host,
                check: &c.check,
                at: c.received_at,
                from,
                to: verdict.status,
                summary: &verdict.summary,
                result_id: Some(&c.item.result.result_id),
            };
            changes.push((c.write, change));
        }
    }
    // Only a check's final state is serialised and written, however many results it had.
    let rows: Vec<(&Candidate<'_>, i64, String, String)> = finals
        .into_values()
        .map(|(c, since)| {
            let last = to_json("last result", &c.item.result)?;
            let details = to_json("verdict details", &c.item.verdict.details)?;
            Ok((c, since, last, details))
        })
        .collect::<StoreResult<_>>()?;
    UPSERT_STATES
        .execute(conn, &rows, |q, (c, since, last, details)| {
            let (r, v) = (&c.item.result, &c.item.verdict);
            q.bind(c.host.to_string())
                .bind(c.check.clone())
                .bind(v.status.as_str())
                .bind(v.summary.clone())
                .bind(*since)
                .bind(c.ordered_at)
                .bind(c.received_at)
                .bind(i64::from(r.interval_secs))
                .bind(r.result_id.clone())
                .bind(last.clone())
                .bind(details.clone())
        })
        .await
        .map_err(query_error("upsert check states"))?;
    Ok(changes)
}

fn bind_change(q: AnyQuery, c: &Change<'_>) -> AnyQuery {
    q.bind(c.host.to_string())
        .bind(c.check.to_string())
        .bind(c.at)
        .bind(c.from.map(Status::as_str))
        .bind(c.to.as_str())
        .bind(c.summary.to_string())
        .bind(c.result_id.map(str::to_string))
}

/// Move every host's last contact forward (one row per host, its latest contact in the
/// group); returns the hosts that are marked silent.
async fn touch_hosts<'a>(
    conn: &mut AnyConnection,
    writes: &[HostWrite<'a>],
) -> StoreResult<HashSet<String>> {
    let mut contact: BTreeMap<&str, i64> = BTreeMap::new();
    for w in writes {
        let at = w.contact.timestamp_millis();
        contact
            .entry(w.host)
            .and_modify(|t| *t = (*t).max(at))
            .or_insert(at);
    }
    let hosts: Vec<(&str, i64)> = contact.into_iter().collect();
    let mut silent = HashSet::new();
    for row in TOUCH_HOSTS
        .fetch(conn, &hosts, |q, (host, at)| {
            q.bind(host.to_string()).bind(*at)
        })
        .await
        .map_err(query_error("touch hosts"))?
    {
        if read::get::<i64>(&row, "silent")? != 0 {
            silent.insert(read::get(&row, "host")?);
        }
    }
    Ok(silent)
}
