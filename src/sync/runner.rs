//! Running routes: plans from the config, retries with backoff, routes of one
//! source one after another (POP3 locks the maildrop), different sources side
//! by side, and a run record in the ledger for every attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Route};
use crate::retry::{ErrorClass, RouteBackoff};
use crate::sync::adapters::{connect_source, connect_target};
use crate::sync::limits::Limits;
use crate::sync::pass::run_pass;
use crate::sync::plan::{link_groups, plan};
use crate::sync::plan::{PassOptions, PassReport, RoutePlan};
use crate::sync::ports::{MailSource, MailTarget, RouteError};
use crate::sync::quota;
use crate::sync::SharedLedger;

/// How many times a `sync` tries a route that fails transiently.
pub const MAX_ROUTE_ATTEMPTS: u32 = 4;
/// The longest a `sync` waits on a server's suggested back-off before
/// giving the route up for this run (the daemon waits as long as asked).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(600);

/// What happened to one route in one `sync`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteOutcome {
    pub report: PassReport,
    /// Why the route could not finish, after its retries.
    pub error: Option<RouteErrorReport>,
    pub attempts: u32,
}

/// A route error as reported to the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteErrorReport {
    pub class: String,
    pub message: String,
    /// A paused route (spent transfer budget): when it may run again, in
    /// seconds since the Unix epoch.
    pub resume_at: Option<u64>,
}

impl From<&RouteError> for RouteErrorReport {
    fn from(e: &RouteError) -> Self {
        let class = match e.class {
            ErrorClass::Transient => "transient",
            ErrorClass::Auth => "auth",
            ErrorClass::Message => "message",
            ErrorClass::Throttled { .. } => "throttled",
            ErrorClass::Quota => "quota",
            ErrorClass::Fatal => "fatal",
        };
        RouteErrorReport {
            class: class.into(),
            message: e.message.clone(),
            resume_at: e
                .resume_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        }
    }
}

/// Runs one pass of each route, retrying transient failures. Routes that
/// share a source (POP3 locks the maildrop) or a target mailbox (dedup and
/// intents must see one writer at a time) run one after another; the rest in
/// parallel. Outcomes are in the order of `routes`.
pub async fn sync_routes(
    config: &Config,
    routes: &[&Route],
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
) -> Vec<RouteOutcome> {
    let limits = Limits::new(config);
    let limits = &limits;
    let mut groups: BTreeMap<usize, Vec<(usize, &Route)>> = BTreeMap::new();
    for (i, group) in conflict_groups(config, routes).into_iter().enumerate() {
        groups.entry(group).or_default().push((i, routes[i]));
    }
    let runs = groups.into_values().map(|group| async move {
        let mut done = Vec::new();
        for (i, route) in group {
            done.push((
                i,
                sync_route(config, route, ledger, options, cancel, limits).await,
            ));
        }
        done
    });
    let mut outcomes: Vec<(usize, RouteOutcome)> =
        join_all(runs).await.into_iter().flatten().collect();
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// The key of a target mailbox for "same mailbox": INBOX is case-insensitive
/// (RFC 3501 §5.1), other names are not.
pub fn mailbox_key(config: &Config, route: &Route) -> (String, String) {
    let mailbox = if route.mailbox.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        route.mailbox.clone()
    };
    (config.targets[route.target].name.clone(), mailbox)
}

/// For each route, the number of its group: routes linked by a shared
/// source or a shared target mailbox (transitively) are in one group.
fn conflict_groups(config: &Config, routes: &[&Route]) -> Vec<usize> {
    #[derive(Hash, PartialEq, Eq)]
    enum Key {
        Source(usize),
        Mailbox((String, String)),
    }
    link_groups(routes.len(), |i| {
        [
            Key::Source(routes[i].source),
            Key::Mailbox(mailbox_key(config, routes[i])),
        ]
    })
}

/// Polls a set of futures to completion concurrently on this task.
pub(crate) async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// One route: passes until one completes, a non-transient error, or the
/// attempts run out.
pub async fn sync_route(
    config: &Config,
    route: &Route,
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
    limits: &Limits,
) -> RouteOutcome {
    let plan = plan(config, route);
    let mut total = PassReport {
        route: plan.name.clone(),
        ..Default::default()
    };
    let mut backoff = RouteBackoff::new(Duration::from_secs(1), Duration::from_secs(30), None);
    let (mut attempts, mut failures, mut sessions) = (0, 0, 0);
    loop {
        attempts += 1;
        sessions += 1;
        let mut report = PassReport::default();
        let options = &PassOptions {
            logins_at_once: options.logins_at_once && failures == 0,
            ..options.clone()
        };
        let result = attempt(
            config,
            route,
            &plan,
            ledger,
            options,
            cancel,
            &mut report,
            limits,
        )
        .await;
        add(&mut total, &report);
        let error = result.err();
        if let Some(e) = &error {
            failures += 1;
            tracing::warn!(route = %plan.name, attempt = attempts, error = %e, "route pass failed");
        } else if another_session(options, &report, sessions) && !cancel.is_cancelled() {
            // Some servers (Gmail) list only a window of messages per
            // session: log in again until a session brings nothing new.
            continue;
        }
        let wait = match &error {
            None => None,
            Some(_) if cancel.is_cancelled() || failures >= MAX_ROUTE_ATTEMPTS => None,
            Some(e) => match e.class {
                ErrorClass::Transient => backoff.next_wait(),
                ErrorClass::Throttled { wait } => Some(wait.unwrap_or(Duration::from_secs(60)))
                    .filter(|w| *w <= MAX_THROTTLE_WAIT),
                _ => None,
            },
        };
        match wait {
            Some(wait) => {
                tracing::info!(route = %plan.name, ?wait, "retrying the route");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => {}
                }
            }
            None => {
                return RouteOutcome {
                    report: total,
                    attempts: failures + u32::from(error.is_none()),
                    error: error.as_ref().map(RouteErrorReport::from),
                }
            }
        }
    }
}

/// Sessions one `sync` opens to a source at most, for servers that list a
/// window of messages per session (Gmail's POP3 lists about 250).
const MAX_SESSIONS: u32 = 100;

/// Whether a pass that went well should be followed by another session: it
/// settled something new (so the server may show more next time), the server
/// allows logging in again at once (no LOGIN-DELAY), and the bound is not hit.
fn another_session(options: &PassOptions, report: &PassReport, sessions: u32) -> bool {
    let progress = report.counts.copied + report.counts.duplicates + report.counts.skipped;
    // A server that lost acknowledged copies is not tried again at once:
    // the next run does (each try could leave one more of what it keeps).
    !options.dry_run
        && !options.reconcile
        && progress > 0
        && report.copies_lost == 0
        && report.copies_altered == 0
        && report.login_delay.is_none()
        && sessions < MAX_SESSIONS
}

fn add(total: &mut PassReport, pass: &PassReport) {
    let (t, p) = (&mut total.counts, &pass.counts);
    t.copied += p.copied;
    t.duplicates += p.duplicates;
    // Messages, not attempts: the same message failing in two sessions of
    // one run is one failed message.
    total.failed_keys.extend(pass.failed_keys.iter().cloned());
    total.skipped_keys.extend(pass.skipped_keys.iter().cloned());
    t.skipped = total.skipped_keys.len() as u64;
    t.failed = total.failed_keys.len() as u64;
    t.deleted += p.deleted;
    t.bytes += p.bytes;
    total.pending = pass.pending;
    total.would_copy = pass.would_copy;
    total.would_copy_bytes = pass.would_copy_bytes;
    total.would_delete = pass.would_delete;
    total.target_bodies_fetched += pass.target_bodies_fetched;
    total.downloaded += pass.downloaded;
    total.target_bytes_fetched += pass.target_bytes_fetched;
    total.target_indexed += pass.target_indexed;
    total.intents_found += pass.intents_found;
    total.intents_dropped += pass.intents_dropped;
    total.copies_lost += pass.copies_lost;
    total.copies_altered += pass.copies_altered;
    total.seconds += pass.seconds;
}

/// One pass with a run record in the ledger (none in a dry run), once the
/// concurrency limits let it start.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt(
    config: &Config,
    route: &Route,
    plan: &RoutePlan,
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
    report: &mut PassReport,
    limits: &Limits,
) -> Result<(), RouteError> {
    let _permits = tokio::select! {
        p = limits.acquire(config, route) => p,
        () = cancel.cancelled() => return Err(RouteError::new(ErrorClass::Transient, "stopped by a signal")),
    };
    let target_account = &config.targets[route.target];
    let mut options = options.clone();
    options.max_attempts = route.max_attempts;
    if !options.dry_run && !options.reconcile {
        options.byte_budget = quota::before_pass(plan, target_account, ledger)?;
        options.download_budget =
            quota::download_budget(plan, &config.sources[route.source], ledger)?;
        options.bytes_per_second = target_account.max_bytes_per_second;
    }
    let options = &options;
    let run = if options.dry_run {
        None
    } else {
        Some(ledger.call(|l| l.start_run(&plan.key))?)
    };
    let source_account = &config.sources[route.source];
    let result = async {
        let target_account = &config.targets[route.target];
        let (mut target, source) = if options.logins_at_once {
            // Both logins at once: each is a TLS handshake and a login,
            // round trips that add up on a real network. The maildrop is
            // then locked while the target mailbox is selected and leftover
            // intents are resolved too (normally a round trip).
            let (target, source) = tokio::join!(
                connect_target(target_account),
                connect_source(source_account)
            );
            match (target, source) {
                (Ok(target), Ok(source)) => (target, source),
                (Err(e), source) => {
                    if let Ok(source) = source {
                        source.quit().await;
                    }
                    return Err(e);
                }
                (Ok(target), Err(e)) => {
                    target.logout().await;
                    return Err(e);
                }
            }
        } else {
            let target = connect_target(target_account).await?;
            match connect_source(source_account).await {
                Ok(source) => (target, source),
                Err(e) => {
                    target.logout().await;
                    return Err(e);
                }
            }
        };
        let result = run_pass(
            plan,
            &mut target,
            async || Ok(source),
            ledger,
            options,
            cancel,
            report,
        )
        .await;
        target.logout().await;
        result
    }
    .await;
    let result = match result {
        Ok(()) if report.download_spent => Err(crate::sync::pass::download_spent()),
        other => other,
    };
    if let Some(run) = run {
        let error = result.as_ref().err().map(|e| e.message.as_str());
        ledger.call(|l| l.finish_run(run, &report.counts, error))?;
        if report.downloaded > 0 {
            ledger.call(|l| l.record_downloaded(run, report.downloaded))?;
        }
    }
    match result {
        Err(e) if e.class == ErrorClass::Quota && !options.dry_run => {
            let accounts = (&config.sources[route.source], target_account);
            Err(quota::after_quota(plan, accounts, ledger, e)?)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_session_only_after_progress_and_without_login_delay() {
        let options = PassOptions::default();
        let mut report = PassReport::default();
        assert!(!another_session(&options, &report, 1), "nothing new: done");
        report.counts.copied = 250;
        assert!(another_session(&options, &report, 1));
        assert!(!another_session(&options, &report, MAX_SESSIONS), "bounded");
        report.login_delay = Some(Duration::from_secs(900));
        assert!(
            !another_session(&options, &report, 1),
            "LOGIN-DELAY forbids logging in again"
        );
        report.login_delay = None;
        let dry = PassOptions {
            dry_run: true,
            ..Default::default()
        };
        assert!(!another_session(&dry, &report, 1));
        report.counts = Default::default();
        report.counts.failed = 3;
        assert!(
            !another_session(&options, &report, 1),
            "failures wait for a later pass"
        );
    }

    #[test]
    fn routes_sharing_a_source_or_a_mailbox_take_turns() {
        let mut text = String::new();
        for s in ["a", "b", "c", "d"] {
            text += &format!(
                "[[source]]\nname = \"{s}\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n"
            );
        }
        for t in ["x", "y"] {
            text += &format!(
                "[[target]]\nname = \"{t}\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n"
            );
        }
        // a and b meet in x/INBOX (one spelled "inbox"); b and c share nothing
        // but c shares its source with nobody; d feeds y twice.
        for (from, to, mailbox, name) in [
            ("a", "x", "INBOX", "r0"),
            ("b", "x", "inbox", "r1"),
            ("c", "x", "Other", "r2"),
            ("d", "y", "INBOX", "r3"),
            ("d", "y", "Archive", "r4"),
        ] {
            text += &format!("[[route]]\nname = \"{name}\"\nfrom = \"{from}\"\nto = \"{to}\"\nmailbox = \"{mailbox}\"\n");
        }
        let config = Config::from_str(&text, std::path::Path::new("t.toml")).unwrap();
        let routes: Vec<&Route> = config.routes.iter().collect();
        let g = conflict_groups(&config, &routes);
        assert_eq!(g[0], g[1], "same mailbox, INBOX in any case");
        assert_ne!(g[0], g[2]);
        assert_eq!(g[3], g[4], "same source");
        assert_ne!(g[2], g[3]);
        assert_ne!(g[0], g[3]);
    }
}
