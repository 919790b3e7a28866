//! `[[wal]]`: the WAL archiving probe's configuration: a connection to one PostgreSQL server,
//! every 15 minutes by default. Other sections (`archive_dir.wal`) refer to it by name.

use super::effective::Settings;
use super::{At, Cx, Section, Valid};
use crate::probe::wal_archive::{WalProbe, redacted};
use backwatch_common::config::de_opt_duration;
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

pub const WAL_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    pub name: String,
    /// libpq-style DSN ("host=/var/run/postgresql user=backwatch dbname=postgres") or URL.
    pub dsn: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub statement_timeout: Option<Duration>,
    /// The whole run's limit (default: connect_timeout + 3 × statement_timeout + 5 s).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Report WAL not archivable yet with archive_timeout = 0 (docs/checks.md R19; default false).
    pub exposure_advisory: Option<bool>,
}

impl Section for RawWal {
    const KEY: &'static str = "wal";
    const KIND: ProbeKind = ProbeKind::Wal;
    const INTERVAL: Duration = WAL_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let connect_timeout = self.connect_timeout.unwrap_or(Duration::from_secs(5));
        let statement_timeout = self.statement_timeout.unwrap_or(Duration::from_secs(10));
        let timeout = cx.timeout(
            at,
            self.timeout,
            connect_timeout + statement_timeout * 3 + Duration::from_secs(5),
        );
        let pg = match tokio_postgres::Config::from_str(&self.dsn) {
            Ok(c) => c,
            Err(e) => {
                // The DSN may hold a password: name the problem, never echo the value.
                cx.problems.push(
                    at.key("dsn"),
                    format!("is not a valid PostgreSQL connection string: {e}"),
                );
                return None;
            }
        };
        let probe = WalProbe {
            name: self.name,
            pg,
            connect_timeout,
            statement_timeout,
            exposure_advisory: self.exposure_advisory.unwrap_or(false),
            unswitched: Default::default(),
            pending_seen: Default::default(),
        };
        // Redacted: `config check` output is pasted into tickets. It loads back, without
        // the password, which the server then asks for or takes from ~/.pgpass.
        let settings = Settings::default()
            .set("dsn", redacted(&probe.pg))
            .note("dsn is shown without its password")
            .duration("connect_timeout", probe.connect_timeout)
            .duration("statement_timeout", probe.statement_timeout)
            .set("exposure_advisory", probe.exposure_advisory)
            .duration("timeout", timeout);
        Some(Valid {
            probe: Box::new(probe),
            timeout,
            settings,
        })
    }
}
