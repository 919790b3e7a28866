//! `backwatch-agent`: probes one database host and streams the measurements to the collector.

mod blocking;
mod config;
mod enroll;
mod link;
mod probe;
mod schedule;
mod spool;

use crate::config::{Config, ProbeConfig, Scheduled};
use crate::schedule::{Sink, run_once};
use backwatch_proto::config::{EXIT_CONFIG, fmt_duration};
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
    version = backwatch_proto::version_string!(),
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
    let cli = Cli::parse();
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
            backwatch_proto::cli::completions(*shell, <Cli as clap::CommandFactory>::command());
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match backwatch_proto::cli::man_pages(
                <Cli as clap::CommandFactory>::command(),
                backwatch_proto::version_string!(),
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
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // Probes are I/O bound and few: a current-thread runtime keeps the agent small.
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
    let code = match cli.command {
        Command::Run { .. } => rt.block_on(run(cfg, &path)),
        Command::Check { format, .. } => rt.block_on(check(cfg, format)),
        Command::PrintConfig { .. } | Command::Config(ConfigCommand::Check { .. }) => {
            print_config(&cfg);
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
    let scratch: Vec<_> = cfg
        .probes
        .iter()
        .filter_map(|s| match &s.probe {
            ProbeConfig::Drill(d) => Some(d.scratch_dir.clone()),
            _ => None,
        })
        .collect();
    if !scratch.is_empty()
        && let Err(e) = blocking::run("removing drill leftovers", move || {
            probe::drill::remove_leftovers(&scratch)
        })
        .await
    {
        warn!(error = %e, "cannot look for drill leftovers");
    }
    let trigger = schedule::Trigger::default();
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
        link::HostFacts::gather(checks),
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
    let (i, t, g) = (s.interval, s.timeout, &blocking::Gate::default());
    match &s.probe {
        ProbeConfig::BackupDir(p) => run_once(p, i, t, g).await,
        ProbeConfig::Disk(p) => run_once(p, i, t, g).await,
        ProbeConfig::Wal(p) => run_once(p.as_ref(), i, t, g).await,
        ProbeConfig::ArchiveDir(p) => run_once(p, i, t, g).await,
        ProbeConfig::Restore(p) => run_once(p, i, t, g).await,
        ProbeConfig::PgBackRest(p) => run_once(p, i, t, g).await,
        ProbeConfig::Barman(p) => run_once(p, i, t, g).await,
        ProbeConfig::Drill(p) => run_once(p.as_ref(), i, t, g).await,
    }
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
            Some(w) if exit_rank(w) >= exit_rank(v.status) => w,
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
    ExitCode::from(match worst {
        None | Some(Status::Ok) => 0,
        Some(Status::Warning) => 1,
        Some(Status::Critical) => 2,
        Some(Status::Unknown) => 3,
    })
}

/// Critical outranks unknown, which outranks warning.
fn exit_rank(s: Status) -> u8 {
    match s {
        Status::Ok => 0,
        Status::Warning => 1,
        Status::Unknown => 2,
        Status::Critical => 3,
    }
}

fn print_config(cfg: &Config) {
    match &cfg.collector {
        Some(c) => {
            println!("[collector]");
            println!("url = {:?}", c.url);
            println!("ca = {:?}", c.ca.display().to_string());
            println!("cert = {:?}", c.cert.display().to_string());
            println!("key = {:?}", c.key.display().to_string());
            if let Some(n) = &c.server_name {
                println!("server_name = {n:?}");
            }
            println!("enroll_url = {:?}", c.enroll_url);
        }
        None => println!("# [collector] not configured: `run` needs it, `check` does not"),
    }
    println!("\n[spool]");
    println!("dir = {:?}", cfg.spool.dir.display().to_string());
    println!("max_results = {}", cfg.spool.max_results);
    println!("max_age = {:?}", fmt_duration(cfg.spool.max_age));
    println!("\n[schedule]");
    println!("start_jitter = {:?}", fmt_duration(cfg.start_jitter));
    println!("timeout = {:?}", fmt_duration(cfg.probe_timeout));
    for s in &cfg.probes {
        let (section, extra) = match &s.probe {
            ProbeConfig::BackupDir(p) => (
                "backup_dir",
                format!(
                    "path = {:?}\n{}\nmax_depth = {}\nmax_entries = {}\nignore_suffixes = {:?}",
                    p.path.display().to_string(),
                    // Not set: a comment, so the printed file loads back unchanged.
                    p.max_age.map_or(
                        "# max_age not set: the collector's threshold or the procedure's default applies".into(),
                        |d| format!("max_age = {:?}", fmt_duration(d))
                    ),
                    p.max_depth,
                    p.max_entries,
                    p.ignore_suffixes
                ),
            ),
            ProbeConfig::Disk(p) => ("disk", format!("path = {:?}", p.path.display().to_string())),
            ProbeConfig::ArchiveDir(p) => (
                "archive_dir",
                format!(
                    "path = {:?}\nexpected_owner = {:?}\nexpected_group = {:?}\nexpected_mode = {:?}\n{}\nmax_entries = {}\nencrypted = {}\nasynchronous = {}\n{}",
                    p.path.display().to_string(),
                    p.expected_owner.as_deref().unwrap_or(""),
                    p.expected_group.as_deref().unwrap_or(""),
                    p.expected_mode
                        .map_or(String::new(), |m| format!("{m:04o}")),
                    p.min_retention.map_or(
                        "# min_retention not set: the collector's threshold or 7 days applies".into(),
                        |d| format!("min_retention = {:?}", fmt_duration(d))
                    ),
                    p.max_entries,
                    p.encrypted,
                    p.asynchronous,
                    p.wal.as_ref().map_or_else(
                        || "# wal not set: no cross-check with PostgreSQL".to_string(),
                        |w| format!("wal = {:?}", w.name)
                    ),
                ),
            ),
            ProbeConfig::PgBackRest(p) => (
                "pgbackrest",
                format!(
                    "command = {:?}\n{}\n{}\ntimeout = {:?}\n{}\n{}",
                    p.command,
                    p.stanza.as_ref().map_or_else(
                        || "# stanza not set: every stanza".to_string(),
                        |s| format!("stanza = {s:?}")
                    ),
                    p.config.as_ref().map_or_else(
                        || "# config not set: pgBackRest's default".to_string(),
                        |c| format!("config = {:?}", c.display().to_string())
                    ),
                    fmt_duration(s.timeout),
                    config::backup_tool::print_age("max_age", p.max_age, "24h"),
                    config::backup_tool::print_age("max_full_age", p.max_full_age, "7d"),
                ),
            ),
            ProbeConfig::Barman(p) => (
                "barman",
                format!(
                    "server = {:?}\ncommand = {:?}\n{}\ntimeout = {:?}\n{}\n{}",
                    p.server,
                    p.command,
                    p.config.as_ref().map_or_else(
                        || "# config not set: Barman's default".to_string(),
                        |c| format!("config = {:?}", c.display().to_string())
                    ),
                    fmt_duration(s.timeout),
                    config::backup_tool::print_age("max_age", p.max_age, "24h"),
                    config::backup_tool::print_age("max_full_age", p.max_full_age, "7d"),
                ),
            ),
            ProbeConfig::Restore(p) => (
                "restore",
                format!(
                    "backup_dir = {:?}\n{}\n{}\npg_roots = {:?}\ntimeout = {:?}\nio_limit = {}",
                    p.backup_dir.display().to_string(),
                    p.archive_dir.as_ref().map_or_else(
                        || "# archive_dir not set: WAL only from the backup's pg_wal".to_string(),
                        |a| format!("archive_dir = {:?}", a.display().to_string())
                    ),
                    p.pg_verifybackup.as_ref().map_or_else(
                        || "# pg_verifybackup not set: the backup's major's under pg_roots (else the oldest newer one), else PATH".to_string(),
                        |v| format!("pg_verifybackup = {:?}", v.display().to_string())
                    ),
                    p.pg_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
                    fmt_duration(s.timeout),
                    p.io_limit
                ),
            ),
            ProbeConfig::Drill(p) => ("drill", print_drill(p, s.timeout)),
            ProbeConfig::Wal(p) => (
                "wal",
                format!(
                    "dsn = {:?}  # password never shown\nconnect_timeout = {:?}\nstatement_timeout = {:?}\nexposure_advisory = {}",
                    probe::wal_archive::redacted(&p.pg),
                    fmt_duration(p.connect_timeout),
                    fmt_duration(p.statement_timeout),
                    p.exposure_advisory
                ),
            ),
        };
        let check = s.probe.check_id();
        let name = check.split_once('.').map_or("", |(_, n)| n);
        println!("\n[[{section}]]  # check {check}");
        println!("name = {name:?}");
        println!("{extra}");
        println!("interval = {:?}", fmt_duration(s.interval));
        match &s.probe {
            ProbeConfig::BackupDir(_) | ProbeConfig::Disk(_) | ProbeConfig::Wal(_) => {
                println!("timeout = {:?}", fmt_duration(s.timeout))
            }
            // Its timeout adds the linked server's statements to the listing's.
            ProbeConfig::ArchiveDir(_) => {
                println!("# timeout: {} in all", fmt_duration(s.timeout))
            }
            // Printed with their other keys above.
            ProbeConfig::Restore(_)
            | ProbeConfig::PgBackRest(_)
            | ProbeConfig::Barman(_)
            | ProbeConfig::Drill(_) => {}
        }
    }
}

/// A `[[drill]]` section as it loads back, defaults written out.
fn print_drill(p: &probe::drill::DrillProbe, scheduler_timeout: Duration) -> String {
    use probe::drill::Target;
    let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let source = match (&p.pgbackrest, &p.barman) {
        (None, Some(b)) => format!(
            "barman = {{ server = {:?}, {}command = {:?} }}",
            b.server,
            b.config
                .as_ref()
                .map_or(String::new(), |c| format!("config = {}, ", path(c))),
            b.command
        ),
        (Some(b), _) => format!(
            "pgbackrest = {{ stanza = {:?}, {}command = {:?} }}",
            b.stanza,
            b.config
                .as_ref()
                .map_or(String::new(), |c| format!("config = {}, ", path(c))),
            b.command
        ),
        (None, None) => format!("backup_dir = {}", path(&p.backup_dir)),
    };
    let mut out = vec![
        source,
        p.archive_dir.as_ref().map_or_else(
            || match p.source_kind() {
                "pgbackrest" => "# WAL: pgbackrest archive-get".to_string(),
                "barman" => "# WAL: copied by barman recover".to_string(),
                _ => {
                    "# archive_dir not set: recovery uses the backup's own pg_wal only".to_string()
                }
            },
            |a| format!("archive_dir = {}", path(a)),
        ),
        format!("scratch_dir = {}", path(&p.scratch_dir)),
        format!(
            "target = {:?}",
            match p.target {
                Target::Latest => "latest".to_string(),
                Target::Before(d) => fmt_duration(d),
            }
        ),
        format!(
            "timeout = {:?}  # the scheduler allows {} (a drill may wait for another)",
            fmt_duration(p.timeout),
            fmt_duration(scheduler_timeout)
        ),
        p.max_rto.map_or_else(
            || "# max_rto not set: no warning on the recovery time".to_string(),
            |d| format!("max_rto = {:?}", fmt_duration(d)),
        ),
        format!("max_shortfall = {:?}", fmt_duration(p.max_shortfall)),
        format!("space_factor = {}", p.space_factor),
        p.pg_bindir.as_ref().map_or_else(
            || {
                "# pg_bindir not set: /usr/lib/postgresql/<PG_VERSION of the backup>/bin"
                    .to_string()
            },
            |b| format!("pg_bindir = {}", path(b)),
        ),
        p.run_as.as_ref().map_or_else(
            || {
                "# run_as not set: postgres when the agent runs as root, else the agent's user"
                    .to_string()
            },
            |u| format!("run_as = {u:?}"),
        ),
        format!("user = {:?}", p.user),
        format!("database = {:?}", p.database),
        format!("io_limit = {}", p.io_limit),
        format!("amcheck = {:?}", p.amcheck),
    ];
    // Inline tables: `interval` is printed after this text and must stay in `[[drill]]`.
    let checks: Vec<String> = p
        .smoke
        .iter()
        .map(|c| match &c.expect {
            Some(e) => format!("{{ sql = {:?}, expect = {e:?} }}", c.sql),
            None => format!("{{ sql = {:?} }}", c.sql),
        })
        .collect();
    out.push(format!("check = [{}]", checks.join(", ")));
    out.join("\n")
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
                backwatch_proto::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}
