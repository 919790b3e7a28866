//! Collector configuration for alerting scenarios and the API's write calls.
//!
//! The routes are the operations procedure's audiences (`deploy/collector.toml` has the same
//! three): the DBA team hears every alert, system administrators critical ones, management
//! only the daily summary. Timings are shrunk so a scenario takes seconds.

use super::fleet::{Collector, http_client};
use super::smtp::Smtp;
use anyhow::Context;
use serde_json::Value;

pub const DBA: &str = "dba@example.com";
pub const SYSADMIN: &str = "sysadmin@example.com";
pub const MANAGEMENT: &str = "management@example.com";

/// Evaluate often, retry fast; the lease stays above twice the SMTP (10 s) and webhook
/// (30 s) timeouts.
pub const FAST: &str = "[alerts]\nevaluate_every = \"200ms\"\n\
    [delivery]\nretry_initial = \"300ms\"\nretry_max = \"1s\"\npoll_every = \"200ms\"\n\
    lease = \"90s\"\n";

pub const PROCEDURE_ROUTES: &str = r#"
[[routes]]
name = "dba"
to = ["DBA team <dba@example.com>"]
min_status = "warning"

[[routes]]
name = "sysadmin"
to = ["sysadmin@example.com"]
min_status = "critical"

[[routes]]
name = "management"
to = ["management@example.com"]
alerts = false
daily_summary = true
"#;

/// Every disk of host `db1` is a warning (used > 0 %) and never critical.
pub const DB1_DISK_WARNS: &str = "[[overrides]]\nhosts = [\"db1\"]\n\
    [overrides.thresholds.disk]\nwarning_pct = 0\ncritical_pct = 100\n";

/// `[smtp]` to `smtp`, fast timings and the procedure's routes.
pub fn alerting_toml(smtp: &Smtp) -> String {
    format!("{}{FAST}{PROCEDURE_ROUTES}", smtp.collector_toml())
}

/// POST (or DELETE with `body == None`) to the collector's API: (status code, JSON answer).
pub async fn send(
    collector: &Collector,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let client = http_client();
    let url = collector.url(path);
    let request = match (method, body) {
        ("DELETE", _) => client.delete(&url),
        (_, Some(b)) => client.post(&url).json(&b),
        (_, None) => client.post(&url),
    };
    let r = request
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = r.status().as_u16();
    let answer = r.json().await.unwrap_or(Value::Null);
    Ok((status, answer))
}

/// `GET /api/v1/notifications?{query}` as a list.
pub async fn notifications(collector: &Collector, query: &str) -> anyhow::Result<Vec<Value>> {
    let v = collector
        .api(&format!("/api/v1/notifications?{query}"))
        .await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}
