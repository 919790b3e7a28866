//! Which fields of a report the HTML shows, under which headings and how each number reads.
//! The CSV takes every scalar field; the JSON is the struct itself. All three read the same
//! serialised value, so a number cannot differ between them.

/// How a value reads to a person (the exact value is kept in the cell's `data-value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fmt {
    Text,
    Num,
    Bytes,
    /// Bytes per day.
    Rate,
    Secs,
    Pct,
    /// A fraction 0..1 shown as a percentage.
    Ratio,
    Time,
    Status,
}

pub struct Column {
    pub key: &'static str,
    pub label: &'static str,
    pub fmt: Fmt,
}

pub struct Section {
    /// Field of the report holding an array of rows.
    pub field: &'static str,
    pub title: &'static str,
    pub empty: &'static str,
    pub columns: &'static [Column],
}

pub struct Layout {
    pub summary: &'static [Column],
    pub sections: &'static [Section],
}

macro_rules! col {
    ($key:literal, $label:literal, $fmt:ident) => {
        Column {
            key: $key,
            label: $label,
            fmt: Fmt::$fmt,
        }
    };
}

pub static DAILY: Layout = Layout {
    summary: &[
        col!("hosts", "Hosts", Num),
        col!("hosts_ok", "ok", Num),
        col!("hosts_warning", "warning", Num),
        col!("hosts_critical", "critical", Num),
        col!("hosts_unknown", "unknown", Num),
        col!("silent_agents", "Silent agents", Num),
        col!("open_alerts", "Open alerts", Num),
        col!("backups_24h", "Backups in the last 24 h", Num),
    ],
    sections: &[
        Section {
            field: "open_alerts",
            title: "Open alerts",
            empty: "No open alerts.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("severity", "Severity", Status),
                col!("summary", "Summary", Text),
                col!("opened_at", "Opened", Time),
                col!("age_secs", "Age", Secs),
                col!("acknowledged_by", "Acknowledged by", Text),
            ],
        },
        Section {
            field: "silent_agents",
            title: "Silent agents",
            empty: "Every agent is reporting.",
            columns: &[
                col!("host", "Host", Text),
                col!("last_contact", "Last contact", Time),
                col!("silent_for_secs", "Silent for", Secs),
            ],
        },
        Section {
            field: "hosts",
            title: "Hosts",
            empty: "No hosts.",
            columns: &[
                col!("host", "Host", Text),
                col!("status", "Status", Status),
                col!("checks", "Checks", Num),
                col!("checks_not_ok", "Not ok", Num),
                col!("last_contact", "Last contact", Time),
            ],
        },
        Section {
            field: "backups",
            title: "Backups in the last 24 hours",
            empty: "No backup directory reported in the last 24 hours.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("status", "Status", Status),
                col!("backups_24h", "New backups", Num),
                col!("newest_at", "Newest", Time),
                col!("newest_age_secs", "Age", Secs),
                col!("newest_size_bytes", "Size", Bytes),
                col!("total_bytes", "Directory", Bytes),
            ],
        },
        Section {
            field: "storage",
            title: "Backup and archive storage",
            empty: "No storage reported in the last 24 hours.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("kind", "Kind", Text),
                col!("status", "Status", Status),
                col!("used_pct", "Used", Pct),
                col!("used_bytes", "Used bytes", Bytes),
                col!("capacity_bytes", "Capacity", Bytes),
                col!("change_24h_bytes", "Change in 24 h", Bytes),
                col!("retention_secs", "WAL kept", Secs),
            ],
        },
        Section {
            field: "wal",
            title: "WAL archiving",
            empty: "No WAL archiving reported in the last 24 hours.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("status", "Status", Status),
                col!("delay_secs_last_hour", "Delay (last hour)", Secs),
                col!("delay_secs_max_24h", "Max delay (24 h)", Secs),
                col!("archived_24h", "Segments archived", Num),
                col!("failed_24h", "Failures", Num),
                col!("wal_bytes_24h", "Volume", Bytes),
            ],
        },
        Section {
            field: "recovery",
            title: "Recovery: data at risk and recoverable windows",
            empty: "No WAL server or archive reported data at risk or a recoverable window.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("status", "Status", Status),
                col!("data_at_risk_secs_max_24h", "Max data at risk (24 h)", Secs),
                col!(
                    "data_at_risk_secs_last_hour",
                    "Data at risk (last hour)",
                    Secs
                ),
                col!("window_secs_min_24h", "Narrowest window (24 h)", Secs),
            ],
        },
    ],
};

pub static MONTHLY: Layout = Layout {
    summary: &[
        col!("hosts", "Hosts", Num),
        col!("alerts", "Alerts", Num),
        col!("false_positives", "False positives", Num),
        col!("false_positive_rate", "False-positive rate", Ratio),
        col!("ack_median_secs", "Time to acknowledge, median", Secs),
        col!("ack_p90_secs", "Time to acknowledge, p90", Secs),
        col!("resolve_median_secs", "Time to resolve, median", Secs),
        col!("resolve_p90_secs", "Time to resolve, p90", Secs),
        col!("filesystem_used_bytes", "Filesystem space used", Bytes),
        col!("filesystem_growth_bytes_per_day", "Filesystem growth", Rate),
        col!("wal_bytes_per_day", "WAL archived per day", Bytes),
    ],
    sections: &[
        Section {
            field: "storage",
            title: "Capacity: growth and projections",
            empty: "No storage measured this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("kind", "Kind", Text),
                col!("used_pct_last", "Used", Pct),
                col!("used_bytes_last", "Used bytes", Bytes),
                col!("capacity_bytes", "Capacity", Bytes),
                col!("growth_bytes_per_day", "Growth", Rate),
                col!("projected_75_at", "Crosses 75 %", Time),
                col!("projection_75", "", Text),
                col!("projected_85_at", "Crosses 85 %", Time),
                col!("projection_85", "", Text),
                col!("needed_3m_bytes", "In 3 months", Bytes),
                col!("needed_6m_bytes", "In 6 months", Bytes),
                col!("needed_12m_bytes", "In 12 months", Bytes),
            ],
        },
        Section {
            field: "backups",
            title: "Backups: timing, size and duration",
            empty: "No backups measured this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("backups", "Backups", Num),
                col!("typical_time", "Typical time", Text),
                col!("newest_size_bytes", "Newest size", Bytes),
                col!("size_trend_bytes_per_day", "Size trend", Rate),
                col!("duration_median_secs", "Duration, median", Secs),
                col!("duration_max_secs", "Duration, max", Secs),
            ],
        },
        Section {
            field: "archive_lag",
            title: "Archive lag (hourly maxima of the oldest waiting segment's age), success rate and archive_command latency",
            empty: "No WAL archiving measured this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("hours", "Hours", Num),
                col!("median_secs", "Median", Secs),
                col!("p95_secs", "p95", Secs),
                col!("max_secs", "Max", Secs),
                col!("archived", "Archived", Num),
                col!("failed", "Failed", Num),
                col!("success_pct", "Success", Pct),
                col!("latency_median_ms", "Latency median (ms)", Num),
                col!("latency_p95_ms", "Latency p95 (ms)", Num),
            ],
        },
        Section {
            field: "recoverability",
            title: "Recoverability: worst data at risk and narrowest recoverable window",
            empty: "No WAL server or archive reported data at risk or a recoverable window this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("days", "Days", Num),
                col!("data_at_risk_secs_max", "Worst data at risk", Secs),
                col!(
                    "days_over_data_at_risk_limit",
                    "Days over the data-at-risk limit",
                    Num
                ),
                col!("window_secs_min", "Narrowest window", Secs),
            ],
        },
        Section {
            field: "drills",
            title: "Restore drills: runs, passes and recovery time (RTO)",
            empty: "No restore drill ran this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Drill", Text),
                col!("drills", "Drills", Num),
                col!("passed", "Passed", Num),
                col!("warned", "Warned", Num),
                col!("failed", "Failed", Num),
                col!("rto_median_secs", "RTO median", Secs),
                col!("rto_p90_secs", "RTO p90", Secs),
                col!("rto_max_secs", "RTO longest", Secs),
            ],
        },
        Section {
            field: "not_drilled",
            title: "Clusters not drilled this month",
            empty: "Every cluster with a WAL check was restored by a drill this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "WAL check", Text),
                col!("drills", "Drills", Text),
            ],
        },
        Section {
            field: "wal_volume",
            title: "WAL archive volume",
            empty: "No WAL volume measured this month.",
            columns: &[
                col!("host", "Host", Text),
                col!("check", "Check", Text),
                col!("days", "Days", Num),
                col!("total_bytes", "Total", Bytes),
                col!("mean_bytes_per_day", "Per day", Bytes),
                col!(
                    "trend_bytes_per_day_per_day",
                    "Trend (per day, per day)",
                    Bytes
                ),
            ],
        },
        Section {
            field: "alerts_by_check",
            title: "Alerts per check",
            empty: "No alerts this month.",
            columns: &[
                col!("key", "Check", Text),
                col!("alerts", "Alerts", Num),
                col!("critical", "Critical", Num),
                col!("false_positives", "False positives", Num),
                col!("acknowledged", "Acknowledged", Num),
            ],
        },
        Section {
            field: "alerts_by_host",
            title: "Alerts per host",
            empty: "No alerts this month.",
            columns: &[
                col!("key", "Host", Text),
                col!("alerts", "Alerts", Num),
                col!("critical", "Critical", Num),
                col!("false_positives", "False positives", Num),
                col!("acknowledged", "Acknowledged", Num),
            ],
        },
    ],
};
