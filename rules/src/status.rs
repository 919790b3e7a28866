//! Check status and the verdict a rule gives.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `Ok < Warning < Critical` by severity; `Unknown` ("cannot judge") stands apart and sorts
/// after Critical only where a worst-first order is wanted (see [`Status::rank`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// Worst-first order for lists and exit codes: critical, unknown, warning, ok.
    pub fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a status (ok, warning, critical, unknown)")]
pub struct BadStatus(pub String);

impl FromStr for Status {
    type Err = BadStatus;
    fn from_str(s: &str) -> Result<Self, BadStatus> {
        match s {
            "ok" => Ok(Status::Ok),
            "warning" => Ok(Status::Warning),
            "critical" => Ok(Status::Critical),
            "unknown" => Ok(Status::Unknown),
            other => Err(BadStatus(other.to_string())),
        }
    }
}

/// What a rule concluded from one observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    /// One sentence a person reads in a list or an email subject.
    pub summary: String,
    /// The numbers behind the verdict (measured values, thresholds), for the API and history.
    pub details: serde_json::Value,
    /// The response procedure of the check, when the status is not ok.
    pub procedure: Option<&'static str>,
}

impl Verdict {
    pub fn new(status: Status, summary: impl Into<String>) -> Self {
        Verdict {
            status,
            summary: summary.into(),
            details: serde_json::Value::Null,
            procedure: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_procedure(mut self, procedure: &'static str) -> Self {
        if self.status != Status::Ok {
            self.procedure = Some(procedure);
        }
        self
    }
}
