//! The dashboard's part of the store contract ([`Store::change_marks`],
//! [`Store::daily_last_results`]), run by `suite::run_all` on SQLite and PostgreSQL.
//!
//! Rules as in `suite`: unique host names per call, assertions only about the scenario's own
//! rows (other scenarios and earlier runs share the database), whole milliseconds.

use super::alerts::{AlertFields, AlertWrite, Mark, NewEvent, Severity};
use super::suite::{at, evaluated, probe_result, unique_host};
use super::{Store, StoreResult};
use backwatch_proto::model::ProbeKind;
use backwatch_rules::status::Status;

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    change_marks_grow_with_status_changes_and_alert_marks(store).await?;
    daily_samples_are_the_last_result_of_each_day(store).await?;
    Ok(())
}

/// A status change moves the first mark; an alert write and an acknowledgement move the
/// second; a result that changes no status moves neither.
pub async fn change_marks_grow_with_status_changes_and_alert_marks(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("marks-dash");
    let disk = |n, secs, status| {
        evaluated(
            probe_result(&host, n, ProbeKind::Disk, "root", secs),
            status,
            "disk",
        )
    };
    store
        .record_results(&host, &[disk(1, 10, Status::Ok)])
        .await?;
    let (t0, e0) = store.change_marks().await?;
    store
        .record_results(&host, &[disk(2, 20, Status::Ok)])
        .await?;
    assert_eq!(store.change_marks().await?, (t0, e0), "no status change");
    store
        .record_results(&host, &[disk(3, 30, Status::Critical)])
        .await?;
    let (t1, e1) = store.change_marks().await?;
    assert!(t1 > t0, "a transition moves the first mark: {t0} -> {t1}");

    let fields = AlertFields {
        host: host.clone(),
        check: "disk.root".into(),
        status: Status::Critical,
        severity: Severity::Critical,
        peak_severity: Severity::Critical,
        notified_severity: None,
        summary: "disk full".into(),
        opened_at: at(30),
        updated_at: at(30),
        last_change_at: at(30),
        last_notified_at: None,
        resolved_at: None,
        flapping: false,
        silenced: false,
    };
    let none = |_: i64| Vec::new();
    let id = store
        .write_alert(&AlertWrite {
            cursor: None,
            existing: None,
            fields: &fields,
            event: NewEvent {
                at: at(30),
                kind: "opened",
                summary: "opened".into(),
                transition_id: None,
            },
            notifications: &none,
        })
        .await?
        .unwrap_or_default();
    let (_, e2) = store.change_marks().await?;
    assert!(
        e2 > e1,
        "an alert write moves the second mark: {e1} -> {e2}"
    );
    let mark = Mark {
        by: "alice".into(),
        at: at(40),
        comment: String::new(),
    };
    store.acknowledge_alert(id, &mark, &[]).await?;
    let (_, e3) = store.change_marks().await?;
    assert!(
        e3 > e2,
        "an acknowledgement moves the second mark: {e2} -> {e3}"
    );
    Ok(())
}

/// One sample per check and UTC day, the day's latest; other kinds and older days left out.
pub async fn daily_samples_are_the_last_result_of_each_day(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("daily");
    const DAY: i64 = 86_400;
    let result = |n, kind, name: &str, secs| {
        evaluated(probe_result(&host, n, kind, name, secs), Status::Ok, "fine")
    };
    // `at(0)` is midnight UTC.
    let items = [
        result(1, ProbeKind::Disk, "root", 100),
        result(2, ProbeKind::Disk, "root", DAY - 1),
        result(3, ProbeKind::Disk, "root", DAY + 5),
        result(4, ProbeKind::Disk, "data", 7),
        result(5, ProbeKind::Backup, "daily", 50),
        result(6, ProbeKind::Disk, "root", 3 * DAY),
        result(7, ProbeKind::Disk, "root", -DAY),
    ];
    store.record_results(&host, &items).await?;
    let ours: Vec<_> = store
        .daily_last_results(ProbeKind::Disk, at(0))
        .await?
        .into_iter()
        .filter(|(h, _)| *h == host)
        .map(|(_, e)| (e.check, e.measured_at, e.result_id))
        .collect();
    let id = |n| format!("{host}/r{n}");
    assert_eq!(
        ours,
        [
            ("disk.data".to_string(), at(7), id(4)),
            ("disk.root".to_string(), at(DAY - 1), id(2)),
            ("disk.root".to_string(), at(DAY + 5), id(3)),
            ("disk.root".to_string(), at(3 * DAY), id(6)),
        ]
    );
    Ok(())
}
