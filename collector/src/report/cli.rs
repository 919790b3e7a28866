//! `backwatch-collector report daily|monthly`: a report on demand or a backfill, from the
//! store named in the configuration, to standard output or a file.
//!
//! Exit codes: 0 written; 64 (`EXIT_CONFIG`) for a bad configuration or argument; 1 when the
//! store cannot be read or the file written.

use super::{Format, Month, Report};
use crate::config::Config;
use crate::store::SqlStore;
use backwatch_common::config::EXIT_CONFIG;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The fleet at a glance (default: now).
    Daily,
    /// The monthly review (default: the previous month).
    Monthly,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(value_enum)]
    pub which: Which,
    #[arg(long, short, default_value = "/etc/backwatch/collector.toml")]
    pub config: PathBuf,
    /// Month of a monthly review, `YYYY-MM` (default: the previous month in `reports.timezone`).
    #[arg(long)]
    pub month: Option<String>,
    /// Time of a daily report, RFC 3339 (default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// html (standalone, charts embedded), json, or csv (one table in long form:
    /// table,row,column,value).
    #[arg(long, default_value = "html")]
    pub format: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the hosts whose labels match, `name=value` (`*` matches any run of characters).
    #[arg(long)]
    pub label: Option<String>,
}

fn usage(msg: String) -> ExitCode {
    eprintln!("backwatch-collector report: {msg}");
    ExitCode::from(EXIT_CONFIG as u8)
}

pub fn main(args: ReportArgs) -> ExitCode {
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let format: Format = match args.format.parse() {
        Ok(f) => f,
        Err(e) => return usage(format!("--format: {e}")),
    };
    let now = Utc::now();
    let at = match args.at.as_deref().map(DateTime::parse_from_rfc3339) {
        None => now,
        Some(Ok(t)) => t.with_timezone(&Utc),
        Some(Err(_)) => {
            return usage(format!(
                "--at: {:?} is not an RFC 3339 time (example: 2026-03-29T08:00:00+02:00)",
                args.at.unwrap_or_default()
            ));
        }
    };
    let month = match args.month.as_deref().map(str::parse::<Month>) {
        None => Month::previous(now, &cfg.reports),
        Some(Ok(m)) => m,
        Some(Err(e)) => return usage(format!("--month: {e}")),
    };
    let only = match args.label.as_deref().map(crate::labels::Member::selector) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return usage(format!("--label: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backwatch-collector report: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(async {
        let store = SqlStore::open(&cfg.store_url).await?;
        let r = match args.which {
            Which::Daily => {
                Report::Daily(super::daily(&store, &cfg.reports, at, now, only.as_ref()).await?)
            }
            Which::Monthly => Report::Monthly(
                super::monthly(&store, &cfg.reports, month, now, only.as_ref()).await?,
            ),
        };
        store.close().await;
        Ok::<_, crate::store::StoreError>(r)
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backwatch-collector report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = report.render(&cfg.reports, format);
    match &args.out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "backwatch-collector report: writing {}: {e}",
                    path.display()
                );
                ExitCode::FAILURE
            }
        },
    }
}
