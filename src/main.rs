//! The `mailferry` command line: flags in, one validated config, one command
//! run, a summary out, and an exit code scripts can act on.
//!
//! Exit codes: 0 all done, 1 some messages failed or were skipped, 2 usage or
//! config error, 3 a route could not run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use mailferry::commands::auth::AuthCommandError;
use mailferry::commands::{self, exit, sync::SyncArgs, sync::SyncCommandError};
use mailferry::config::{Config, ConfigError};
use mailferry::shard::{self, Shard};
use tokio_util::sync::CancellationToken;

/// Move mail from POP3 mailboxes into IMAP mailboxes, exactly once.
#[derive(Parser, Debug)]
#[command(name = "mailferry", version, about, long_about = None)]
struct Cli {
    /// Config file [default: ./mailferry.toml, else $XDG_CONFIG_HOME/mailferry/config.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of the human summary
    #[arg(long, global = true)]
    json: bool,
    /// Take only shard i of N of the routes: i/N, /N (index from
    /// JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID) or auto; `{shard}` in
    /// ledger.path becomes i
    #[arg(long, global = true, value_name = "i/N")]
    shard: Option<String>,
    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Less log detail on stderr (-q warnings only, -qq errors only; all but
    /// `run` log warnings only unless -v)
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Copy the ledger to FILE (safe while the daemon runs)
    Backup {
        /// A new file
        file: PathBuf,
    },
    /// Check the ledger's integrity and count what it holds
    Check,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Sign in to an OAuth account once (browser, or --device) and store
    /// its refresh token in the account's token file
    Login {
        /// The account's name
        account: String,
        /// Use the device flow: enter a code on any device instead of
        /// opening a browser on this machine
        #[arg(long)]
        device: bool,
        /// How long to wait for the sign-in
        #[arg(long, default_value = "5m", value_parser = mailferry::config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// List the OAuth accounts, whether each is signed in, and until when
    /// its access token is valid (never a token)
    Status,
}

/// How log lines look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// For people
    Human,
    /// One JSON object per line, for log collectors
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one pass over every route (or the ones named) and exit
    Sync {
        /// Only this route (repeatable)
        #[arg(long = "route", value_name = "NAME")]
        routes: Vec<String>,
        /// Show what would be copied and deleted, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep every route mirrored on its interval until SIGINT or SIGTERM
    Run,
    /// Find which source messages are already on the targets (after a lost
    /// ledger, or mail copied by another tool); copy and delete nothing
    Reconcile {
        /// Only this route (repeatable)
        #[arg(long = "route", value_name = "NAME")]
        routes: Vec<String>,
    },
    /// Look after the ledger file
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// OAuth sign-in for accounts with `oauth = { .. }`
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Show per-route counts, pending work and the last run from the ledger
    Status {
        /// Sum these ledgers (one per shard) instead of reading the config's
        #[arg(long, num_args = 1.., value_name = "LEDGER")]
        merge: Vec<PathBuf>,
        /// List every message not copied (failed or skipped), with the reason
        #[arg(long)]
        messages: bool,
    },
    /// Prove against the live targets that every copied message is there
    Verify {
        /// Only this route (repeatable)
        #[arg(long = "route", value_name = "NAME")]
        routes: Vec<String>,
        /// Compare every message by content, not by UID and size
        #[arg(long)]
        deep: bool,
    },
    /// Print a config for the accounts in a CSV file (source host, user,
    /// password, target host, user, password, mailbox)
    ImportAccounts {
        /// The CSV file
        csv: PathBuf,
    },
    /// Print a shell completion script (e.g. `mailferry completions bash > /etc/bash_completion.d/mailferry`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; e.g. `mailferry man | man -l -`)
    Man,
    /// Validate the config and log in to every account, changing nothing
    Check {
        /// Only validate the config; don't connect
        #[arg(long)]
        offline: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one-shot commands print their own summary: their logs stay at
    // warnings unless -v asks for more. The daemon logs every pass.
    let quiet_by_default = !matches!(cli.command, Command::Run);
    init_logging(cli.verbose, cli.quiet, quiet_by_default, cli.log_format);
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = if err.downcast_ref::<ConfigError>().is_some() {
                exit::USAGE
            } else {
                exit::ROUTE_FAILED
            };
            eprintln!("mailferry: {}", chain(&err));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line.
fn chain(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn init_logging(verbose: u8, quiet: u8, quiet_by_default: bool, format: LogFormat) {
    let level = match (verbose, quiet) {
        (0, 0) if quiet_by_default => "warn",
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    // These need no config.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "mailferry", &mut std::io::stdout());
            return Ok(exit::DONE);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(exit::DONE);
        }
        Command::ImportAccounts { csv } => {
            return match commands::import::convert(csv) {
                Ok(text) => {
                    print!("{text}");
                    Ok(exit::DONE)
                }
                Err(e) => {
                    eprintln!("mailferry: {e}");
                    Ok(exit::USAGE)
                }
            };
        }
        _ => {}
    }
    let mut config = Config::locate_and_load(cli.config.as_deref())?;
    let shard = match &cli.shard {
        None => None,
        Some(spec) => Some(
            Shard::parse(spec, |var| std::env::var(var).ok()).map_err(|e| {
                ConfigError::Invalid {
                    path: config.path.clone(),
                    location: None,
                    message: e.to_string(),
                }
            })?,
        ),
    };
    shard::apply(&mut config, shard);
    match &cli.command {
        Command::Completions { .. } | Command::Man | Command::ImportAccounts { .. } => {
            Ok(exit::DONE)
        }
        Command::Ledger(what) => Ok(commands::ledger::run(&config, what_ledger(what), cli.json)?),
        Command::Auth(AuthCommand::Status) => Ok(commands::auth::status(&config, cli.json)),
        Command::Auth(AuthCommand::Login {
            account,
            device,
            timeout,
        }) => {
            let login = commands::auth::login(&config, account, *device, *timeout, cli.json);
            match runtime()?.block_on(login) {
                Ok(code) => Ok(code),
                Err(AuthCommandError::Usage(message)) => Err(ConfigError::Invalid {
                    path: config.path.clone(),
                    location: None,
                    message,
                }
                .into()),
                Err(e) => Err(e.into()),
            }
        }
        Command::Check { offline } => {
            let (json, offline) = (cli.json, *offline);
            Ok(runtime()?.block_on(commands::check::run(&config, json, offline)))
        }
        Command::Sync { .. } | Command::Reconcile { .. } => {
            let (routes, dry_run, reconcile) = match &cli.command {
                Command::Sync { routes, dry_run } => (routes, *dry_run, false),
                Command::Reconcile { routes } => (routes, false, true),
                _ => unreachable!("matched above"),
            };
            let args = SyncArgs {
                routes,
                dry_run,
                reconcile,
                json: cli.json,
            };
            runtime()?.block_on(async {
                let cancel = stop_on_signals();
                match commands::sync::run(&config, &args, &cancel).await {
                    Ok(code) => Ok(code),
                    Err(SyncCommandError::Usage(message)) => Err(ConfigError::Invalid {
                        path: config.path.clone(),
                        location: None,
                        message,
                    }
                    .into()),
                    Err(e) => Err(e.into()),
                }
            })
        }
        Command::Verify { routes, deep } => {
            let selected =
                config
                    .select_routes(routes)
                    .map_err(|message| ConfigError::Invalid {
                        path: config.path.clone(),
                        location: None,
                        message,
                    })?;
            let (json, deep) = (cli.json, *deep);
            Ok(runtime()?.block_on(commands::verify::run(&config, &selected, json, deep))?)
        }
        Command::Status { merge, messages } => {
            Ok(commands::status::run(&config, cli.json, merge, *messages)?)
        }
        Command::Run => runtime()?.block_on(async {
            let stop = stop_on_signals();
            let reload = reload_on_sighup();
            mailferry::daemon::run(config, shard, stop, reload).await?;
            Ok(exit::DONE)
        }),
    }
}

fn what_ledger(command: &LedgerCommand) -> commands::ledger::LedgerAction<'_> {
    match command {
        LedgerCommand::Backup { file } => commands::ledger::LedgerAction::Backup(file),
        LedgerCommand::Check => commands::ledger::LedgerAction::Check,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A token cancelled by the first SIGINT or SIGTERM: work stops at the next
/// safe point (never between an APPEND and its ledger commit).
fn stop_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("stopping at the next safe point (signal received)");
        token.cancel();
    });
    cancel
}

/// A notification for each SIGHUP: the daemon reloads its config.
fn reload_on_sighup() -> std::sync::Arc<tokio::sync::Notify> {
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; config reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            n.notify_one();
        }
    });
    notify
}
