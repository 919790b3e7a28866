//! `backwatch-agent`: probes one database host and streams the measurements to the collector.

mod blocking;
mod config;
mod enroll;
mod link;
mod probe;
mod schedule;
mod spool;

use crate::config::{Config, Scheduled};
use crate::schedule::{Sink, run_once};
use backwatch_common::config::EXIT_CONFIG;
use backwatch_proto::model::ProbeResult;
use backwatch_rules::status::Status;
use backwatch_rules::{Limits, evaluate};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

const DEFAULT_CONFIG: &str = "/etc/backwatch/agent.toml";

#[derive(Parser)]
#[command(
    name = "backwatch-agent",
    version = backwatch_common::version_string!(),
    about = "Backwatch agent: watches PostgreSQL backups, disk space and WAL archiving on this host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the probes on their schedules and stream results to the collector.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run every probe once, print what it saw and the verdict under default thresholds.
    /// Exit code: 0 ok, 1 warning, 2 critical, 3 unknown (the worst wins, critical first).
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Old name of `config check`, kept for scripts and deploy notes written before it.
    #[command(hide = true)]
    PrintConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Get this host's certificate from the collector with a one-time token (from
    /// `backwatch-collector enroll`). The key pair is made here and never sent; key and
    /// certificate are written where `[collector]` key and cert say.
    Enroll {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The collector's enrollment listener, e.g. https://collector.example:7444 (https://
        /// only: the token travels on it).
        #[arg(long)]
        collector: String,
        /// File holding the enrollment token, or `-` to read it from standard input
        /// (preferred over --token: a command line is visible to every local user in `ps`).
        #[arg(long, value_name = "PATH", required_unless_present = "token")]
        token_file: Option<PathBuf>,
        /// The enrollment token itself (visible in `ps` while enrollment runs; prefer
        /// --token-file).
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// The fleet CA certificate: the only one trusted for this connection.
        #[arg(long)]
        ca: PathBuf,
        /// The host name to enroll as (default: this machine's host name); must be the
        /// token's host.
        #[arg(long)]
        host: Option<String>,
        /// TLS name to expect on the collector's certificate, when not the URL's host.
        #[arg(long)]
        server_name: Option<String>,
    },
    /// Print a shell completion script to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (backwatch-agent.1 and one per subcommand) into a directory.
    Man {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective configuration, every default
    /// filled in, as TOML that loads back unchanged. Exit code 64 when it has problems.
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    /// One Nagios/Icinga plugin status line with performance data.
    Nagios,
}

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
    // `check --format nagios`: a monitoring server's plugin call.
    let cli: Cli = backwatch_common::cli::parse_or_plugin_unknown(|args| {
        args.iter().any(|a| a == "check")
            && args
                .windows(2)
                .any(|w| w[0] == "--format=nagios" || (w[0] == "--format" && w[1] == "nagios"))
    });
    let plugin = matches!(
        cli.command,
        Command::Check {
            format: Format::Nagios,
            ..
        }
    );
    let path = match &cli.command {
        Command::Run { config }
        | Command::Check { config, .. }
        | Command::Config(ConfigCommand::Check { config })
        | Command::PrintConfig { config } => config.clone(),
        Command::Enroll {
            config,
            collector,
            token_file,
            token,
            ca,
            host,
            server_name,
        } => {
            let source = match (token_file, token) {
                (Some(path), _) => enroll::TokenSource::File(path.clone()),
                (None, Some(t)) => enroll::TokenSource::Arg(t.clone()),
                // clap requires one of the two.
                (None, None) => enroll::TokenSource::Arg(String::new()),
            };
            return enroll_command(collector, &source, |token| enroll::EnrollArgs {
                config: config.clone(),
                collector: collector.clone(),
                token,
                ca: ca.clone(),
                host: host.clone(),
                server_name: server_name.clone(),
            });
        }
        Command::Completions { shell } => {
            backwatch_common::cli::completions(*shell, <Cli as clap::CommandFactory>::command());
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match backwatch_common::cli::man_pages(
                <Cli as clap::CommandFactory>::command(),
                backwatch_common::version_string!(),
                dir,
            ) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "backwatch-agent: writing man pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
    };
    // A plugin's failure is one UNKNOWN line and exit 3, whatever failed.
    let fail = |text: String, code: u8| {
        if plugin {
            let (line, unknown) = backwatch_rules::nagios::unknown(&text);
            println!("{line}");
            return ExitCode::from(unknown);
        }
        eprintln!("{text}");
        ExitCode::from(code)
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), EXIT_CONFIG as u8),
    };
    // Probes are I/O bound and few: a current-thread runtime keeps the agent small.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting runtime: {e}"), 1),
    };
    let code = match cli.command {
        Command::Run { .. } => rt.block_on(run(cfg, &path)),
        Command::Check { format, .. } => rt.block_on(check(cfg, format)),
        Command::PrintConfig { .. } | Command::Config(ConfigCommand::Check { .. }) => {
            print!("{}", config::effective::render(&cfg));
            ExitCode::SUCCESS
        }
        Command::Completions { .. } | Command::Man { .. } | Command::Enroll { .. } => {
            ExitCode::SUCCESS
        }
    };
    // Dropping the runtime would wait for every blocking task, and one stuck on a dead mount
    // never ends: give them a moment, then exit anyway (the spool is safe at any instant).
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    code
}

/// How long an exiting agent waits for its blocking work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

async fn run(cfg: Config, path: &std::path::Path) -> ExitCode {
    let Some(link_cfg) = cfg.collector.clone() else {
        eprintln!(
            "{}: [collector] is required to run (url, ca, cert, key)",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG as u8);
    };
    let spool = match spool::Spool::open(&cfg.spool.dir, cfg.spool.max_results, cfg.spool.max_age) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot open the spool");
            eprintln!("backwatch-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(
        spooled = spool.len(),
        probes = cfg.probes.len(),
        collector = %link_cfg.url,
        "agent starting"
    );
    let spool = match spool::thread::SpoolThread::start(spool) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backwatch-agent: starting the spool thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sink = Sink {
        spool,
        notify: Arc::new(tokio::sync::Notify::new()),
    };
    sink.report_spool_at_start().await;
    // Before any drill runs: what a killed agent left in the drills' scratch directories.
    let scratch = cfg.scratch_dirs.clone();
    if !scratch.is_empty()
        && let Err(e) = blocking::run("removing drill leftovers", move || {
            probe::drill::remove_leftovers(&scratch)
        })
        .await
    {
        warn!(error = %e, "cannot look for drill leftovers");
    }
    let trigger = schedule::Trigger::default();
    let labels = cfg.labels.clone();
    let checks: Vec<String> = cfg
        .probes
        .iter()
        .map(|p| p.probe.check_id())
        .chain([backwatch_proto::model::check_id(
            backwatch_proto::model::ProbeKind::Disk,
            backwatch_proto::model::AGENT_SPOOL_PROBE,
        )])
        .collect();
    schedule::spawn_all(
        cfg.probes,
        cfg.start_jitter,
        sink.clone(),
        &trigger,
        &cfg.spool.dir,
    );
    // Renewal tells the link to reconnect, so the new certificate is used at once.
    let renewed = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(enroll::renew_loop(link_cfg.clone(), renewed.clone()));
    let link = tokio::spawn(link::run(
        link_cfg,
        renewed,
        sink,
        trigger,
        link::HostFacts::gather(checks, labels),
    ));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("backwatch-agent: installing signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("terminating"),
        _ = tokio::signal::ctrl_c() => info!("interrupted"),
        _ = link => error!("collector link ended unexpectedly"),
    }
    // Anything measured is already in the spool; nothing to flush.
    ExitCode::SUCCESS
}

async fn run_scheduled(s: &Scheduled) -> ProbeResult {
    run_once(
        s.probe.as_ref(),
        s.interval,
        s.timeout,
        &blocking::Gate::default(),
    )
    .await
}

async fn check(cfg: Config, format: Format) -> ExitCode {
    let limits = Limits::default();
    let results = futures_util::future::join_all(cfg.probes.iter().map(run_scheduled)).await;
    let mut worst: Option<Status> = None;
    let mut json_out = Vec::new();
    let mut nagios_lines = Vec::new();
    for (s, r) in cfg.probes.iter().zip(&results) {
        let v = evaluate(r, None, None, &limits);
        worst = Some(match worst {
            Some(w) if w.rank() >= v.status.rank() => w,
            _ => v.status,
        });
        match format {
            Format::Text => {
                println!(
                    "{:<8} {:<16} {}  ({} ms, {})",
                    v.status.as_str().to_uppercase(),
                    r.check_id(),
                    v.summary,
                    r.duration_ms,
                    s.probe.target()
                );
            }
            Format::Json => json_out.push(serde_json::json!({
                "check": r.check_id(),
                "target": s.probe.target(),
                "status": v.status,
                "summary": v.summary,
                "result": r,
            })),
            Format::Nagios => nagios_lines.push(backwatch_rules::nagios::CheckLine {
                check: r.check_id(),
                status: v.status,
                summary: v.summary,
                perf: backwatch_rules::nagios::perfdata(r, &limits),
            }),
        }
    }
    if let Format::Nagios = format {
        // The plugin line decides the exit code itself (no probes configured is UNKNOWN).
        let (line, code) = backwatch_rules::nagios::status_line(&nagios_lines);
        println!("{line}");
        return ExitCode::from(code);
    }
    if let Format::Json = format {
        match serde_json::to_string_pretty(&json_out) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("printing results: {e}"),
        }
    } else {
        println!("(judged with default thresholds; the collector applies its own configuration)");
    }
    // The plugin convention (0 ok, 1 warning, 2 critical, 3 unknown) of the worst status.
    ExitCode::from(worst.map_or(0, backwatch_rules::nagios::exit_code))
}

/// `enroll`: exit 0 with the certificate written, 1 when refused or unreachable, 64 when the
/// command line cannot work (not an https:// URL, no token in the file); the reason on
/// standard error. The URL is checked before the token is read.
fn enroll_command(
    collector: &str,
    source: &enroll::TokenSource,
    args: impl FnOnce(String) -> enroll::EnrollArgs,
) -> ExitCode {
    let usage = |e: enroll::EnrollError| {
        eprintln!("backwatch-agent: enroll: {e}");
        ExitCode::from(EXIT_CONFIG as u8)
    };
    if let Err(e) = enroll::check_collector_url(collector) {
        return usage(e);
    }
    let args = match enroll::read_token(source, std::io::stdin().lock()) {
        Ok(token) => args(token),
        Err(e) => return usage(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(enroll::enroll(&args)) {
        Ok((host, cert, not_after)) => {
            println!(
                "enrolled {host}: certificate {} valid until {}",
                cert.display(),
                not_after.to_rfc3339()
            );
            ExitCode::SUCCESS
        }
        Err(e @ enroll::EnrollError::Usage(_)) => usage(e),
        Err(e) => {
            eprintln!(
                "backwatch-agent: enrollment failed: {}",
                backwatch_common::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}
