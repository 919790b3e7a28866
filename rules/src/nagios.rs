//! Nagios / Icinga plugin output: one status line with performance data, shared by
//! `backwatch-agent check --format nagios` and `backwatch-collector status`, so both print
//! the same thing for the same measurements.
//!
//! Format (<https://nagios-plugins.org/doc/guidelines.html>, "Plugin Output"):
//! `BACKWATCH <STATE> - <text> | 'label'=value[UOM];[warn];[crit];[min];[max] ...`
//!
//! Invariants:
//! - the text never contains `|` or a line break (they would cut the performance data);
//! - labels are single-quoted, a quote inside doubled, `=` replaced (it ends the label);
//! - UOMs are only the ones the guidelines know: none, `s`, `%`, `B`, `c`;
//! - the exit code follows [`Status::rank`]: critical over unknown over warning over ok.

use crate::Limits;
use crate::status::Status;
use backwatch_proto::model::{Observation, ProbeResult};
use std::fmt::Write;

/// One performance datum. Thresholds use the plugin range syntax (`"85"`, `"604800:"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    pub uom: &'static str,
    pub warn: Option<String>,
    pub crit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Perf {
    fn new(label: String, value: f64, uom: &'static str) -> Self {
        Perf {
            label,
            value,
            uom,
            warn: None,
            crit: None,
            min: Some(0.0),
            max: None,
        }
    }
    fn warn(mut self, w: impl ToString) -> Self {
        self.warn = Some(w.to_string());
        self
    }
    fn crit(mut self, c: impl ToString) -> Self {
        self.crit = Some(c.to_string());
        self
    }
}

impl std::fmt::Display for Perf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = self.label.replace('\'', "''").replace('=', "_");
        let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
        write!(
            f,
            "'{label}'={}{};{};{};{};{}",
            fmt_num(self.value),
            self.uom,
            self.warn.as_deref().unwrap_or(""),
            self.crit.as_deref().unwrap_or(""),
            num(self.min),
            num(self.max)
        )?;
        Ok(())
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The measured values of one result, with the thresholds the rules apply to them.
pub fn perfdata(r: &ProbeResult, limits: &Limits) -> Vec<Perf> {
    let check = r.check_id();
    let label = |what: &str| format!("{check}_{what}");
    let mut out = Vec::new();
    match &r.observation {
        Some(Observation::Disk(d)) if d.error.is_none() => {
            // The limits the verdict used (`evaluate`): the agent's spool has the procedure's.
            let spool = crate::DiskLimits::default();
            let disk = if r.name == backwatch_proto::model::AGENT_SPOOL_PROBE {
                &spool
            } else {
                &limits.disk
            };
            if let Some(pct) = d.used_pct() {
                let mut p = Perf::new(label("used"), f64::from(pct), "%")
                    .warn(disk.warning_pct)
                    .crit(disk.critical_pct);
                p.max = Some(100.0);
                out.push(p);
            }
            out.push(Perf::new(label("avail"), d.avail_bytes as f64, "B"));
        }
        Some(Observation::Backup(b)) => {
            let l = limits.backup_for(&r.name);
            let max_age = l
                .max_age
                .or(b.expected_max_age_secs.map(std::time::Duration::from_secs))
                .unwrap_or_else(|| crate::backup::default_max_age(&r.name))
                .saturating_add(l.grace);
            if let Some(n) = &b.newest {
                out.push(Perf::new(label("age"), n.age_secs as f64, "s").crit(max_age.as_secs()));
                let mut size = Perf::new(label("size"), n.size_bytes as f64, "B");
                if let Some(min) = l.min_size_bytes {
                    size = size.warn(format!("{min}:"));
                }
                out.push(size);
            }
            out.push(Perf::new(label("files"), b.file_count as f64, ""));
        }
        Some(Observation::Wal(w)) => {
            // Left out when it cannot be known: a 0 would graph as "nothing waiting".
            if let Some(delay) = crate::wal::archive_delay_secs(w) {
                out.push(
                    Perf::new(label("delay"), delay as f64, "s")
                        .crit(limits.wal.max_delay.as_secs()),
                );
            }
            let mut pending = Perf::new(label("pending"), w.ready_segments as f64, "");
            if let Some(m) = limits.wal.max_pending {
                pending = pending.warn(m);
            }
            out.push(pending);
            out.push(Perf::new(label("failed"), w.failed_count as f64, "c"));
            out.push(Perf::new(label("archived"), w.archived_count as f64, "c"));
        }
        Some(Observation::Archive(a)) => {
            if let Some(oldest) = &a.oldest_segment {
                let min = limits
                    .archive
                    .min_retention
                    .or(a
                        .expected_min_retention_secs
                        .map(std::time::Duration::from_secs))
                    .unwrap_or(crate::archive::DEFAULT_MIN_RETENTION);
                out.push(
                    Perf::new(label("retention"), oldest.age_secs.max(0) as f64, "s")
                        .warn(format!("{}:", min.as_secs())),
                );
            }
            out.push(Perf::new(label("segments"), a.segments as f64, ""));
            out.push(Perf::new(label("bytes"), a.segment_bytes as f64, "B"));
        }
        Some(Observation::Drill(d)) => {
            if let Some(ms) = d.rto_ms {
                let mut rto = Perf::new(label("rto"), ms as f64 / 1000.0, "s");
                // The collector's limit wins, as in the verdict (`drill::judge_with`).
                if let Some(max) = limits.drill.max_rto.map(|d| d.as_secs()).or(d.max_rto_secs) {
                    rto = rto.warn(max);
                }
                out.push(rto);
                out.push(Perf::new(
                    label("restore"),
                    d.restore_ms as f64 / 1000.0,
                    "s",
                ));
                out.push(Perf::new(
                    label("recovery"),
                    d.recovery_ms as f64 / 1000.0,
                    "s",
                ));
            }
            out.push(Perf::new(
                label("wal_segments"),
                d.wal_segments_restored as f64,
                "",
            ));
        }
        _ => {}
    }
    out
}

/// One check as it goes into the status line.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub check: String,
    pub status: Status,
    pub summary: String,
    pub perf: Vec<Perf>,
}

/// Plugin exit code of a status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
pub fn exit_code(s: Status) -> u8 {
    match s {
        Status::Ok => 0,
        Status::Warning => 1,
        Status::Critical => 2,
        Status::Unknown => 3,
    }
}

/// Text safe for the first line: no `|`, no line breaks.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '|' => '/',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// The status line and its exit code. With no checks the state is UNKNOWN ("no checks").
/// The text names each non-ok check worst first, then how many are ok.
pub fn status_line(checks: &[CheckLine]) -> (String, u8) {
    let worst = checks
        .iter()
        .map(|c| c.status)
        .max_by_key(|s| s.rank())
        .unwrap_or(Status::Unknown);
    let mut bad: Vec<&CheckLine> = checks.iter().filter(|c| c.status != Status::Ok).collect();
    bad.sort_by_key(|c| std::cmp::Reverse(c.status.rank()));
    let ok = checks.len() - bad.len();
    let mut text = String::new();
    for c in &bad {
        let _ = write!(
            text,
            "{} {}: {}; ",
            c.check,
            c.status.as_str().to_uppercase(),
            clean(&c.summary)
        );
    }
    if checks.is_empty() {
        text.push_str("no checks");
    } else if bad.is_empty() {
        let _ = write!(text, "{ok} check{} ok", if ok == 1 { "" } else { "s" });
    } else {
        let _ = write!(text, "{ok} of {} checks ok", checks.len());
    }
    let mut line = format!("BACKWATCH {} - {text}", worst.as_str().to_uppercase());
    let perf: Vec<String> = checks
        .iter()
        .flat_map(|c| c.perf.iter().map(ToString::to_string))
        .collect();
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(&perf.join(" "));
    }
    (line, exit_code(worst))
}

/// An UNKNOWN line for when there is nothing to judge (unknown host, unreadable store).
pub fn unknown(message: &str) -> (String, u8) {
    (format!("BACKWATCH UNKNOWN - {}", clean(message)), 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(check: &str, status: Status, summary: &str, perf: Vec<Perf>) -> CheckLine {
        CheckLine {
            check: check.into(),
            status,
            summary: summary.into(),
            perf,
        }
    }

    #[test]
    fn all_ok_counts_checks_and_exits_0() {
        let p = Perf::new("disk.backup_used".into(), 42.0, "%")
            .warn(75)
            .crit(85);
        let (l, code) = status_line(&[
            line("disk.backup", Status::Ok, "42 % used", vec![p]),
            line("backup.daily", Status::Ok, "fresh", vec![]),
        ]);
        assert_eq!(
            l,
            "BACKWATCH OK - 2 checks ok | 'disk.backup_used'=42%;75;85;0;"
        );
        assert_eq!(code, 0);
    }

    #[test]
    fn critical_wins_over_unknown_and_is_named_first() {
        let (l, code) = status_line(&[
            line("wal.main", Status::Unknown, "cannot connect", vec![]),
            line("backup.daily", Status::Critical, "48 h old | x\ny", vec![]),
            line("disk.backup", Status::Ok, "", vec![]),
        ]);
        assert_eq!(
            l,
            "BACKWATCH CRITICAL - backup.daily CRITICAL: 48 h old / x y; \
             wal.main UNKNOWN: cannot connect; 1 of 3 checks ok"
        );
        assert_eq!(code, 2);
    }

    #[test]
    fn labels_are_quoted_and_escaped() {
        let p = Perf::new("it's=odd".into(), 1.5, "s");
        assert_eq!(p.to_string(), "'it''s_odd'=1.500s;;;0;");
    }

    #[test]
    fn perfdata_thresholds_are_the_ones_the_verdict_used() {
        use backwatch_proto::model::{DiskObs, DrillObs, ProbeKind, ProbeResult};
        let result = |kind, name: &str, observation| ProbeResult {
            result_id: "r".into(),
            kind,
            name: name.into(),
            measured_at: chrono::Utc::now(),
            duration_ms: 1,
            interval_secs: 60,
            error: None,
            observation: Some(observation),
        };
        let mut limits = Limits::default();
        limits.disk.warning_pct = 90;
        limits.disk.critical_pct = 95;
        limits.drill.max_rto = Some(std::time::Duration::from_secs(1800));
        let disk = Observation::Disk(DiskObs {
            total_bytes: 100,
            free_bytes: 50,
            avail_bytes: 50,
            ..DiskObs::default()
        });
        let spool = result(
            ProbeKind::Disk,
            backwatch_proto::model::AGENT_SPOOL_PROBE,
            disk.clone(),
        );
        assert!(
            perfdata(&spool, &limits)[0]
                .to_string()
                .ends_with("%;75;85;0;100")
        );
        let backup = result(ProbeKind::Disk, "backup", disk);
        assert!(
            perfdata(&backup, &limits)[0]
                .to_string()
                .ends_with("%;90;95;0;100")
        );
        let drill = result(
            ProbeKind::Drill,
            "main",
            Observation::Drill(Box::new(DrillObs {
                rto_ms: Some(60_000),
                max_rto_secs: Some(3600),
                ..DrillObs::default()
            })),
        );
        assert_eq!(
            perfdata(&drill, &limits)[0].to_string(),
            "'drill.main_rto'=60s;1800;;0;"
        );
    }

    #[test]
    fn no_checks_is_unknown() {
        assert_eq!(
            status_line(&[]),
            ("BACKWATCH UNKNOWN - no checks".into(), 3)
        );
    }
}
