//! `backwatch-collector status`: one host's checks as a Nagios/Icinga plugin line, read from
//! the store (the same line `backwatch-agent check --format nagios` prints on the host).
//!
//! Invariants:
//! - an unknown host or check is UNKNOWN (exit 3) with a message naming it, never OK;
//! - a host whose last contact is older than `silence.host_after` is UNKNOWN ("agent
//!   silent since …") even when the collector is down and the silence sweeper did not mark
//!   it: the store alone must not make a stale fleet look healthy;
//! - the statuses are the collector's verdicts as stored; performance data comes from each
//!   check's newest result with the host's merged thresholds.

use crate::config::Config;
use crate::status::Status;
use crate::store::Store;
use backwatch_rules::nagios::{self, CheckLine};
use chrono::{DateTime, Utc};

/// The plugin line and its exit code for `host` (only `check` when given) at `now`.
pub async fn status(
    store: &dyn Store,
    cfg: &Config,
    host: &str,
    check: Option<&str>,
    now: DateTime<Utc>,
) -> (String, u8) {
    let record = match store.host(host).await {
        Ok(Some(h)) => h,
        Ok(None) => return nagios::unknown(&format!("no host {host:?} has reported")),
        Err(e) => return nagios::unknown(&format!("reading the store: {e}")),
    };
    // Its alerts were resolved when it was retired; its last states are history.
    match store.retired_host(host).await {
        Ok(Some(r)) => {
            return nagios::unknown(&format!(
                "host {host:?} was retired by {} at {}: {}",
                r.retired_by,
                r.retired_at.format("%Y-%m-%d %H:%M UTC"),
                r.reason
            ));
        }
        Ok(None) => {}
        Err(e) => return nagios::unknown(&format!("reading the store: {e}")),
    }
    let states = match store.check_states(Some(host)).await {
        Ok(s) => s,
        Err(e) => return nagios::unknown(&format!("reading the store: {e}")),
    };
    let states: Vec<_> = states
        .into_iter()
        .filter(|s| check.is_none_or(|c| c == s.check))
        .collect();
    if let Some(c) = check
        && states.is_empty()
    {
        return nagios::unknown(&format!("host {host:?} has no check {c:?}"));
    }
    let quiet = (now - record.last_contact).to_std().unwrap_or_default();
    let silent = record.silent || quiet > cfg.silence.host_after;
    // Overrides by a group that selects labels need this host's labels, which the store has.
    cfg.thresholds
        .labels()
        .set(host, record.facts.labels.clone());
    let limits = cfg.thresholds.for_host(host);
    let lines: Vec<CheckLine> = states
        .iter()
        .map(|s| CheckLine {
            check: s.check.clone(),
            status: if silent { Status::Unknown } else { s.status },
            summary: if silent && s.status != Status::Unknown {
                format!("was {}: {}", s.status, s.summary)
            } else {
                s.summary.clone()
            },
            perf: s
                .last_result
                .as_ref()
                .map(|r| nagios::perfdata(r, &limits))
                .unwrap_or_default(),
        })
        .collect();
    let (line, code) = nagios::status_line(&lines);
    if silent {
        let since = record.last_contact.format("%Y-%m-%d %H:%M:%S UTC");
        let rest = line.strip_prefix("BACKWATCH UNKNOWN - ").unwrap_or(&line);
        return (
            format!("BACKWATCH UNKNOWN - {host}: agent silent since {since}; {rest}"),
            3,
        );
    }
    (line, code)
}
