//! `backwatch-collector`: run the collector, check its configuration, make certificates.

use anyhow::Context;
use backwatch_collector::{certs, config::Config, server};
use backwatch_proto::config::EXIT_CONFIG;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "/etc/backwatch/collector.toml";

#[derive(Parser)]
#[command(
    name = "backwatch-collector",
    version,
    about = "Backwatch collector: fleet-wide monitoring of PostgreSQL backups and WAL archiving"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (gRPC ingest over mutual TLS, HTTP API, silence detection).
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration and print the effective thresholds.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Create a fleet CA (or reuse the one in DIR), a collector certificate and agent certificates.
    Certs {
        /// Directory for ca.pem, collector.pem, agents/<host>.pem and their keys.
        #[arg(long)]
        dir: PathBuf,
        /// DNS names or IP addresses agents use to reach the collector (default: localhost, 127.0.0.1).
        #[arg(long = "collector-name")]
        collector_names: Vec<String>,
        /// Host name of an agent to issue a certificate for (repeatable).
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// Validity of the issued certificates in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

fn main() -> ExitCode {
    // One TLS provider for the whole process (see shared build notes): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("starting runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(server::run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("backwatch-collector: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok", config.display());
                println!("grpc.listen = {}", c.grpc_listen);
                println!("http.listen = {}", c.http_listen);
                println!("http.auth = {}", c.http_auth.describe());
                println!(
                    "store.url = {}",
                    backwatch_collector::store::redact_url(&c.store_url)
                );
                match serde_json::to_string_pretty(&c.thresholds.base) {
                    Ok(t) => println!("thresholds (defaults merged) = {t}"),
                    Err(e) => eprintln!("printing thresholds: {e}"),
                }
                print_alerting(&c.alerting);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        },
        Command::Certs {
            dir,
            collector_names,
            agents,
            days,
        } => match certs::issue(&dir, &collector_names, &agents, days)
            .with_context(|| format!("issuing certificates in {}", dir.display()))
        {
            Ok(issued) => {
                if issued.reused_ca {
                    println!("using the existing CA in {}", dir.display());
                }
                for p in issued.written {
                    println!("wrote {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("backwatch-collector: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Where notifications go, as check-config shows it (never the SMTP password).
fn print_alerting(a: &backwatch_collector::config::alerting::Alerting) {
    use backwatch_collector::alerts::routes::Target;
    match &a.smtp {
        Some(s) => {
            let tls = format!("{:?}", s.tls).to_lowercase();
            println!("smtp = {}:{} (tls {tls}), from {}", s.host, s.port, s.from);
        }
        None => println!("smtp = none"),
    }
    if a.routes.is_empty() {
        println!("routes = none (alerts are recorded, nobody is notified)");
    }
    for r in &a.routes {
        let to = match &r.target {
            Target::Email(to) => format!("email {}", to.join(", ")),
            Target::Webhook(url) => format!("webhook {url}"),
        };
        let what = match (r.alerts, r.daily_summary) {
            (true, true) => format!("alerts from {} and the daily summary", r.min_status),
            (true, false) => format!("alerts from {}", r.min_status),
            _ => "the daily summary only".to_string(),
        };
        println!("route {} = {what} -> {to}", r.name);
    }
}
