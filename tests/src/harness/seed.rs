//! Stores filled before a collector starts on them: a week of one host's history, or a large
//! fleet, written through the collector's own `SqlStore` and judged by its own rules, so what
//! the dashboard shows is what a real week would have left behind.
//!
//! Invariants: every result is judged in time order with the previous result, as ingest
//! does; the store is closed before returning, so a collector can open the file at once.

use backwatch_collector::rules::{Limits, evaluate};
use backwatch_collector::store::{Evaluated, HostFacts, SqlStore, Store};
use backwatch_proto::model::labels::Labels;
use backwatch_proto::model::{
    BackupDirObs, DiskObs, NewestFile, Observation, PendingSource, ProbeKind, ProbeResult, WalObs,
};
use chrono::{DateTime, TimeDelta, Utc};

const GIB: u64 = 1 << 30;

fn result(
    host: &str,
    n: usize,
    kind: ProbeKind,
    name: &str,
    at: DateTime<Utc>,
    obs: Observation,
) -> ProbeResult {
    ProbeResult {
        result_id: format!("{host}-seed-{n}"),
        kind,
        name: name.into(),
        measured_at: at,
        duration_ms: 5,
        interval_secs: 3600,
        error: None,
        observation: Some(obs),
    }
}

fn disk(path: &str, used: u64, total: u64) -> Observation {
    Observation::Disk(DiskObs {
        path: path.into(),
        total_bytes: total,
        free_bytes: total - used,
        avail_bytes: total - used,
        mount_point: Some(path.into()),
        ..DiskObs::default()
    })
}

fn backup(path: &str, at: DateTime<Utc>, newest: DateTime<Utc>) -> Observation {
    Observation::Backup(BackupDirObs {
        path: path.into(),
        exists: true,
        file_count: 7,
        total_bytes: 70 * GIB,
        newest: Some(NewestFile {
            path: format!("{path}/base-{}.tar.gz", newest.format("%Y%m%d")),
            mtime: newest,
            size_bytes: 10 * GIB,
            age_secs: (at - newest).num_seconds(),
        }),
        entries_scanned: 7,
        ..BackupDirObs::default()
    })
}

fn wal(archived: i64, failed: i64, ready: i64, oldest_secs: i64) -> Observation {
    Observation::Wal(WalObs {
        server_version_num: 170_002,
        archive_mode: "on".into(),
        archive_command: "test ! -f /archive/%f && cp %p /archive/%f".into(),
        wal_segment_size_bytes: 16 << 20,
        archived_count: archived,
        failed_count: failed,
        ready_segments: ready,
        oldest_ready_age_secs: (ready > 0).then_some(oldest_secs),
        pending_source: PendingSource::ArchiveStatusdir,
        ..WalObs::default()
    })
}

/// Judge `results` (oldest first) one after the other, as ingest would.
fn judge(results: Vec<ProbeResult>) -> Vec<Evaluated> {
    let limits = Limits::default();
    let mut prev: std::collections::BTreeMap<String, Evaluated> = Default::default();
    let mut out = Vec::new();
    for r in results {
        let before = prev.get(&r.check_id());
        let verdict = evaluate(
            &r,
            before.map(|e| e.verdict.status),
            before.map(|e| &e.result),
            &limits,
        );
        let e = Evaluated {
            received_at: r.measured_at + TimeDelta::seconds(1),
            verdict,
            result: r,
        };
        prev.insert(e.result.check_id(), e.clone());
        out.push(e);
    }
    out
}

async fn open(url: &str) -> anyhow::Result<SqlStore> {
    Ok(SqlStore::open(url).await?)
}

/// A week (and two hours) of hourly history of `host`, ending now: `disk.backup` growing from
/// 60 % to 80 % (through the 75 % warning line), `backup.daily` taken every day at the same
/// hour except two days ago (so it went critical), and `wal.main` falling behind and failing
/// for five hours three days ago.
pub async fn week_of_history(url: &str, host: &str) -> anyhow::Result<()> {
    let store = open(url).await?;
    let now = Utc::now();
    let hours: i64 = 7 * 24 + 2;
    let mut results = Vec::new();
    let mut last_backup = now - TimeDelta::hours(hours + 3);
    let (mut archived, mut failed) = (1000_i64, 0_i64);
    for i in 0..=hours {
        let at = now - TimeDelta::hours(hours - i);
        let n = 3 * i as usize;
        let used = 600 * GIB + (200 * GIB) * i as u64 / hours as u64;
        results.push(result(
            host,
            n,
            ProbeKind::Disk,
            "backup",
            at,
            disk("/backup", used, 1000 * GIB),
        ));
        let day = (hours - i) / 24;
        if (hours - i) % 24 == 3 && day != 2 {
            last_backup = at - TimeDelta::minutes(40);
        }
        if i % 6 == 0 {
            let obs = backup("/backup/daily", at, last_backup);
            let mut r = result(host, n + 1, ProbeKind::Backup, "daily", at, obs);
            r.interval_secs = 6 * 3600;
            results.push(r);
        }
        archived += 12;
        let behind = (3 * 24..3 * 24 + 5).contains(&(hours - i));
        if behind {
            failed += 2;
        }
        let (ready, oldest) = if behind {
            (4, 1200 + 600 * (i % 5))
        } else {
            (0, 0)
        };
        results.push(result(
            host,
            n + 2,
            ProbeKind::Wal,
            "main",
            at,
            wal(archived, failed, ready, oldest),
        ));
    }
    store.record_results(host, &judge(results)).await?;
    store
        .touch_host(host, now, Some(&facts(Labels::new())))
        .await?;
    store.close().await;
    Ok(())
}

fn facts(labels: Labels) -> HostFacts {
    HostFacts {
        agent_version: "0.1.0".into(),
        hostname: "seeded".into(),
        os: "Debian GNU/Linux 12".into(),
        instance_id: String::new(),
        clock_skew_ms: 12,
        labels,
    }
}

/// `count` hosts `node-0000`… with a disk and a daily backup check each: every 10th disk
/// critical (90 %), every 7th warning (80 %), every 25th backup critical (30 h old); the
/// first `silent` hosts last spoke two hours ago and are marked silent.
pub async fn fleet(url: &str, count: usize, silent: usize) -> anyhow::Result<Vec<String>> {
    let store = open(url).await?;
    let now = Utc::now();
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let host = format!("node-{i:04}");
        let pct = if i % 10 == 0 {
            90
        } else if i % 7 == 0 {
            80
        } else {
            50
        };
        let age = if i % 25 == 0 {
            TimeDelta::hours(30)
        } else {
            TimeDelta::hours(3)
        };
        let at = now - TimeDelta::minutes(1);
        let results = vec![
            result(
                &host,
                0,
                ProbeKind::Disk,
                "backup",
                at,
                disk("/backup", pct * 10 * GIB, 1000 * GIB),
            ),
            result(
                &host,
                1,
                ProbeKind::Backup,
                "daily",
                at,
                backup("/backup/daily", at, at - age),
            ),
        ];
        store.record_results(&host, &judge(results)).await?;
        last_contact(&store, &host, i < silent, Labels::new(), now).await?;
        names.push(host);
    }
    store.close().await;
    Ok(names)
}

/// The host's last contact: now, or two hours ago and marked silent (marked here: the
/// collector's sweep never counts its own downtime as silence).
async fn last_contact(
    store: &SqlStore,
    host: &str,
    silent: bool,
    labels: Labels,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if silent {
        store
            .touch_host(host, now - TimeDelta::hours(2), Some(&facts(labels)))
            .await?;
        store.set_host_silent_at(host, true, now, None).await?;
    } else {
        store.touch_host(host, now, Some(&facts(labels))).await?;
    }
    Ok(())
}

/// A demo host's labels: two environments and four clusters, for the dashboard's filter.
fn demo_labels(i: usize) -> Labels {
    let env = if i % 3 == 2 { "staging" } else { "prod" };
    let cluster = ["billing", "orders", "search", "auth"][i % 4];
    [("env", env), ("cluster", cluster)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How a demo host has been doing (see [`demo_fleet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Healthy,
    /// The backup disk fills up over the month, past 85 % in its last days.
    DiskFilling,
    /// WAL archiving has failed for the last six hours.
    WalFailing,
    /// The daily backup stopped 30 hours ago.
    BackupStale,
    /// The agent stopped talking two hours ago.
    Silent,
}

fn profile(i: usize) -> Profile {
    match i % 8 {
        3 => Profile::DiskFilling,
        5 => Profile::WalFailing,
        6 if i % 16 == 6 => Profile::BackupStale,
        7 if i % 24 == 7 => Profile::Silent,
        _ => Profile::Healthy,
    }
}

/// One demo host's story, hour by hour: what its checks measure at a time, and what carries
/// over from one measurement to the next (archive counters, the newest backup). The seed
/// writes its history with it; `demo-fleet --live` continues it over the agent protocol, so a
/// running demo's hosts keep reporting (and the silent one stays silent).
pub struct DemoHost {
    pub name: String,
    i: usize,
    profile: Profile,
    archived: f64,
    failed: f64,
    last_backup: DateTime<Utc>,
    /// When WAL archiving started failing (the `WalFailing` host only).
    failing_since: Option<DateTime<Utc>>,
    /// The history's length and end: the disk's fill level follows it.
    hours: i64,
    end: DateTime<Utc>,
}

impl DemoHost {
    /// Demo host number `i` (0-based) with `days` of history ending at `end`.
    pub fn new(i: usize, days: i64, end: DateTime<Utc>) -> DemoHost {
        let hours = days * 24;
        let profile = profile(i);
        DemoHost {
            name: format!("db-{:02}", i + 1),
            i,
            profile,
            archived: 10_000.0,
            failed: 0.0,
            last_backup: end - TimeDelta::hours(hours + 2),
            failing_since: (profile == Profile::WalFailing).then(|| end - TimeDelta::hours(6)),
            hours,
            end,
        }
    }

    pub fn labels(&self) -> Labels {
        demo_labels(self.i)
    }

    /// An agent that stopped talking sends nothing (from two hours before the end on).
    pub fn silent_at(&self, at: DateTime<Utc>) -> bool {
        self.profile == Profile::Silent && at > self.end - TimeDelta::hours(2)
    }

    /// Its disk, daily backup and WAL results measured at `at`, `step_hours` after the
    /// previous ones (counters grow by that much), with `interval_secs` as their schedule.
    pub fn results(
        &mut self,
        at: DateTime<Utc>,
        step_hours: f64,
        interval_secs: u32,
    ) -> Vec<ProbeResult> {
        let (i, p, host) = (self.i, self.profile, self.name.clone());
        // A host's own growth rate and backup size, so the fleet's lines differ.
        let base = 40 + (i as u64 * 7) % 25;
        let progress = ((self.hours * 3600 - (self.end - at).num_seconds()).max(0) as f64
            / (self.hours * 3600).max(1) as f64)
            .min(1.0);
        let pct = match p {
            Profile::DiskFilling => 55 + (37.0 * progress) as u64,
            _ => base + (10.0 * progress) as u64,
        };
        // Nightly at 01:00 UTC (the stale one stopped 30 hours before the end).
        let stale = p == Profile::BackupStale && at > self.end - TimeDelta::hours(30);
        if at.format("%H").to_string() == "01" && !stale {
            let ran = at - TimeDelta::minutes(35);
            if ran.date_naive() != self.last_backup.date_naive() {
                self.last_backup = ran;
            }
        }
        let failing = self.failing_since.is_some_and(|since| at >= since);
        if failing {
            self.failed += 12.0 * step_hours;
        } else {
            self.archived += (30 + (i as i64 % 7) * 5) as f64 * step_hours;
        }
        let (ready, oldest) = match self.failing_since.filter(|_| failing) {
            Some(since) => {
                let secs = (at - since).num_seconds() + 1800;
                (12 + 12 * secs / 3600, secs)
            }
            None => (0, 0),
        };
        let mut out = vec![
            result(
                &host,
                0,
                ProbeKind::Disk,
                "backup",
                at,
                disk("/backup", pct * 10 * GIB, 1000 * GIB),
            ),
            result(
                &host,
                0,
                ProbeKind::Backup,
                "daily",
                at,
                backup("/backup/daily", at, self.last_backup),
            ),
            result(
                &host,
                0,
                ProbeKind::Wal,
                "main",
                at,
                wal(self.archived as i64, self.failed as i64, ready, oldest),
            ),
        ];
        for r in &mut out {
            r.interval_secs = interval_secs;
        }
        out
    }

    /// Its history, hourly up to the end it was made with: `(hours before the end, when,
    /// results)`, each host a few minutes off the hour so the fleet does not report at once.
    fn history(&mut self) -> Vec<(i64, DateTime<Utc>, Vec<ProbeResult>)> {
        let (end, offset) = (self.end, TimeDelta::minutes(self.i as i64 % 50));
        (0..=self.hours)
            .rev()
            .map(|h| {
                let at = end - TimeDelta::hours(h) - offset;
                (h, at, self.results(at, 1.0, 3600))
            })
            .collect()
    }
}

/// `count` demo hosts `db-01`… with `days` of hourly history ending now (disk, daily backup,
/// WAL archiving each), in a few shapes: most healthy, some filling their disk, failing to
/// archive, with a stale backup, or silent. Result ids are per host, check and hour, so a
/// second run adds only the hours since the first (a demo-state reused days later catches
/// up). Returns the host names.
pub async fn demo_fleet(url: &str, count: usize, days: i64) -> anyhow::Result<Vec<String>> {
    let store = open(url).await?;
    let now = Utc::now();
    let hour0 = now.timestamp() / 3600;
    let mut names = Vec::with_capacity(count);
    for mut host in demo_hosts(count, days, now) {
        let mut results = Vec::new();
        for (h, at, hourly) in host.history() {
            if host.silent_at(at) {
                continue;
            }
            for (mut r, check) in hourly.into_iter().zip(["disk", "backup", "wal"]) {
                r.result_id = format!("{}-{check}-{}", host.name, hour0 - h);
                results.push(r);
            }
        }
        store.record_results(&host.name, &judge(results)).await?;
        let silent = host.silent_at(now);
        last_contact(&store, &host.name, silent, host.labels(), now).await?;
        names.push(host.name);
    }
    store.close().await;
    Ok(names)
}

/// The demo hosts as [`demo_fleet`] makes them, before their history.
fn demo_hosts(count: usize, days: i64, end: DateTime<Utc>) -> Vec<DemoHost> {
    (0..count).map(|i| DemoHost::new(i, days, end)).collect()
}

/// The demo hosts with their history told up to `end`, as [`demo_fleet`] stored it: counters
/// and the newest backup where the history left them, for `demo-fleet --live` to go on from.
pub fn demo_hosts_at(count: usize, days: i64, end: DateTime<Utc>) -> Vec<DemoHost> {
    let mut hosts = demo_hosts(count, days, end);
    for host in &mut hosts {
        host.history();
    }
    hosts
}
