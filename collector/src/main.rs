//! `backwatch-collector`: run the collector, check its configuration, make certificates.

use anyhow::Context;
use backwatch_collector::{certs, config::Config, server};
use backwatch_common::config::EXIT_CONFIG;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "/etc/backwatch/collector.toml";

#[derive(Parser)]
#[command(
    name = "backwatch-collector",
    version = backwatch_common::version_string!(),
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
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Old name of `config check`, kept for scripts and deploy notes written before it.
    #[command(hide = true)]
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print one host's checks as a Nagios/Icinga plugin status line with performance data,
    /// from the store. Exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for an unknown
    /// host or check, and for a silent host).
    Status {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Host name as in its agent certificate.
        #[arg(long)]
        host: String,
        /// Only this check (e.g. `backup.daily`).
        #[arg(long)]
        check: Option<String>,
    },
    /// Print a shell completion script to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (backwatch-collector.1 and one per subcommand) into a directory.
    Man {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Issue a one-time enrollment token for a new host (needs `[enroll]`). The token alone
    /// goes to standard output; give it to `backwatch-agent enroll --token-file` on that host.
    Enroll {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The host the certificate will name (as the agent reports it).
        #[arg(long)]
        host: String,
        /// How long the token stays valid, e.g. "1h", "30m" (default `[enroll] token_ttl`; at most 7d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Retire a host (take it out of the fleet), bring it back, or list the retired ones.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Produce the daily report or the monthly review from the store, on demand or as a backfill.
    Report(backwatch_collector::report::cli::ReportArgs),
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

/// jemalloc rather than glibc's malloc: ingest allocates and frees a decoded batch per message
/// from many sessions on every runtime thread, and through a fleet-wide spool drain of 10,000
/// agents the collector stored results about half again as fast with it, at the same memory
/// (docs/benchmarks.md, "allocator"). The agent keeps the system allocator: its resident size
/// is the figure that matters there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // One TLS provider for the whole process (see docs/building.md): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `status` is a monitoring server's plugin call.
    let cli: Cli = backwatch_common::cli::parse_or_plugin_unknown(|args| {
        args.get(1).is_some_and(|a| a == "status")
    });
    match cli.command {
        Command::Report(args) => backwatch_collector::report::cli::main(args),
        Command::Enroll { config, host, ttl } => enroll(&config, &host, ttl.as_deref()),
        Command::Hosts(cmd) => hosts(cmd),
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
        Command::CheckConfig { config } | Command::Config(ConfigCommand::Check { config }) => {
            match Config::load(&config) {
                Ok(c) => {
                    print!(
                        "{}",
                        backwatch_collector::config::effective::render(&config, &c)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_CONFIG as u8)
                }
            }
        }
        Command::Status {
            config,
            host,
            check,
        } => status(&config, &host, check.as_deref()),
        Command::Completions { shell } => {
            backwatch_common::cli::completions(shell, <Cli as clap::CommandFactory>::command());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            match backwatch_common::cli::man_pages(
                <Cli as clap::CommandFactory>::command(),
                backwatch_common::version_string!(),
                &dir,
            ) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "backwatch-collector: writing man pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
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

#[derive(Subcommand)]
enum HostsCommand {
    /// Take a host out of the fleet: its open alerts resolve with the reason, it leaves the
    /// fleet view, reports, /metrics and silence detection, and its certificate is refused;
    /// its history stays readable.
    Retire {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        host: String,
        /// Why (shown with the host and in its alerts' resolution).
        #[arg(long)]
        reason: String,
        /// Who (default: the user running the command).
        #[arg(long)]
        by: Option<String>,
    },
    /// Put a retired host back in the fleet.
    Unretire {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        host: String,
    },
    /// List the retired hosts: name, when, by whom, why.
    Retired {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// `hosts ...`: the store opened from the configuration; exit 0 done, 1 refused (unknown or
/// already in that state), 64 a configuration problem, 69 the store unavailable.
fn hosts(cmd: HostsCommand) -> ExitCode {
    use backwatch_collector::store::{RetiredHost, SqlStore, Store};
    let config = match &cmd {
        HostsCommand::Retire { config, .. }
        | HostsCommand::Unretire { config, .. }
        | HostsCommand::Retired { config } => config.clone(),
    };
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backwatch-collector: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let store = match SqlStore::open(&cfg.store_url).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("backwatch-collector: opening the store: {e}");
                return ExitCode::from(69);
            }
        };
        let done = match cmd {
            HostsCommand::Retire {
                host, reason, by, ..
            } => match store.host(&host).await {
                Ok(None) => Err(format!("no host {host:?} in the store")),
                Err(e) => Err(e.to_string()),
                Ok(Some(_)) => {
                    let by = by
                        .or_else(|| std::env::var("SUDO_USER").ok())
                        .or_else(|| std::env::var("USER").ok())
                        .unwrap_or_else(|| "backwatch-collector".into());
                    let r = RetiredHost {
                        host: host.clone(),
                        retired_at: chrono::Utc::now(),
                        retired_by: by,
                        reason,
                    };
                    match store.retire_host(&r).await {
                        Ok(true) => Ok(format!(
                            "retired {host}: its open alerts resolve at the alert engine's next round"
                        )),
                        Ok(false) => Err(format!("{host} is already retired")),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
            HostsCommand::Unretire { host, .. } => match store.unretire_host(&host).await {
                Ok(true) => Ok(format!("{host} is back in the fleet")),
                Ok(false) => Err(format!("{host} is not retired")),
                Err(e) => Err(e.to_string()),
            },
            HostsCommand::Retired { .. } => match store.retired_hosts().await {
                Ok(all) => Ok(all
                    .iter()
                    .map(|r| {
                        format!(
                            "{}\t{}\t{}\t{}",
                            r.host,
                            r.retired_at.to_rfc3339(),
                            r.retired_by,
                            r.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")),
                Err(e) => Err(e.to_string()),
            },
        };
        match done {
            Ok(text) => {
                if !text.is_empty() {
                    println!("{text}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("backwatch-collector: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective configuration, every default
    /// filled in, as TOML (secrets left out). Exit code 64 when it has problems.
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// `status`: a plugin line from the store; every failure is UNKNOWN (exit 3), as plugins do.
fn status(config: &std::path::Path, host: &str, check: Option<&str>) -> ExitCode {
    let (line, code) = match Config::load(config) {
        Err(e) => backwatch_rules::nagios::unknown(&e.to_string()),
        Ok(cfg) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Err(e) => backwatch_rules::nagios::unknown(&format!("starting runtime: {e}")),
            Ok(rt) => rt.block_on(async {
                match backwatch_collector::store::SqlStore::open(&cfg.store_url).await {
                    Err(e) => backwatch_rules::nagios::unknown(&format!("opening the store: {e}")),
                    Ok(store) => {
                        backwatch_collector::nagios::status(
                            &store,
                            &cfg,
                            host,
                            check,
                            chrono::Utc::now(),
                        )
                        .await
                    }
                }
            }),
        },
    };
    println!("{line}");
    ExitCode::from(code)
}

/// `enroll`: store a token's digest for `host`, print the token (stdout) and how to use it
/// (stderr).
fn enroll(path: &std::path::Path, host: &str, ttl: Option<&str>) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let Some(enroll) = cfg.enroll else {
        eprintln!(
            "{}: enrollment is off: add [enroll] with ca_key (the fleet CA key) first",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG as u8);
    };
    let ttl = match ttl.map(backwatch_common::config::parse_duration) {
        None => enroll.token_ttl,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("backwatch-collector: --ttl: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let issued = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let store = backwatch_collector::store::SqlStore::open(&cfg.store_url).await?;
                let now = chrono::Utc::now();
                Ok(backwatch_collector::enroll::issue_token(&store, host, ttl, "cli", now).await?)
            })
        });
    match issued {
        Ok(t) => {
            println!("{}", t.token);
            eprintln!(
                "enrollment token for {} (one use, expires {}); on that host run:\n  \
                 backwatch-agent enroll --collector https://<this collector>:{} --ca <fleet ca.pem> \
                 --host {} --token-file - (the token on standard input)",
                t.host,
                t.expires_at.to_rfc3339(),
                enroll.listen.port(),
                t.host
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backwatch-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}
