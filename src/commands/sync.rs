//! `mailferry sync`: one pass over the selected routes, with a progress bar
//! on a terminal and a summary per route.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::commands::status::{outstanding_json, outstanding_line};
use crate::commands::{exit, print_json, time};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, Outstanding};
use crate::sync::plan::route_key;
use crate::sync::plan::{PassOptions, Progress};
use crate::sync::runner::{sync_routes, RouteOutcome};
use crate::sync::SharedLedger;

/// What `sync` was asked to do.
pub struct SyncArgs<'a> {
    pub routes: &'a [String],
    pub dry_run: bool,
    /// `mailferry reconcile`: find what is already on the targets only.
    pub reconcile: bool,
    pub json: bool,
}

/// Runs the pass and prints the summary; the exit code says how it went.
pub async fn run(
    config: &Config,
    args: &SyncArgs<'_>,
    cancel: &CancellationToken,
) -> Result<u8, SyncCommandError> {
    let routes = config
        .select_routes(args.routes)
        .map_err(SyncCommandError::Usage)?;
    let (ledger, _scratch) = open_ledger(config, args.dry_run)?;
    let bars = Bars::new(!args.json && std::io::stderr().is_terminal());
    let options = PassOptions {
        dry_run: args.dry_run,
        reconcile: args.reconcile,
        progress: bars.clone().map(|b| Arc::new(b) as Arc<dyn Progress>),
        ..Default::default()
    };
    let outcomes = sync_routes(config, &routes, &ledger, &options, cancel).await;
    if let Some(bars) = bars {
        bars.finish();
    }
    // What is still not copied, from the ledger: the same truth `status`
    // tells, whatever this run's own counts (a message given up after its
    // attempts is not retried, but it is not copied either).
    let mut not_copied = Vec::new();
    for o in &outcomes {
        let route = config.routes.iter().find(|r| r.name == o.report.route);
        let list = match route {
            Some(route) if !args.dry_run && !args.reconcile => {
                let key = route_key(config, route);
                let count = ledger.call(|l| l.route_status(&key))?.outstanding;
                (count, ledger.call(|l| l.outstanding(&key, NAMED))?)
            }
            _ => (0, Vec::new()),
        };
        not_copied.push(list);
    }
    if args.json {
        let routes: Vec<serde_json::Value> = outcomes
            .iter()
            .zip(&not_copied)
            .map(|(o, (count, named))| {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                v["outstanding"] = (*count).into();
                v["not_copied"] = named.iter().map(outstanding_json).collect();
                v
            })
            .collect();
        print_json(&serde_json::json!({ "dry_run": args.dry_run, "routes": routes }));
    } else {
        for (o, (count, named)) in outcomes.iter().zip(&not_copied) {
            if args.reconcile {
                print_reconcile(o);
            } else {
                print_summary(o, args.dry_run);
                print_not_copied(*count, named);
            }
        }
    }
    let outstanding = not_copied.iter().any(|(count, _)| *count > 0);
    Ok(exit_code(&outcomes, outstanding))
}

/// Messages named in the summary at most; `status --messages` lists all.
const NAMED: u64 = 3;

fn print_not_copied(count: u64, named: &[Outstanding]) {
    if count == 0 {
        return;
    }
    println!("  {count} message(s) not copied (kept on the source):");
    for m in named {
        println!("    {}", outstanding_line(m));
    }
    if count > named.len() as u64 {
        println!("    … and {} more", count - named.len() as u64);
    }
    println!("  `mailferry status --messages` lists them all.");
}

/// Why `sync` could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncCommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading what is not copied from the ledger after the run.
    #[error(transparent)]
    Route(#[from] crate::sync::ports::RouteError),
}

/// The ledger to use: the real one, or for a dry run a read-only view of it
/// (or an empty scratch ledger when there is none yet), so a dry run writes
/// nothing.
fn open_ledger(
    config: &Config,
    dry_run: bool,
) -> Result<(SharedLedger, Option<tempfile::TempDir>), LedgerError> {
    if !dry_run {
        return Ok((SharedLedger::new(Ledger::open(&config.ledger_path)?), None));
    }
    match Ledger::open_read_only(&config.ledger_path) {
        Ok(l) => Ok((SharedLedger::new(l), None)),
        Err(LedgerError::Missing { .. }) => {
            let scratch = tempfile::Builder::new()
                .prefix("mailferry-dry-run")
                .tempdir()
                .map_err(|source| LedgerError::Io {
                    path: std::env::temp_dir(),
                    action: "create a scratch ledger for the dry run",
                    source,
                })?;
            let ledger = Ledger::open(scratch.path().join("dry-run.db"))?;
            Ok((SharedLedger::new(ledger), Some(scratch)))
        }
        Err(e) => Err(e),
    }
}

/// 3 when a route could not run, else 1 while any message is not copied
/// (`outstanding`: in the ledger, whatever this run did) or a route is
/// paused, else 0.
fn exit_code(outcomes: &[RouteOutcome], outstanding: bool) -> u8 {
    let paused = |o: &RouteOutcome| o.error.as_ref().is_some_and(|e| e.resume_at.is_some());
    if outcomes.iter().any(|o| o.error.is_some() && !paused(o)) {
        exit::ROUTE_FAILED
    } else if outstanding
        || outcomes
            .iter()
            .any(|o| paused(o) || o.report.counts.failed + o.report.counts.skipped > 0)
    {
        exit::SOME_FAILED
    } else {
        exit::DONE
    }
}

fn print_summary(o: &RouteOutcome, dry_run: bool) {
    let r = &o.report;
    let c = &r.counts;
    if dry_run {
        println!(
            "{} (dry run): would copy up to {} messages ({}), would delete {}",
            r.route,
            r.would_copy,
            human_bytes(r.would_copy_bytes),
            r.would_delete
        );
    } else {
        println!(
            "{}: copied {} ({}), duplicates {}, skipped {}, failed {}, deleted {} in {:.1} s",
            r.route,
            c.copied,
            human_bytes(c.bytes),
            c.duplicates,
            c.skipped,
            c.failed,
            c.deleted,
            r.seconds
        );
    }
    if r.intents_found + r.intents_dropped > 0 {
        println!(
            "  resumed an interrupted pass: {} append(s) found on the target, {} to redo",
            r.intents_found, r.intents_dropped
        );
    }
    match &o.error {
        Some(e) if e.resume_at.is_some() => {
            let until =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.resume_at.unwrap_or(0));
            println!("  paused until {}: {}", time::utc(until), e.message);
        }
        Some(e) => {
            println!(
                "  could not finish after {} attempt(s): {} ({})",
                o.attempts, e.message, e.class
            );
            if let Some(hint) = hint(&e.class) {
                println!("  {hint}");
            }
        }
        None => {}
    }
}

/// What to try next, by the kind of failure.
fn hint(class: &str) -> Option<&'static str> {
    match class {
        "auth" => Some("check the account's username and password (or app password / `mailferry auth login`); `mailferry check` tries every login without copying"),
        "transient" => Some("the server could not be reached or dropped the connection; run sync again later (nothing is lost or copied twice), or `mailferry check`"),
        "fatal" => Some("this will not go away by retrying: see the message above, then `mailferry check`"),
        _ => None,
    }
}

fn print_reconcile(o: &RouteOutcome) {
    let r = &o.report;
    println!(
        "{}: {} target messages indexed by size, {} bodies fetched ({}), {} source messages found there, {} still to copy",
        r.route,
        r.target_indexed,
        r.target_bodies_fetched,
        human_bytes(r.target_bytes_fetched),
        r.counts.duplicates,
        r.pending
    );
    if let Some(e) = &o.error {
        println!(
            "  could not finish after {} attempt(s): {} ({})",
            o.attempts, e.message, e.class
        );
    }
}

/// `12.3 MB`: decimal units, as mail clients show sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One progress bar per route on stderr.
#[derive(Clone)]
struct Bars {
    multi: MultiProgress,
    bars: Arc<std::sync::Mutex<Vec<(String, ProgressBar)>>>,
}

impl Bars {
    fn new(visible: bool) -> Option<Bars> {
        visible.then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Arc::default(),
        })
    }

    fn bar(&self, route: &str) -> Option<ProgressBar> {
        let bars = self.bars.lock().ok()?;
        bars.iter()
            .find(|(r, _)| r == route)
            .map(|(_, b)| b.clone())
    }

    fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for (_, bar) in bars.iter() {
                bar.finish();
            }
        }
    }
}

impl Progress for Bars {
    fn start(&self, route: &str, messages: u64, bytes: u64) {
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} messages {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(messages));
        bar.set_style(style);
        bar.set_prefix(route.to_string());
        bar.set_message(format!("of {}", human_bytes(bytes)));
        if let Ok(mut bars) = self.bars.lock() {
            bars.push((route.to_string(), bar));
        }
    }

    fn advance(&self, route: &str, messages: u64, _bytes: u64) {
        if let Some(bar) = self.bar(route) {
            bar.inc(messages);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_like_a_mail_client() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(4_200_000), "4.2 MB");
        assert_eq!(human_bytes(1_000), "1.0 kB");
    }
}
