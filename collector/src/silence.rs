//! Silence is a status (docs/checks.md R28, R29).
//!
//! - A host with no contact (hello, results or ping) for `host_after` is silent: one host-level
//!   state, and each of its checks turns unknown with "agent silent since ...".
//! - A check with no result for `2 × interval + check_grace` (while its host still talks) turns
//!   unknown with "no result for ..."; a check with interval 0 is not scheduled and never does
//!   ([`overdue_after`]).
//!
//! Times compared here are the collector's own (`last_contact`, `received_at`), never the
//! agent's, so agent clock skew cannot hide silence.

use crate::config::Silence;
use crate::human;
use crate::leader::Leader;
use crate::status::Status;
use crate::store::{CheckClock, Store, StoreResult};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, warn};

/// How long after its last result a check the agent runs every `interval_secs` is overdue:
/// two intervals plus `grace`. `None` for interval 0: a check sent only on a change and at the
/// agent's start (`disk.agent-spool`) is not scheduled, so no time without a result makes it
/// overdue. Every judge of staleness (this sweep, the daily report) asks here.
pub fn overdue_after(interval_secs: u32, grace: Duration) -> Option<Duration> {
    (interval_secs > 0).then(|| Duration::from_secs(2 * u64::from(interval_secs)) + grace)
}

/// One pass over the fleet. Returns (hosts newly silent, checks newly overdue).
///
/// Quiet time counts from the later of the last contact and `started` (this collector's
/// start): time the collector itself was down is not the agents' silence, and paging the
/// whole fleet after an upgrade would be a storm of false alarms.
pub async fn sweep(
    store: &dyn Store,
    cfg: &Silence,
    now: DateTime<Utc>,
    started: DateTime<Utc>,
) -> StoreResult<(usize, usize)> {
    sweep_with(store, cfg, now, started, &mut Returns::new()).await
}

/// When each host was first seen back from a silence, while checks of it still say "agent
/// silent": their results are on their way (probes starting, spools draining behind the
/// fleet's), so they are overdue only a whole allowance after that, not at once.
pub type Returns = HashMap<String, DateTime<Utc>>;

/// [`sweep`], remembering across passes when hosts came back (`back`).
pub async fn sweep_with(
    store: &dyn Store,
    cfg: &Silence,
    now: DateTime<Utc>,
    started: DateTime<Utc>,
    back: &mut Returns,
) -> StoreResult<(usize, usize)> {
    let mut silenced = 0;
    let mut overdue = 0;
    let host_after = chrono::Duration::from_std(cfg.host_after).unwrap_or(chrono::Duration::MAX);
    // A few queries per sweep whatever the fleet's size; writes only for what changes. A
    // retired host is not expected to speak: never silent, its checks never overdue.
    let retired = store.retired_set().await?;
    let hosts: Vec<_> = store
        .hosts()
        .await?
        .into_iter()
        .filter(|h| !retired.contains(&h.host))
        .collect();
    let clocks = store.check_clocks().await?;
    let mut checks_of: HashMap<&str, Vec<&CheckClock>> = HashMap::new();
    for c in &clocks {
        checks_of.entry(c.host.as_str()).or_default().push(c);
    }
    for h in &hosts {
        let checks = checks_of.remove(h.host.as_str()).unwrap_or_default();
        let quiet_for = now - h.last_contact.max(started);
        let silence_left = |c: &&CheckClock| crate::store::silence_unknown(c.status, &c.summary);
        if quiet_for > host_after || h.silent || !checks.iter().any(silence_left) {
            back.remove(&h.host);
        } else {
            back.entry(h.host.clone()).or_insert(now);
        }
        let back_at = back.get(&h.host).copied();
        if quiet_for > host_after {
            if !h.silent {
                if !store
                    .set_host_silent_at(&h.host, true, now, Some(h.last_contact))
                    .await?
                {
                    continue; // it spoke while we were deciding
                }
                warn!(host = %h.host, quiet_s = quiet_for.num_seconds(), "agent silent");
                silenced += 1;
            }
            let summary = format!(
                "{} {} (no contact for {})",
                crate::store::AGENT_SILENT_SUMMARY,
                h.last_contact.format("%Y-%m-%d %H:%M:%S UTC"),
                human::duration(quiet_for.num_seconds())
            );
            for c in checks {
                // Once per check: the summary's "no contact for" is not refreshed every sweep.
                if !silence_left(&c) {
                    store
                        .set_check_status(
                            &h.host,
                            &c.check,
                            Status::Unknown,
                            &summary,
                            now,
                            c.received_at,
                        )
                        .await?;
                }
            }
            continue;
        }
        for c in checks {
            let Some(received) = c.received_at else {
                continue;
            };
            let Some(allowed) = overdue_after(c.interval_secs, cfg.check_grace) else {
                continue;
            };
            let allowed = chrono::Duration::from_std(allowed).unwrap_or(chrono::Duration::MAX);
            // Overdue only while the host still speaks: it was in contact after the check's
            // result was due. A host that went quiet before that is the silence's one alert
            // (R28), not one per check whose interval is long (a tool's 10 min: overdue at
            // 25 min, before the host's 30).
            let spoke_since_due = received
                .checked_add_signed(allowed)
                .is_some_and(|due| h.last_contact > due);
            // Unknown already, unless only because of a silence that is over: the host is
            // back, and a probe of it that still sends nothing (a broken one, never) is
            // overdue a whole allowance after the host came back, not "agent silent" for
            // days; counted from its return, so results on their way raise nothing.
            let (judgeable, from) = if silence_left(&c) {
                (true, received.max(back_at.unwrap_or(now)))
            } else {
                (c.status != Status::Unknown, received)
            };
            if now - from > allowed && judgeable && spoke_since_due {
                let summary = format!(
                    "no result for {} (expected every {})",
                    human::duration((now - received).num_seconds()),
                    human::duration(i64::from(c.interval_secs))
                );
                warn!(host = %h.host, check = %c.check, "check overdue");
                if store
                    .set_check_status(
                        &h.host,
                        &c.check,
                        Status::Unknown,
                        &summary,
                        now,
                        Some(received),
                    )
                    .await?
                {
                    overdue += 1;
                }
            }
        }
    }
    Ok((silenced, overdue))
}

/// From when agents' quiet time counts (the `started` of [`sweep`]): the collector's start,
/// and again whenever this collector could not judge because the store failed or it lost the
/// leadership it held (the store unreachable, mostly). Agents could not record contact then,
/// and are still in their reconnect backoff when it returns: counting their quiet from before
/// would page the whole fleet as silent after a long store outage. A collector taking over
/// from another that led (it never led itself) keeps its start: the other judged until then.
#[derive(Debug, Clone, Copy)]
struct QuietClock {
    from: DateTime<Utc>,
    leading: bool,
    /// Judging stopped (leadership lost, or a sweep failed) and has not resumed since.
    interrupted: bool,
}

impl QuietClock {
    fn new(started: DateTime<Utc>) -> QuietClock {
        QuietClock {
            from: started,
            leading: false,
            interrupted: false,
        }
    }

    /// Whether to sweep at `now`, and from when quiet counts.
    fn tick(&mut self, leading: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !leading {
            self.interrupted |= self.leading;
            self.leading = false;
            return None;
        }
        self.leading = true;
        if self.interrupted {
            self.from = now;
            self.interrupted = false;
        }
        Some(self.from)
    }

    fn swept(&mut self, ok: bool) {
        self.interrupted |= !ok;
    }
}

/// Run [`sweep`] every `sweep_every` until the process ends.
pub async fn run(store: Arc<dyn Store>, cfg: Silence, leader: Leader) {
    let mut clock = QuietClock::new(Utc::now());
    let mut back = Returns::new();
    let mut tick = tokio::time::interval(cfg.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Utc::now();
        // Another collector on the same store judges the fleet (see `leader`).
        let Some(from) = clock.tick(leader.is_leader(), now) else {
            continue;
        };
        let result = sweep_with(store.as_ref(), &cfg, now, from, &mut back).await;
        if let Err(e) = &result {
            error!(error = %e, "silence sweep failed");
        }
        clock.swept(result.is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_counts_again_after_judging_was_interrupted_not_after_a_takeover() {
        let t = |m: i64| at(m * 60_000);
        let mut c = QuietClock::new(t(0));
        assert_eq!(c.tick(false, t(1)), None, "another collector leads");
        assert_eq!(c.tick(true, t(2)), Some(t(0)), "a takeover keeps the start");
        c.swept(true);
        assert_eq!(c.tick(true, t(3)), Some(t(0)));
        // The store failed: judging resumes with quiet counted from then.
        c.swept(false);
        assert_eq!(c.tick(true, t(40)), Some(t(40)));
        c.swept(true);
        assert_eq!(c.tick(true, t(41)), Some(t(40)));
        // Leadership lost (the store unreachable) and regained.
        assert_eq!(c.tick(false, t(42)), None);
        assert_eq!(c.tick(true, t(90)), Some(t(90)));
    }
    use crate::store::SqlStore;
    use crate::store::suite::{at, evaluated, probe_result, unique_host};
    use backwatch_proto::model::ProbeKind;

    fn cfg() -> Silence {
        Silence {
            host_after: Duration::from_secs(1800),
            check_grace: Duration::from_secs(300),
            sweep_every: Duration::from_secs(30),
        }
    }

    /// One host with a disk check (interval 60 s) received at `at(1)`, last contact `contact`.
    async fn fleet(contact: i64) -> (SqlStore, String) {
        let store = SqlStore::open("sqlite::memory:").await.unwrap();
        let host = unique_host("db");
        store.touch_host(&host, at(contact), None).await.unwrap();
        let r = probe_result(&host, 1, ProbeKind::Disk, "backup", 0);
        store
            .record_results(&host, &[evaluated(r, Status::Ok, "fine")])
            .await
            .unwrap();
        (store, host)
    }

    async fn backup_state(store: &SqlStore, host: &str) -> crate::store::CheckState {
        store
            .check_state(host, "disk.backup")
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn check_without_result_for_two_intervals_plus_grace_is_unknown() {
        let (store, host) = fleet(1000).await;
        // 2 × 60 s + 300 s after receipt at 1 s: not yet at 421 s, overdue at 422 s.
        assert_eq!(sweep(&store, &cfg(), at(421), at(0)).await.unwrap(), (0, 0));
        assert_eq!(sweep(&store, &cfg(), at(422), at(0)).await.unwrap(), (0, 1));
        let c = backup_state(&store, &host).await;
        assert_eq!(c.status, Status::Unknown);
        assert!(
            c.summary
                .starts_with("no result for 7 min (expected every 60 s)"),
            "{}",
            c.summary
        );
        // Already unknown: no second transition.
        assert_eq!(sweep(&store, &cfg(), at(500), at(0)).await.unwrap(), (0, 0));
    }

    #[test]
    fn interval_zero_is_never_overdue() {
        let grace = Duration::from_secs(300);
        assert_eq!(overdue_after(0, grace), None);
        assert_eq!(overdue_after(60, grace), Some(Duration::from_secs(420)));
    }

    #[tokio::test]
    async fn a_host_that_went_quiet_is_one_silence_not_overdue_checks_first() {
        // Last contact at 100 s, the check's result due at 421 s: the host stopped speaking
        // before; host_after (1800 s) makes it silent, with the check, in one alert.
        let (store, _host) = fleet(100).await;
        assert_eq!(
            sweep(&store, &cfg(), at(1000), at(0)).await.unwrap(),
            (0, 0)
        );
        assert_eq!(
            sweep(&store, &cfg(), at(1901), at(0)).await.unwrap(),
            (1, 0)
        );
    }

    #[tokio::test]
    async fn a_check_sent_without_interval_stays_as_it_is() {
        let store = SqlStore::open("sqlite::memory:").await.unwrap();
        let host = unique_host("db");
        store.touch_host(&host, at(100_000), None).await.unwrap();
        let mut r = probe_result(&host, 1, ProbeKind::Disk, "agent-spool", 0);
        r.interval_secs = 0;
        store
            .record_results(&host, &[evaluated(r, Status::Ok, "fine")])
            .await
            .unwrap();
        // A day after its only result, the host still talking: not overdue.
        assert_eq!(
            sweep(&store, &cfg(), at(86_400), at(0)).await.unwrap(),
            (0, 0)
        );
        let c = store
            .check_state(&host, "disk.agent-spool")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.status, c.summary.as_str()), (Status::Ok, "fine"));
    }

    #[tokio::test]
    async fn host_without_contact_is_silent_once_with_all_checks_unknown() {
        let (store, host) = fleet(1).await;
        assert_eq!(sweep(&store, &cfg(), at(1801), at(0)).await.unwrap().0, 0);
        assert_eq!(sweep(&store, &cfg(), at(1802), at(0)).await.unwrap().0, 1);
        assert_eq!(
            sweep(&store, &cfg(), at(1900), at(0)).await.unwrap().0,
            0,
            "silence is reported once"
        );
        let h = store.host(&host).await.unwrap().unwrap();
        assert!(h.silent);
        let c = backup_state(&store, &host).await;
        assert_eq!(c.status, Status::Unknown);
        assert!(c.summary.starts_with("agent silent since"), "{}", c.summary);
    }

    #[tokio::test]
    async fn a_check_still_without_results_after_its_host_came_back_is_overdue() {
        let (store, host) = fleet(1).await;
        assert_eq!(sweep(&store, &cfg(), at(1802), at(0)).await.unwrap().0, 1);
        // The host is back (contact at 1900, not silent) but the check sends nothing.
        store.touch_host(&host, at(1900), None).await.unwrap();
        store.set_host_silent(&host, false).await.unwrap();
        let before = store.transitions(&host, at(0)).await.unwrap().len();
        let mut back = Returns::new();
        let mut pass = async |t: i64| {
            // The host keeps talking; its check does not.
            store.touch_host(&host, at(t), None).await.unwrap();
            sweep_with(&store, &cfg(), at(t), at(0), &mut back)
                .await
                .unwrap()
        };
        // Just back: its results may be on their way (2 × 60 s + 300 s from the return).
        assert_eq!(pass(1901).await, (0, 0));
        assert_eq!(pass(1901 + 420).await, (0, 0));
        assert_eq!(pass(1901 + 421).await, (0, 1));
        let c = backup_state(&store, &host).await;
        assert_eq!(c.status, Status::Unknown);
        assert!(
            c.summary.starts_with("no result for 38 min"),
            "{}",
            c.summary
        );
        // A change the alert engine sees (the silence's unknown was never alerted per check).
        assert_eq!(
            store.transitions(&host, at(0)).await.unwrap().len(),
            before + 1
        );
        // Once: still overdue at the next sweep, no further change.
        assert_eq!(pass(2400).await, (0, 0));
    }

    #[tokio::test]
    async fn collector_downtime_is_not_the_agents_silence() {
        let (store, host) = fleet(1).await;
        // The collector was down until at(1800) and has only just started.
        assert_eq!(
            sweep(&store, &cfg(), at(1900), at(1800)).await.unwrap().0,
            0
        );
        assert!(!store.host(&host).await.unwrap().unwrap().silent);
        // Still nothing from the agent a full host_after after the start: now it is silent.
        assert_eq!(
            sweep(&store, &cfg(), at(3601), at(1800)).await.unwrap().0,
            1
        );
    }

    #[tokio::test]
    async fn contact_after_the_sweep_looked_wins() {
        let (store, host) = fleet(1).await;
        // The sweep saw last contact at(1); the agent spoke at(1900) before it acted.
        store.touch_host(&host, at(1900), None).await.unwrap();
        assert!(
            !store
                .set_host_silent_at(&host, true, at(1901), Some(at(1)))
                .await
                .unwrap()
        );
        // And a check result received after the sweep's look is not overwritten.
        assert!(
            !store
                .set_check_status(
                    &host,
                    "disk.backup",
                    Status::Unknown,
                    "late",
                    at(1901),
                    Some(at(0))
                )
                .await
                .unwrap()
        );
    }
}
