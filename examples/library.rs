//! mailferry as a library: copy one POP3 mailbox into one IMAP mailbox
//! through the crate's API, exactly once, with the same engine as the CLI.
//!
//! ```text
//! cargo run --example library -- examples/migrate.toml old-isp:new
//! ```
//!
//! The first argument is a config file, the second a route name (`mailferry
//! check --offline` lists them). Progress goes to stdout; the exit code is
//! 0 when the route finished.

use std::path::Path;
use std::process::ExitCode;

use mailferry::config::Config;
use mailferry::ledger::Ledger;
use mailferry::sync::plan::PassOptions;
use mailferry::sync::runner::sync_routes;
use mailferry::sync::SharedLedger;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config_path, route] = args.as_slice() else {
        eprintln!("usage: library CONFIG ROUTE");
        return ExitCode::from(2);
    };
    match copy(Path::new(config_path), route).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("library: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one pass of `route`; true when it finished.
async fn copy(config_path: &Path, route: &str) -> Result<bool, Box<dyn std::error::Error>> {
    // The same validated config the CLI uses, and the ledger it names.
    let config = Config::load(config_path)?;
    let routes = config.select_routes(&[route.to_string()])?;
    let ledger = SharedLedger::new(Ledger::open(&config.ledger_path)?);
    let cancel = CancellationToken::new();
    let outcomes = sync_routes(&config, &routes, &ledger, &PassOptions::default(), &cancel).await;
    for outcome in &outcomes {
        let c = &outcome.report.counts;
        println!(
            "{}: copied {}, duplicates {}, failed {}, deleted {}",
            outcome.report.route, c.copied, c.duplicates, c.failed, c.deleted
        );
        if let Some(e) = &outcome.error {
            println!("  stopped: {}", e.message);
        }
    }
    Ok(outcomes.iter().all(|o| o.error.is_none()))
}
