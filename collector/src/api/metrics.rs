//! `GET /metrics`: the fleet and the collector itself in the Prometheus text exposition format
//! (version 0.0.4), written by hand: a few dozen lines here cost less than a metrics crate and
//! its registry in the collector's dependency tree.
//!
//! Invariants:
//! - the same access as `/api/` reads: a `read` (or `ack`) bearer token, a trusted proxy user,
//!   or open mode on loopback; Prometheus sends the token with `authorization.credentials`;
//! - every family has `# HELP` and `# TYPE`, names carry their unit (`_seconds`, `_bytes`,
//!   `_ratio`, `_total` for counters), label values are escaped (`\\`, `"`, line feed);
//! - per-check values come from the newest stored observation only: a check without one (or
//!   whose probe could not observe) has a status series and no value series, never a 0;
//! - the in-process counters ([`COLLECTOR`]) start at 0 with the process, as Prometheus
//!   counters do; the store read that builds this page is timed into a histogram.

use super::ApiState;
use super::auth;
use crate::status::Status;
use crate::store::outbox::OutboxState;
use crate::store::{CheckState, HostRecord};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use backwatch_proto::model::Observation;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the store latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counters of the running collector, shared with the code that counts.
pub struct Counters {
    results_ingested: AtomicU64,
    /// Refused by a limit on one agent identity: [checks per host, streams per minute].
    refused: [AtomicU64; 2],
    store_buckets: [AtomicU64; BUCKETS.len()],
    store_count: AtomicU64,
    store_sum_micros: AtomicU64,
}

pub static COLLECTOR: Counters = Counters {
    results_ingested: AtomicU64::new(0),
    refused: [const { AtomicU64::new(0) }; 2],
    store_buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
    store_count: AtomicU64::new(0),
    store_sum_micros: AtomicU64::new(0),
};

impl Counters {
    /// Results accepted from agents and stored (a replayed duplicate counts again).
    pub fn ingested(&self, n: usize) {
        self.results_ingested.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Results refused because their host is over `grpc.max_checks_per_host`.
    pub fn refused_checks(&self, n: usize) {
        self.refused[0].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Streams refused because their identity opened more than `grpc.max_streams_per_minute`.
    pub fn refused_stream(&self) {
        self.refused[1].fetch_add(1, Ordering::Relaxed);
    }

    fn store_read(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (b, le) in self.store_buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.store_count.fetch_add(1, Ordering::Relaxed);
        self.store_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The handler: authenticates like `/api/` (the guard only covers `/api/`), then renders.
pub async fn metrics(State(s): State<ApiState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Err(denied) = auth::authenticate(&s.dashboard.auth.get(), peer, req.headers())
        .and_then(|id| auth::authorize(&id, req.method()))
    {
        tracing::info!(peer = ?peer, denied = ?denied, "metrics scrape refused");
        return denied.into_response();
    }
    let started = Instant::now();
    let read = async {
        // Retired hosts are out of the fleet: no series of theirs.
        let retired = s.store.retired_set().await?;
        let mut hosts = s.store.hosts().await?;
        hosts.retain(|h| !retired.contains(&h.host));
        let mut checks = s.store.check_states(None).await?;
        checks.retain(|c| !retired.contains(&c.host));
        let outbox = s.store.outbox_counts().await?;
        Ok::<_, crate::store::StoreError>((hosts, checks, outbox))
    }
    .await;
    COLLECTOR.store_read(started.elapsed());
    match read {
        Ok((hosts, checks, outbox)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(&hosts, &checks, &outbox, &COLLECTOR),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics store read failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// The backup tools' figures per stanza or server (label `set`), beside the per-check ones
/// where the stalest set speaks: a check with several stanzas shows each.
fn sets(out: &mut String, checks: &[CheckState]) {
    let tool_sets = || {
        checks.iter().flat_map(|s| {
            let sets = match s.last_result.as_ref().and_then(|r| r.observation.as_ref()) {
                Some(Observation::PgBackRest(o) | Observation::Barman(o)) if o.error.is_none() => {
                    o.sets.as_slice()
                }
                _ => &[],
            };
            sets.iter().map(move |set| (s, set))
        })
    };
    {
        let mut f = Family::new(
            out,
            "backwatch_backup_set_newest_age_seconds",
            "gauge",
            "Age of a stanza's or Barman server's newest backup, of any type (type=\"any\") and full (type=\"full\"), on the agent's clock when measured.",
        );
        for (s, set) in tool_sets() {
            for (kind, b) in [("any", &set.newest), ("full", &set.newest_full)] {
                if let Some(age) = b.as_ref().and_then(|b| b.age_secs) {
                    f.set(
                        &[
                            ("host", &s.host),
                            ("check", &s.check),
                            ("set", &set.name),
                            ("type", kind),
                        ],
                        age as f64,
                    );
                }
            }
        }
    }
    // Each stanza's own window: the per-check gauges speak of the narrowest, and a young
    // cluster's narrow, fresh window would hide another's stale end.
    let tool_windows = || {
        checks.iter().flat_map(|s| {
            let windows = match s.last_result.as_ref().and_then(|r| r.observation.as_ref()) {
                Some(Observation::PgBackRest(o) | Observation::Barman(o)) if o.error.is_none() => {
                    crate::rules::backup_tool::windows(o)
                }
                _ => Vec::new(),
            };
            windows.into_iter().map(move |(set, w)| (s, set, w))
        })
    };
    for (name, help, end) in [
        (
            "backwatch_backup_set_recovery_window_start_timestamp_seconds",
            "Earliest point a restore of a stanza or Barman server can reach: its oldest backup's end (Unix time).",
            false,
        ),
        (
            "backwatch_backup_set_recovery_window_end_timestamp_seconds",
            "Latest point a restore of a stanza or Barman server can reach: when its newest WAL was stored (Unix time).",
            true,
        ),
    ] {
        let mut f = Family::new(out, name, "gauge", help);
        for (s, set, w) in tool_windows() {
            let at = if end { w.end } else { w.start };
            f.set(
                &[("host", &s.host), ("check", &s.check), ("set", set)],
                at.timestamp() as f64,
            );
        }
    }
    {
        let mut f = Family::new(
            out,
            "backwatch_backup_set_duration_seconds",
            "gauge",
            "How long a stanza's or Barman server's newest full backup took.",
        );
        for (s, set) in tool_sets() {
            if let Some(d) = set.newest_full.as_ref().and_then(|b| b.duration_secs) {
                f.set(
                    &[("host", &s.host), ("check", &s.check), ("set", &set.name)],
                    d as f64,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            out,
            "backwatch_backup_set_size_bytes",
            "gauge",
            "Size of a stanza's or Barman server's newest backup (pgBackRest: the database size it read).",
        );
        for (s, set) in tool_sets() {
            if let Some(b) = &set.newest {
                f.set(
                    &[("host", &s.host), ("check", &s.check), ("set", &set.name)],
                    b.size_bytes as f64,
                );
            }
        }
    }
}

/// `\`, `"` and line feed escaped, as the exposition format requires in label values.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family being written: HELP and TYPE once, then samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.out, " {}", fmt_value(value));
    }

    fn set(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample("", labels, value);
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A per-check value: which family, and how to read it from an observation.
struct Gauge {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&Observation) -> Option<f64>,
}

/// The recoverable window a check reports (R32): an archive directory's own, or the narrowest
/// of a backup tool's sets.
fn window(o: &Observation) -> Option<std::borrow::Cow<'_, backwatch_proto::model::RecoveryWindow>> {
    use std::borrow::Cow;
    match o {
        Observation::Archive(a) => a.window.as_ref().map(Cow::Borrowed),
        Observation::PgBackRest(t) | Observation::Barman(t) => {
            crate::rules::backup_tool::narrowest_window(t).map(Cow::Owned)
        }
        _ => None,
    }
}

const VALUES: &[Gauge] = &[
    Gauge {
        name: "backwatch_disk_used_ratio",
        kind: "gauge",
        help: "Used share of the filesystem as df counts it: used / (used + available), root-reserved blocks left out.",
        read: |o| match o {
            Observation::Disk(d) if d.error.is_none() => {
                let capacity = d.capacity_bytes();
                (capacity > 0).then(|| d.used_bytes() as f64 / capacity as f64)
            }
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_disk_avail_bytes",
        kind: "gauge",
        help: "Bytes available to unprivileged users on the filesystem.",
        read: |o| match o {
            Observation::Disk(d) if d.error.is_none() => Some(d.avail_bytes as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_disk_size_bytes",
        kind: "gauge",
        help: "Total size of the filesystem in bytes.",
        read: |o| match o {
            Observation::Disk(d) if d.error.is_none() => Some(d.total_bytes as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_backup_newest_age_seconds",
        kind: "gauge",
        help: "Age of the newest backup (file, or the backup tool's newest of any type) on the agent's clock when it was measured.",
        read: |o| match o {
            Observation::Backup(b) => b.newest.as_ref().map(|n| n.age_secs as f64),
            // The stalest set speaks for the check, as its verdict does.
            Observation::PgBackRest(t) | Observation::Barman(t) => {
                t.stalest_set()?.newest.as_ref()?.age_secs.map(|a| a as f64)
            }
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_backup_newest_full_age_seconds",
        kind: "gauge",
        help: "Age of the backup tool's newest full backup (the stalest set's) when it was measured.",
        read: |o| match o {
            Observation::PgBackRest(t) | Observation::Barman(t) => t
                .sets
                .iter()
                .filter_map(|s| s.newest_full.as_ref()?.age_secs)
                .max()
                .map(|a| a as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_backup_newest_size_bytes",
        kind: "gauge",
        help: "Size of the newest backup file, or of the backup tool's newest backup (the stalest set's; pgBackRest: the database size it read).",
        read: |o| match o {
            Observation::Backup(b) => b.newest.as_ref().map(|n| n.size_bytes as f64),
            Observation::PgBackRest(t) | Observation::Barman(t) => t
                .stalest_set()?
                .newest
                .as_ref()
                .map(|b| b.size_bytes as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_backup_duration_seconds",
        kind: "gauge",
        help: "How long the newest full backup took: a plain pg_basebackup directory's, or the backup tool's newest full (the stalest set's).",
        read: |o| match o {
            // Full ones only: an incremental base backup copies the changed blocks.
            Observation::Backup(b) => b
                .newest_base_backup
                .as_ref()
                .filter(|n| !n.incremental)
                .and_then(|n| n.duration_secs)
                .map(|d| d as f64),
            Observation::PgBackRest(t) | Observation::Barman(t) => t
                .stalest_set()?
                .newest_full
                .as_ref()?
                .duration_secs
                .map(|d| d as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_backup_files",
        kind: "gauge",
        help: "Backup files found in the directory.",
        read: |o| match o {
            Observation::Backup(b) => Some(b.file_count as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_wal_archive_delay_seconds",
        kind: "gauge",
        help: "Age of the oldest WAL segment waiting to be archived (0 when none waits; absent when the waiting list cannot be read or a waiting segment's age is unknown).",
        read: |o| match o {
            Observation::Wal(w) => backwatch_rules::wal::archive_delay_secs(w).map(|s| s as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_wal_data_at_risk_seconds",
        kind: "gauge",
        help: "Age of the oldest committed work no archive holds: what a crash of this primary would lose now (absent on a standby or when unknown).",
        read: |o| match o {
            Observation::Wal(w) => crate::rules::wal::data_at_risk(w).map(|r| r.secs as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_wal_pending_segments",
        kind: "gauge",
        help: "WAL segments waiting to be archived (.ready files).",
        read: |o| match o {
            Observation::Wal(w) => Some(w.ready_segments as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_wal_archived_total",
        kind: "counter",
        help: "Segments archived successfully, from pg_stat_archiver (reset with its statistics).",
        read: |o| match o {
            Observation::Wal(w) => Some(w.archived_count as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_wal_failed_archives_total",
        kind: "counter",
        help: "Failed archive attempts, from pg_stat_archiver (reset with its statistics).",
        read: |o| match o {
            Observation::Wal(w) => Some(w.failed_count as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_archive_retention_seconds",
        kind: "gauge",
        help: "Age of the oldest WAL segment kept in the archive directory.",
        read: |o| match o {
            Observation::Archive(a) => a.oldest_segment.as_ref().map(|s| s.age_secs as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_recovery_window_start_timestamp_seconds",
        kind: "gauge",
        help: "Earliest point a restore can reach: the oldest backup's consistency point whose WAL is unbroken to the window's end (archive directory), or the oldest backup's end (pgBackRest, Barman: the narrowest set) (Unix time).",
        read: |o| window(o).map(|w| w.start.timestamp() as f64),
    },
    Gauge {
        name: "backwatch_recovery_window_end_timestamp_seconds",
        kind: "gauge",
        help: "Latest point a restore can reach: when the last segment of the unbroken WAL after the newest restorable backup was complete in the archive, or was stored by pgBackRest or Barman (the narrowest set) (Unix time).",
        read: |o| window(o).map(|w| w.end.timestamp() as f64),
    },
    Gauge {
        name: "backwatch_archive_segments",
        kind: "gauge",
        help: "WAL segments held in the archive directory.",
        read: |o| match o {
            Observation::Archive(a) => Some(a.segments as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_archive_size_bytes",
        kind: "gauge",
        help: "Bytes of WAL segments held in the archive directory.",
        read: |o| match o {
            Observation::Archive(a) => Some(a.segment_bytes as f64),
            _ => None,
        },
    },
    Gauge {
        name: "backwatch_drill_rto_seconds",
        kind: "gauge",
        help: "Recovery time the last restore drill measured: restoring the files plus recovering until the promoted server answered.",
        read: |o| match o {
            Observation::Drill(d) => d.rto_ms.map(|ms| ms as f64 / 1000.0),
            _ => None,
        },
    },
];

const STATUSES: [Status; 4] = [
    Status::Ok,
    Status::Warning,
    Status::Critical,
    Status::Unknown,
];

/// The whole page.
pub fn render(
    hosts: &[HostRecord],
    checks: &[CheckState],
    outbox: &[(OutboxState, i64)],
    c: &Counters,
) -> String {
    let mut out = String::new();
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_build_info",
            "gauge",
            "Version and commit of the running collector (always 1).",
        );
        f.set(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "commit",
                    option_env!("BACKWATCH_GIT_COMMIT").unwrap_or("unknown"),
                ),
            ],
            1.0,
        );
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_agent_last_contact_timestamp_seconds",
            "gauge",
            "When the host's agent last talked to the collector (Unix time).",
        );
        for h in hosts {
            f.set(
                &[("host", &h.host)],
                h.last_contact.timestamp_millis() as f64 / 1000.0,
            );
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_host_silent",
            "gauge",
            "1 while the host's agent is silent (no contact for silence.host_after), else 0.",
        );
        for h in hosts {
            f.set(&[("host", &h.host)], if h.silent { 1.0 } else { 0.0 });
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_check_status",
            "gauge",
            "Status of each check as a state set: 1 for its current status, 0 for the others.",
        );
        for s in checks {
            for st in STATUSES {
                f.set(
                    &[
                        ("host", &s.host),
                        ("check", &s.check),
                        ("status", st.as_str()),
                    ],
                    if s.status == st { 1.0 } else { 0.0 },
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_check_observed_timestamp_seconds",
            "gauge",
            "When the check's newest result was measured, on the agent's clock (Unix time).",
        );
        for s in checks {
            if let Some(t) = s.observed_at {
                f.set(
                    &[("host", &s.host), ("check", &s.check)],
                    t.timestamp_millis() as f64 / 1000.0,
                );
            }
        }
    }
    for g in VALUES {
        let mut f = Family::new(&mut out, g.name, g.kind, g.help);
        for s in checks {
            let obs = s.last_result.as_ref().and_then(|r| {
                if r.error.is_some() {
                    None
                } else {
                    r.observation.as_ref()
                }
            });
            if let Some(v) = obs.and_then(g.read) {
                f.set(&[("host", &s.host), ("check", &s.check)], v);
            }
        }
    }
    sets(&mut out, checks);
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_results_ingested_total",
            "counter",
            "Results received from agents and stored since the collector started.",
        );
        f.set(&[], c.results_ingested.load(Ordering::Relaxed) as f64);
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_agent_refusals_total",
            "counter",
            "Results and streams refused by the limits on one agent identity since the collector started.",
        );
        for (limit, n) in ["max_checks_per_host", "max_streams_per_minute"]
            .iter()
            .zip(&c.refused)
        {
            f.set(&[("limit", limit)], n.load(Ordering::Relaxed) as f64);
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_store_query_duration_seconds",
            "histogram",
            "Time taken by store reads, by query.",
        );
        let q = [("query", "metrics")];
        for (b, le) in c.store_buckets.iter().zip(BUCKETS) {
            let le = le.to_string();
            f.sample(
                "_bucket",
                &[q[0], ("le", &le)],
                b.load(Ordering::Relaxed) as f64,
            );
        }
        let count = c.store_count.load(Ordering::Relaxed) as f64;
        f.sample("_bucket", &[q[0], ("le", "+Inf")], count);
        f.sample(
            "_sum",
            &q,
            c.store_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        f.sample("_count", &q, count);
    }
    {
        let mut f = Family::new(
            &mut out,
            "backwatch_outbox_notifications",
            "gauge",
            "Notifications in the outbox by state: pending and sending are the delivery backlog, failed were given up.",
        );
        for st in [
            OutboxState::Pending,
            OutboxState::Sending,
            OutboxState::Sent,
            OutboxState::Failed,
        ] {
            let n = outbox.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
            f.set(&[("state", st.as_str())], n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn empty_fleet_still_describes_every_family() {
        let c = Counters {
            results_ingested: AtomicU64::new(3),
            refused: [const { AtomicU64::new(0) }; 2],
            store_buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            store_count: AtomicU64::new(0),
            store_sum_micros: AtomicU64::new(0),
        };
        c.store_read(Duration::from_millis(3));
        let page = render(&[], &[], &[(OutboxState::Failed, 2)], &c);
        assert!(
            page.contains("\nbackwatch_results_ingested_total 3\n"),
            "{page}"
        );
        assert!(page.contains(
            "backwatch_store_query_duration_seconds_bucket{query=\"metrics\",le=\"0.0025\"} 0\n"
        ));
        assert!(page.contains(
            "backwatch_store_query_duration_seconds_bucket{query=\"metrics\",le=\"0.005\"} 1\n"
        ));
        assert!(page.contains("backwatch_outbox_notifications{state=\"failed\"} 2\n"));
        assert!(page.contains("backwatch_outbox_notifications{state=\"pending\"} 0\n"));
        assert!(page.contains("# TYPE backwatch_disk_used_ratio gauge\n"));
    }
}
