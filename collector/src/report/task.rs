//! The report scheduler: wakes when a report becomes due (at least once a minute), builds
//! what [`schedule::due_runs`] says is due, and claims the run together with its messages.
//!
//! Invariants: the decision is the pure `due_runs`; the claim and the queued messages commit
//! in one transaction, so a crash before it sends nothing (the next start produces the run)
//! and a crash after it leaves the messages to the outbox's delivery guarantees. Several
//! collectors may build the same report; only the one whose claim lands queues it.

use super::render_html::{Images, content_id};
use super::schedule::{self, Kind, Run};
use super::{Month, Report};
use crate::alerts::routes::{Target, summary_routes};
use crate::config::alerting::Alerting;
use crate::config::reloadable::Reloadable;
use crate::config::reports::Reports;
use crate::store::outbox::{Channel, NewNotification};
use crate::store::reports::{Attachment, ReportRun};
use crate::store::{Store, StoreResult};
use base64::Engine;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// Longest sleep between two looks at the clock: a changed system clock or a store that was
/// unreachable is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Reads the running `[reports]` and routes at every turn: a SIGHUP that turns reports on or
/// moves their schedule takes effect within [`MAX_SLEEP`].
pub async fn run(store: Arc<dyn Store>, cfg: Reloadable<Reports>, alerting: Reloadable<Alerting>) {
    let mut was_enabled = None;
    loop {
        let (reports, routes) = (cfg.get(), alerting.get());
        if was_enabled != Some(reports.enabled) && !reports.enabled {
            info!("scheduled reports are off (reports.enabled = false)");
        }
        was_enabled = Some(reports.enabled);
        let wait = if reports.enabled {
            if let Err(e) = step(&*store, &reports, &routes, Utc::now()).await {
                error!(error = %e, "report run failed; retrying within a minute");
            }
            let now = Utc::now();
            (schedule::next_due(now, &reports) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(200), MAX_SLEEP)
        } else {
            MAX_SLEEP
        };
        tokio::time::sleep(wait).await;
    }
}

/// Produce and claim every run due at `now`; returns the keys this call claimed.
pub async fn step(
    store: &dyn Store,
    cfg: &Reports,
    alerting: &Alerting,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let claimed = store.latest_report_runs().await?;
    let mut won = Vec::new();
    for run in schedule::due_runs(now, &claimed, cfg) {
        let messages = if run.baseline {
            Vec::new()
        } else {
            let report = build(store, cfg, &run, now).await?;
            let (cfg, alerting, run) = (cfg.clone(), alerting.clone(), run.clone());
            super::off_runtime(move || messages(&report, &cfg, &alerting, &run, now))
                .await
                .map_err(|problem| crate::store::StoreError::Corrupt {
                    what: "report",
                    problem,
                })?
        };
        let record = ReportRun {
            key: run.key(),
            kind: run.kind.as_str().into(),
            period: run.period.clone(),
            scheduled_at: run.at,
            claimed_at: now,
            claimed_by: alerting.delivery.worker_id.clone(),
            baseline: run.baseline,
            notifications: messages.len() as i64,
        };
        if store.claim_report_run(&record, &messages).await? {
            if run.baseline {
                info!(run = %record.key, "reports: first start on this store, recorded the latest due run without sending it");
            } else if messages.is_empty() {
                warn!(run = %record.key, "report produced, but no route has daily_summary = true");
            } else {
                info!(run = %record.key, messages = messages.len(), "report queued");
            }
            won.push(record.key);
        } else {
            info!(run = %record.key, "report already produced (by another collector or an earlier run)");
        }
    }
    Ok(won)
}

async fn build(
    store: &dyn Store,
    cfg: &Reports,
    run: &Run,
    now: DateTime<Utc>,
) -> StoreResult<Report> {
    Ok(match run.kind {
        Kind::Daily => Report::Daily(super::daily(store, cfg, run.at, now, None).await?),
        Kind::Monthly => {
            let month: Month = run
                .period
                .parse()
                .unwrap_or_else(|_| Month::previous(now, cfg));
            Report::Monthly(super::monthly(store, cfg, month, now, None).await?)
        }
    })
}

fn subject(report: &Report) -> String {
    match report {
        Report::Daily(r) => {
            let s = &r.summary;
            let mut parts = Vec::new();
            if s.hosts_critical > 0 {
                parts.push(format!("{} critical", s.hosts_critical));
            }
            if s.hosts_warning > 0 {
                parts.push(format!("{} warning", s.hosts_warning));
            }
            if s.hosts_unknown > 0 {
                parts.push(format!("{} unknown", s.hosts_unknown));
            }
            if parts.is_empty() {
                parts.push(format!("all {} hosts ok", s.hosts));
            }
            format!(
                "{}: {}, {} open alerts",
                r.title,
                parts.join(", "),
                s.open_alerts
            )
        }
        Report::Monthly(r) => r.title.clone(),
    }
}

/// One message per recipient of every route with `daily_summary`: email with the charts as
/// inline parts, or the report's JSON to a webhook.
pub fn messages(
    report: &Report,
    cfg: &Reports,
    alerting: &Alerting,
    run: &Run,
    now: DateTime<Utc>,
) -> Vec<(NewNotification, Vec<Attachment>)> {
    let charts = report.charts();
    let (html, text) = report.html_and_text(cfg, &charts, Images::ContentId);
    let parts: Vec<Attachment> = charts
        .iter()
        .map(|c| Attachment {
            cid: content_id(c),
            content_type: "image/png".into(),
            data: base64::engine::general_purpose::STANDARD.encode(&c.png),
        })
        .collect();
    let subject = subject(report);
    let payload = serde_json::json!({
        "kind": "report",
        "report": run.kind.as_str(),
        "run": run.key(),
        "subject": subject,
        "content": report.value(),
    })
    .to_string();
    let mut out = Vec::new();
    for route in summary_routes(&alerting.routes) {
        for (channel, recipient) in route.recipients() {
            let message_id = format!(
                "<report-{}-{}@{}>",
                run.key().replace(':', "-"),
                uuid::Uuid::new_v4(),
                alerting.message_domain
            );
            let email = channel == Channel::Email;
            let n = NewNotification {
                kind: "report".into(),
                route: route.name.clone(),
                channel,
                recipient: recipient.to_string(),
                subject: subject.clone(),
                body_text: text.clone(),
                body_html: if email { html.clone() } else { String::new() },
                payload: if matches!(route.target, Target::Webhook(_)) {
                    payload.clone()
                } else {
                    String::new()
                },
                message_id,
                thread_id: None,
                created_at: now,
            };
            out.push((n, if email { parts.clone() } else { Vec::new() }));
        }
    }
    out
}
