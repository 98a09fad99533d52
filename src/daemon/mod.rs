//! The daemon: every route on its interval, in parallel, until told to stop.
//!
//! Each route runs in its own loop: wait (interval with jitter, or the
//! failure backoff), take its source's lock (POP3 locks the maildrop, so
//! routes from one source take turns), run one pass, repeat. SIGHUP reloads
//! the config: the new one is validated first; if valid, the routes stop at
//! their next safe point and restart from it, else the old one stays.

mod metrics;
mod notify;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::{Ledger, LedgerError};
use crate::retry::{ErrorClass, RouteBackoff};
use crate::shard::Shard;
use crate::sync::limits::Limits;
use crate::sync::plan::plan;
use crate::sync::plan::{PassOptions, PassReport};
use crate::sync::runner::{attempt, join_all, mailbox_key};
use crate::sync::SharedLedger;

pub use metrics::Metrics;

/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Why the daemon could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("metrics: cannot listen on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs every route until `stop` is cancelled; each notification of
/// `reload` (the caller wires SIGHUP to it) reloads the config file.
pub async fn run(
    config: Config,
    shard: Option<Shard>,
    stop: CancellationToken,
    reload: Arc<Notify>,
) -> Result<(), DaemonError> {
    let mut config = Arc::new(config);
    let mut ledger = SharedLedger::new(Ledger::open(&config.ledger_path)?);
    let metrics = Metrics::new();
    let _server = match config.metrics {
        Some(addr) => {
            let served = (metrics.clone(), ledger.clone(), config.unhealthy_after);
            Some(metrics::serve(addr, served, stop.clone()).await?)
        }
        None => None,
    };
    tracing::info!(routes = config.routes.len(), ledger = %config.ledger_path.display(), "daemon started");
    let _watchdog = notify::watchdog_interval().map(|every| {
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                notify::notify("WATCHDOG=1");
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
            }
        })
    });
    notify::notify(&format!(
        "READY=1\nSTATUS={} routes running",
        config.routes.len()
    ));
    // Tells `notify_command` about routes failing past `unhealthy_after`.
    let _monitor = config.notify_command.clone().map(|command| {
        let (metrics, stop, threshold) = (metrics.clone(), stop.clone(), config.unhealthy_after);
        tokio::spawn(async move {
            let mut told = notify::Told::default();
            loop {
                told.update(&command, &metrics.problems(threshold)).await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
            }
        })
    });
    loop {
        metrics.set_routes(
            config
                .routes
                .iter()
                .map(|r| (r.name.clone(), crate::sync::plan::route_key(&config, r)))
                .collect(),
        );
        let generation = stop.child_token();
        let mut source_locks: HashMap<usize, Arc<AsyncMutex<()>>> = HashMap::new();
        let mut mailbox_locks: HashMap<(String, String), Arc<AsyncMutex<()>>> = HashMap::new();
        let limits = Limits::new(&config);
        let mut loops = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let turns = Turns {
                source: source_locks.entry(route.source).or_default().clone(),
                mailbox: mailbox_locks
                    .entry(mailbox_key(&config, route))
                    .or_default()
                    .clone(),
            };
            let (cfg, led, met, gen) = (
                config.clone(),
                ledger.clone(),
                metrics.clone(),
                generation.clone(),
            );
            loops.push(route_loop(limits.clone(), cfg, i, led, turns, met, gen));
        }
        let mut all = std::pin::pin!(join_all(loops));
        let next = loop {
            tokio::select! {
                _ = &mut all => return Ok(()),
                () = reload.notified() => match Config::load(&config.path) {
                    Ok(mut new) => {
                        crate::shard::apply(&mut new, shard);
                        break new;
                    }
                    Err(e) => tracing::error!(error = %e, "config reload refused; keeping the running config"),
                },
            }
        };
        tracing::info!("config reloaded; restarting routes at their next safe point");
        generation.cancel();
        all.await;
        if next.ledger_path != config.ledger_path {
            ledger = SharedLedger::new(Ledger::open(&next.ledger_path)?);
        }
        config = Arc::new(next);
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}

/// The locks a route takes for a pass: its source's (POP3 locks the
/// maildrop) then its target mailbox's (dedup and intents need one writer).
/// Always in that order, and a mailbox lock is never held while waiting for a
/// source lock, so routes cannot deadlock.
struct Turns {
    source: Arc<AsyncMutex<()>>,
    mailbox: Arc<AsyncMutex<()>>,
}

/// One route, pass after pass, until `stop`.
async fn route_loop(
    limits: Limits,
    config: Arc<Config>,
    index: usize,
    ledger: SharedLedger,
    turns: Turns,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let route = &config.routes[index];
    let plan = plan(&config, route);
    let interval = route.interval;
    let initial = interval.min(Duration::from_secs(60));
    let mut backoff = RouteBackoff::new(initial, MAX_BACKOFF.max(interval), None);
    // Start spread over a moment, so routes don't poll in lockstep.
    let mut wait = interval
        .min(Duration::from_secs(5))
        .mul_f64(random_fraction());
    let mut options = PassOptions::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let _source_turn = tokio::select! {
            guard = turns.source.lock() => guard,
            () = stop.cancelled() => return,
        };
        let _mailbox_turn = tokio::select! {
            guard = turns.mailbox.lock() => guard,
            () = stop.cancelled() => return,
        };
        let mut report = PassReport::default();
        let started = std::time::Instant::now();
        let result = attempt(
            &config,
            route,
            &plan,
            &ledger,
            &options,
            &stop,
            &mut report,
            &limits,
        )
        .await;
        metrics.record(
            &plan.name,
            &report,
            result.as_ref().err(),
            started.elapsed(),
        );
        notify::notify(&format!("STATUS={}", metrics.summary()));
        options.logins_at_once = result.is_ok();
        wait = match &result {
            Ok(()) => {
                backoff.reset();
                tracing::info!(
                    route = %plan.name, copied = report.counts.copied, duplicates = report.counts.duplicates,
                    failed = report.counts.failed, deleted = report.counts.deleted, "pass done"
                );
                // A server's LOGIN-DELAY is the shortest interval it allows.
                let floor = report.login_delay.unwrap_or_default();
                interval
                    .max(floor)
                    .mul_f64(0.9 + 0.2 * random_fraction())
                    .max(floor)
            }
            Err(e) => {
                let until_resume = e.resume_at.map(|t| {
                    t.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
                });
                let wait = match (e.class, until_resume) {
                    // A spent budget: wait for the window, not a backoff.
                    (ErrorClass::Quota, Some(wait)) => wait.max(Duration::from_secs(1)),
                    (ErrorClass::Throttled { wait: Some(asked) }, _) => asked,
                    _ => backoff.next_wait().unwrap_or(MAX_BACKOFF),
                };
                let level_auth = matches!(e.class, ErrorClass::Auth);
                if level_auth {
                    tracing::error!(route = %plan.name, error = %e, retry_in = ?wait, "login refused; check the account's credentials");
                } else {
                    tracing::warn!(route = %plan.name, error = %e, retry_in = ?wait, "pass failed");
                }
                wait
            }
        };
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
