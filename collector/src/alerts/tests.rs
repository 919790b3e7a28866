//! The engine against a real (in-memory SQLite) store: transitions in, alerts and queued
//! notifications out, with the procedure's audiences.

use super::*;
use crate::alerts::routes::{Route, Target};
use crate::config::alerting::Alerting;
use crate::status::Status;
use crate::store::SqlStore;
use crate::store::alerts::{AlertFilter, AlertStore, NewSilence, Severity};
use crate::store::outbox::Notification;
use crate::store::outbox::OutboxStore;
use crate::store::suite::{at, evaluated, probe_result};
use backwatch_proto::model::ProbeKind;

fn route(name: &str, min: Severity, alerts: bool) -> Route {
    Route {
        name: name.into(),
        target: Target::Email(vec![format!("{name}@example.com")]),
        min_status: min,
        hosts: vec![],
        groups: vec![],
        checks: vec![],
        alerts,
        daily_summary: !alerts,
    }
}

fn alerting() -> Alerting {
    Alerting {
        routes: vec![
            route("dba", Severity::Warning, true),
            route("sysadmin", Severity::Critical, true),
            route("management", Severity::Warning, false),
        ],
        public_url: "https://bw.example.com".into(),
        ..Alerting::default()
    }
}

struct Fixture {
    store: Arc<SqlStore>,
    engine: Engine,
}

async fn fixture(cfg: Alerting) -> Fixture {
    let store = Arc::new(SqlStore::open("sqlite::memory:").await.expect("store"));
    let engine = engine_for(&store, cfg);
    Fixture { store, engine }
}

fn engine_for(store: &Arc<SqlStore>, cfg: Alerting) -> Engine {
    let dyn_store: Arc<dyn Store> = store.clone();
    Engine::new(
        dyn_store,
        Reloadable::new(cfg),
        Reloadable::new(Thresholds::default()),
        Arc::new(Notify::new()),
    )
}

impl Fixture {
    /// A disk result for `db1` measured at `secs`, judged `status`.
    async fn judge(&self, n: u32, secs: i64, status: Status) {
        let r = evaluated(
            probe_result("db1", n, ProbeKind::Disk, "backup", secs),
            status,
            &format!("disk {status}"),
        );
        self.store
            .record_results("db1", &[r])
            .await
            .expect("record");
    }

    async fn step(&self, secs: i64) -> Step {
        self.engine.step(at(secs)).await.expect("step")
    }

    /// (route, kind) of every queued notification, oldest first.
    async fn sent(&self) -> Vec<(String, String)> {
        let mut all: Vec<Notification> = self
            .store
            .notifications(None, None, 1000)
            .await
            .expect("list");
        all.reverse();
        all.into_iter().map(|n| (n.route, n.kind)).collect()
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn critical_notifies_dba_and_sysadmin_once_then_resolution() {
    let fx = fixture(alerting()).await;
    fx.judge(1, 10, Status::Ok).await;
    fx.judge(2, 20, Status::Critical).await;
    fx.step(30).await;
    fx.judge(3, 40, Status::Critical).await;
    assert_eq!(fx.step(50).await.writes, 0, "same state, no storm");
    assert_eq!(
        fx.sent().await,
        pairs(&[("dba", "opened"), ("sysadmin", "opened")])
    );

    fx.judge(4, 60, Status::Ok).await;
    fx.step(70).await;
    let expected = [
        ("dba", "opened"),
        ("sysadmin", "opened"),
        ("dba", "resolved"),
        ("sysadmin", "resolved"),
    ];
    assert_eq!(fx.sent().await, pairs(&expected));
    let resolved = fx
        .store
        .alerts(AlertFilter::Resolved, 10)
        .await
        .expect("alerts");
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].fields.opened_at, resolved[0].fields.resolved_at),
        (at(21), Some(at(61)))
    );
    let msgs = fx.store.notifications(None, None, 10).await.expect("list");
    let opened = msgs
        .iter()
        .find(|n| n.kind == "opened")
        .expect("opened message");
    assert!(
        opened
            .subject
            .starts_with("[CRITICAL] db1 disk.backup: disk critical"),
        "{}",
        opened.subject
    );
    assert!(
        opened.body_text.contains("Review backup retention"),
        "{}",
        opened.body_text
    );
    assert!(
        opened
            .body_text
            .contains("https://bw.example.com/hosts/db1"),
        "{}",
        opened.body_text
    );
    assert!(msgs.iter().all(|n| n.recipient != "management@example.com"));
}

#[tokio::test]
async fn warning_reaches_dba_only_and_escalation_reaches_sysadmin() {
    let fx = fixture(alerting()).await;
    fx.judge(1, 10, Status::Warning).await;
    fx.step(20).await;
    assert_eq!(fx.sent().await, pairs(&[("dba", "opened")]));
    fx.judge(2, 30, Status::Critical).await;
    fx.judge(3, 40, Status::Warning).await;
    fx.step(50).await;
    let expected = [
        ("dba", "opened"),
        ("dba", "escalated"),
        ("sysadmin", "escalated"),
    ];
    assert_eq!(
        fx.sent().await,
        pairs(&expected),
        "de-escalation is recorded, not sent"
    );
    fx.judge(4, 60, Status::Ok).await;
    fx.step(70).await;
    let sent = fx.sent().await;
    assert_eq!(
        &sent[3..],
        pairs(&[("dba", "resolved"), ("sysadmin", "resolved")]),
        "those who heard hear the end"
    );
}

#[tokio::test]
async fn a_new_engine_neither_repeats_nor_skips() {
    let fx = fixture(alerting()).await;
    fx.judge(1, 10, Status::Critical).await;
    fx.step(20).await;
    let again = engine_for(&fx.store, alerting());
    assert_eq!(again.step(at(30)).await.expect("step").writes, 0);
    fx.judge(2, 40, Status::Ok).await;
    assert_eq!(again.step(at(50)).await.expect("step").writes, 1);
    assert_eq!(fx.sent().await.len(), 4);
}

#[tokio::test]
async fn silent_agent_is_one_alert_not_one_per_check() {
    let fx = fixture(alerting()).await;
    fx.store
        .touch_host("db1", at(5), None)
        .await
        .expect("touch");
    fx.judge(1, 10, Status::Critical).await;
    let wal = evaluated(
        probe_result("db1", 2, ProbeKind::Wal, "main", 10),
        Status::Ok,
        "fine",
    );
    fx.store
        .record_results("db1", &[wal])
        .await
        .expect("record");
    fx.step(20).await;
    let cfg = crate::config::Silence {
        host_after: std::time::Duration::from_secs(60),
        check_grace: std::time::Duration::from_secs(30),
        sweep_every: std::time::Duration::from_secs(1),
    };
    crate::silence::sweep(fx.store.as_ref(), &cfg, at(100), at(0))
        .await
        .expect("sweep");
    fx.step(110).await;
    let open = fx
        .store
        .alerts(AlertFilter::Open, 10)
        .await
        .expect("alerts");
    let checks: Vec<_> = open
        .iter()
        .map(|a| (a.fields.check.as_str(), a.fields.status))
        .collect();
    // The disk alert stays as it was; the WAL check's unknown is the silence's, not its own.
    assert_eq!(
        checks,
        [
            (AGENT_CHECK, Status::Unknown),
            ("disk.backup", Status::Critical)
        ]
    );
    let sent = fx.sent().await;
    assert_eq!(
        &sent[2..],
        pairs(&[("dba", "opened"), ("sysadmin", "opened")])
    );

    fx.store
        .set_host_silent_at("db1", false, at(200), None)
        .await
        .expect("back");
    fx.judge(3, 200, Status::Ok).await;
    fx.step(210).await;
    assert!(
        fx.store
            .alerts(AlertFilter::Open, 10)
            .await
            .expect("alerts")
            .is_empty()
    );
}

#[tokio::test]
async fn overdue_check_of_a_talking_host_is_a_warning() {
    let fx = fixture(alerting()).await;
    fx.judge(1, 10, Status::Ok).await;
    fx.store
        .set_check_status(
            "db1",
            "disk.backup",
            Status::Unknown,
            "no result for 7 min",
            at(500),
            None,
        )
        .await
        .expect("overdue");
    fx.step(510).await;
    let open = fx
        .store
        .alerts(AlertFilter::Open, 10)
        .await
        .expect("alerts");
    assert_eq!(
        open.iter()
            .map(|a| (a.fields.status, a.fields.severity))
            .collect::<Vec<_>>(),
        [(Status::Unknown, Severity::Warning)]
    );
    let msgs = fx.store.notifications(None, None, 10).await.expect("list");
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0]
            .subject
            .starts_with("[UNKNOWN] db1 disk.backup: no result for 7 min"),
        "{}",
        msgs[0].subject
    );
}

#[tokio::test]
async fn silence_records_without_notifying_until_it_ends() {
    let fx = fixture(alerting()).await;
    let silence = fx
        .store
        .add_silence(&NewSilence {
            host: Some("db*".into()),
            group: None,
            check: None,
            created_by: "alice".into(),
            reason: "disk swap".into(),
            created_at: at(0),
            starts_at: at(0),
            ends_at: at(3600),
        })
        .await
        .expect("silence");
    fx.judge(1, 10, Status::Critical).await;
    fx.step(20).await;
    let open = fx
        .store
        .alerts(AlertFilter::Open, 10)
        .await
        .expect("alerts");
    assert_eq!(open.len(), 1, "recorded");
    assert!(open[0].fields.silenced);
    assert!(fx.sent().await.is_empty(), "not notified");
    fx.step(1000).await;
    assert!(fx.sent().await.is_empty(), "still silenced");
    fx.store
        .end_silence(silence.id, "alice", at(2000))
        .await
        .expect("end");
    fx.step(2001).await;
    assert_eq!(
        fx.sent().await,
        pairs(&[("dba", "opened"), ("sysadmin", "opened")])
    );
}

#[tokio::test]
async fn flapping_is_told_once_and_settles() {
    let mut cfg = alerting();
    cfg.policy.flap_changes = 4;
    cfg.policy.flap_window = std::time::Duration::from_secs(600);
    let fx = fixture(cfg).await;
    let statuses = [
        Status::Critical,
        Status::Ok,
        Status::Critical,
        Status::Ok,
        Status::Critical,
        Status::Ok,
    ];
    for (n, status) in (1..).zip(statuses) {
        fx.judge(n, i64::from(n) * 10, status).await;
        fx.step(i64::from(n) * 10 + 5).await;
    }
    let dba: Vec<_> = fx
        .sent()
        .await
        .into_iter()
        .filter(|(r, _)| r == "dba")
        .map(|(_, k)| k)
        .collect();
    assert_eq!(dba, ["opened", "resolved", "opened", "flapping"]);
    assert_eq!(
        fx.store
            .alerts(AlertFilter::Open, 10)
            .await
            .expect("alerts")
            .len(),
        1,
        "kept open"
    );
    fx.step(61 + 599).await;
    assert_eq!(fx.sent().await.len(), 8, "not yet stable");
    fx.step(61 + 600).await;
    let dba: Vec<_> = fx
        .sent()
        .await
        .into_iter()
        .filter(|(r, _)| r == "dba")
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        dba,
        ["opened", "resolved", "opened", "flapping", "resolved"]
    );
}

#[tokio::test]
async fn reminder_for_unacknowledged_open_alert() {
    let mut cfg = alerting();
    cfg.policy.reminder_every = Some(std::time::Duration::from_secs(3600));
    let fx = fixture(cfg).await;
    fx.judge(1, 10, Status::Warning).await;
    fx.step(20).await;
    fx.step(11 + 3599).await;
    assert_eq!(fx.sent().await.len(), 1);
    fx.step(11 + 3600).await;
    assert_eq!(
        fx.sent().await,
        pairs(&[("dba", "opened"), ("dba", "reminder")])
    );
}

#[tokio::test]
async fn operators_override_the_procedure_per_check_or_kind() {
    let mut cfg = alerting();
    cfg.procedures
        .insert("disk".into(), "Call storage; open a ticket.".into());
    cfg.procedures
        .insert("wal.main".into(), "Page the DBA on call.".into());
    let fx = fixture(cfg).await;
    assert_eq!(
        fx.engine.procedure("disk.backup"),
        "Call storage; open a ticket."
    );
    assert_eq!(fx.engine.procedure("wal.main"), "Page the DBA on call.");
    assert_eq!(
        fx.engine.procedure("wal.other"),
        crate::rules::procedure::WAL
    );
    assert_eq!(fx.engine.procedure(AGENT_CHECK), AGENT_PROCEDURE);
    assert_eq!(
        fx.engine.procedure("restore.base"),
        crate::rules::procedure::RESTORE
    );
    assert_eq!(
        fx.engine.procedure("pgbackrest.main"),
        crate::rules::procedure::BACKUP
    );
    assert_eq!(
        fx.engine.procedure("barman.pg"),
        crate::rules::procedure::BACKUP
    );
}

/// A pgBackRest result of `host` for stanza `main` of cluster 42, judged `status`.
fn stanza(host: &str, n: u32, secs: i64, status: Status) -> crate::store::Evaluated {
    let mut r = probe_result(host, n, ProbeKind::PgBackRest, "main", secs);
    r.observation = Some(Observation::PgBackRest(Box::new(
        backwatch_proto::model::BackupToolObs {
            sets: vec![backwatch_proto::model::BackupSet {
                name: "main".into(),
                system_identifier: Some("42".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
    )));
    evaluated(r, status, &format!("{host}: stanza {status}"))
}

#[tokio::test]
async fn one_backup_set_reported_by_two_hosts_is_one_alert_until_both_are_good() {
    let f = fixture(alerting()).await;
    let record = async |host: &str, n, secs, status| {
        f.store
            .record_results(host, &[stanza(host, n, secs, status)])
            .await
            .expect("record");
    };
    let open = async || f.open_alerts().await;
    record("db1", 1, 0, Status::Ok).await;
    record("db2", 1, 0, Status::Ok).await;
    record("db1", 2, 10, Status::Critical).await;
    f.step(11).await;
    assert_eq!(
        open().await,
        [("db1".into(), "db1: stanza critical".into())]
    );
    // The other node turns critical about the same stanza: the open alert carries it.
    record("db2", 2, 20, Status::Critical).await;
    f.step(21).await;
    assert_eq!(
        open().await,
        [("db1".into(), "db2: stanza critical".into())]
    );
    // db1 is good again while db2 still is not: the set's problem is not over.
    record("db1", 3, 30, Status::Ok).await;
    f.step(31).await;
    assert_eq!(open().await.len(), 1);
    // The last host reporting the set is good: resolved.
    record("db2", 3, 40, Status::Ok).await;
    f.step(41).await;
    assert_eq!(open().await, Vec::<(String, String)>::new());
    let resolved = f
        .store
        .alerts(AlertFilter::Resolved, 10)
        .await
        .expect("alerts");
    assert_eq!(resolved.len(), 1);
}

/// Two hosts report stanza `main` of cluster 42; db1 went critical first, so the set's alert
/// lives on db1, and db2 turned critical too.
async fn set_bad_on_both() -> Fixture {
    let f = fixture(alerting()).await;
    for (host, n, secs, status) in [
        ("db1", 1, 0, Status::Ok),
        ("db2", 1, 0, Status::Ok),
        ("db1", 2, 10, Status::Critical),
        ("db2", 2, 20, Status::Critical),
    ] {
        f.store
            .record_results(host, &[stanza(host, n, secs, status)])
            .await
            .expect("record");
        f.step(secs + 1).await;
    }
    f
}

impl Fixture {
    async fn open_alerts(&self) -> Vec<(String, String)> {
        self.store
            .alerts(AlertFilter::Open, 10)
            .await
            .expect("alerts")
            .into_iter()
            .map(|a| (a.fields.host, a.fields.summary))
            .collect()
    }

    async fn retire(&self, host: &str, secs: i64) {
        let r = crate::store::RetiredHost {
            host: host.into(),
            retired_at: at(secs),
            retired_by: "ops".into(),
            reason: "decommissioned".into(),
        };
        assert!(self.store.retire_host(&r).await.expect("retire"));
    }
}

/// Retiring the host whose check holds the set's alert resolves that alert, and the peer
/// still reporting the set bad carries it on under an alert of its own.
#[tokio::test]
async fn retiring_the_host_holding_a_sets_alert_hands_it_to_the_bad_peer() {
    let f = set_bad_on_both().await;
    assert_eq!(f.open_alerts().await.len(), 1);
    f.retire("db1", 30).await;
    f.step(31).await;
    assert_eq!(
        f.open_alerts().await,
        [("db2".into(), "db2: stanza critical".into())]
    );
    assert_eq!(
        f.sent().await,
        pairs(&[
            ("dba", "opened"),
            ("sysadmin", "opened"),
            ("dba", "resolved"),
            ("sysadmin", "resolved"),
            ("dba", "opened"),
            ("sysadmin", "opened"),
        ])
    );
}

/// Retiring the check that holds the set's alert (gone from the agent's configuration) does
/// the same.
#[tokio::test]
async fn retiring_the_check_holding_a_sets_alert_hands_it_to_the_bad_peer() {
    let f = set_bad_on_both().await;
    assert!(
        f.store
            .retire_check("db1", "pgbackrest.main", "retired: not configured", at(30))
            .await
            .expect("retire check")
    );
    f.step(31).await;
    assert_eq!(
        f.open_alerts().await,
        [("db2".into(), "db2: stanza critical".into())]
    );
}

/// A retired peer's last (stale) critical does not keep the set's alert open once the live
/// host reporting it is good.
#[tokio::test]
async fn a_retired_peers_stale_state_does_not_hold_the_sets_alert_open() {
    let f = set_bad_on_both().await;
    f.retire("db2", 30).await;
    f.step(31).await;
    assert_eq!(f.open_alerts().await.len(), 1, "db1 is still bad");
    f.store
        .record_results("db1", &[stanza("db1", 3, 40, Status::Ok)])
        .await
        .expect("record");
    f.step(41).await;
    assert_eq!(f.open_alerts().await, Vec::<(String, String)>::new());
}

/// The carried-on alert goes to the worst host still reporting the set bad (its audience is
/// its severity), and a carry-on lost between the resolution and its turn (a crash, a store
/// error, a new leader) is made up by the periodic sweep.
#[tokio::test]
async fn the_worst_peer_carries_the_set_on_and_a_lost_carry_on_is_made_up() {
    let f = set_bad_on_both().await;
    for (n, secs, status) in [(1, 22, Status::Ok), (2, 23, Status::Critical)] {
        f.store
            .record_results("db3", &[stanza("db3", n, secs, status)])
            .await
            .expect("record");
        f.step(secs + 1).await;
    }
    f.store
        .record_results("db2", &[stanza("db2", 3, 25, Status::Warning)])
        .await
        .expect("record");
    f.step(26).await;
    f.retire("db1", 30).await;
    // The resolution is written, the carry-on lost.
    let mut step = Step::default();
    f.engine
        .tick(at(31), &mut step, &mut HashSet::new())
        .await
        .expect("tick");
    f.step(32).await;
    assert_eq!(f.open_alerts().await, Vec::<(String, String)>::new());
    f.step(1 + 300).await;
    assert_eq!(
        f.open_alerts().await,
        [("db3".into(), "db3: stanza critical".into())]
    );
}
