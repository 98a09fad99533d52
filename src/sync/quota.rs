//! Transfer budgets: a target's `max_bytes_per_day` (Gmail documents 500 MB
//! of IMAP upload a day) is kept across passes, processes and restarts by
//! summing the bytes the ledger's runs appended in the trailing window. A
//! spent budget pauses the route in the ledger until the window frees up;
//! `status` shows the pause, `run` waits for it, `sync` says until when.

use std::time::{Duration, SystemTime};

use crate::config::Account;
use crate::ledger::Outcome;
use crate::ledger::WindowUse;
use crate::retry::ErrorClass;
use crate::sync::plan::{ByteBudget, PassReport, RoutePlan};
use crate::sync::ports::{Budget, RouteError};
use crate::sync::SharedLedger;

/// The budget window: a day. `MAILFERRY_QUOTA_WINDOW` (a duration like
/// "20s") shortens it, for tests only.
pub fn window() -> Duration {
    std::env::var("MAILFERRY_QUOTA_WINDOW")
        .ok()
        .and_then(|w| crate::config::parse_duration(&w).ok())
        .unwrap_or(Duration::from_secs(86_400))
}

/// How long a route waits after the server said OVERQUOTA, which names no
/// reset time.
const SERVER_QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// Before a pass: refuses a route that is paused, and gives the bytes the
/// target may still receive in this window (`None`: no budget set).
pub fn before_pass(
    plan: &RoutePlan,
    target: &Account,
    ledger: &SharedLedger,
) -> Result<Option<ByteBudget>, RouteError> {
    let key = &plan.key;
    if let Some(pause) = ledger.call(|l| l.pause(key))? {
        if pause.until > SystemTime::now() {
            return Err(paused(pause.until, pause.reason));
        }
        ledger.call(|l| l.clear_pause(key))?;
    }
    let Some(max) = target.max_bytes_per_day else {
        return Ok(None);
    };
    let used = ledger.call(|l| l.appended_within(&target.name, window()))?;
    left_or_pause(plan, ledger, max, used, || {
        spent("target", &target.name, "upload", max)
    })
}

/// What is left of a budget of `max` after `used`, or (nothing left) the
/// route paused until the window frees up, for the reason `reason` gives.
fn left_or_pause(
    plan: &RoutePlan,
    ledger: &SharedLedger,
    max: u64,
    used: WindowUse,
    reason: impl FnOnce() -> String,
) -> Result<Option<ByteBudget>, RouteError> {
    match max.checked_sub(used.bytes).filter(|left| *left > 0) {
        Some(left) => Ok(Some(ByteBudget { left, max })),
        None => {
            let until = used.oldest.map_or(SystemTime::now(), |t| t + window());
            let reason = reason();
            ledger.call(|l| l.set_pause(&plan.key, until, &reason))?;
            Err(paused(until, reason))
        }
    }
}

/// After a pass that ended on a quota: records the pause (if the error does
/// not already carry one from [`before_pass`]) and returns the error with
/// its resume time.
pub fn after_quota(
    plan: &RoutePlan,
    (source, target): (&Account, &Account),
    ledger: &SharedLedger,
    mut error: RouteError,
) -> Result<RouteError, RouteError> {
    if error.resume_at.is_some() {
        return Ok(error);
    }
    let window_ends = |used: WindowUse| {
        used.oldest
            .map_or(SystemTime::now() + window(), |t| t + window())
    };
    let (account, until) = match error.budget {
        Some(Budget::Download) => {
            let used = ledger.call(|l| l.downloaded_within(&source.name, window()))?;
            (format!("source {}", source.name), window_ends(used))
        }
        Some(Budget::Upload) => {
            let used = ledger.call(|l| l.appended_within(&target.name, window()))?;
            (format!("target {}", target.name), window_ends(used))
        }
        // The server said OVERQUOTA, without a reset time.
        None => (
            format!("target {}", target.name),
            SystemTime::now() + SERVER_QUOTA_PAUSE,
        ),
    };
    error.message = format!("{account}: {}", error.message);
    ledger.call(|l| l.set_pause(&plan.key, until, &error.message))?;
    error.resume_at = Some(until);
    Ok(error)
}

/// Before a pass: what may still be downloaded from the source in this
/// window (`None`: no budget set); a spent budget pauses the route.
pub fn download_budget(
    plan: &RoutePlan,
    source: &Account,
    ledger: &SharedLedger,
) -> Result<Option<ByteBudget>, RouteError> {
    let Some(max) = source.max_bytes_per_day else {
        return Ok(None);
    };
    let used = ledger.call(|l| l.downloaded_within(&source.name, window()))?;
    left_or_pause(plan, ledger, max, used, || {
        spent("source", &source.name, "download", max)
    })
}

fn spent(side: &str, account: &str, what: &str, max: u64) -> String {
    format!(
        "{side} {account}: the {what} budget of {max} bytes per {:?} (max_bytes_per_day) is spent",
        window()
    )
}

fn paused(until: SystemTime, reason: String) -> RouteError {
    let mut e = RouteError::new(ErrorClass::Quota, format!("paused: {reason}"));
    e.resume_at = Some(until);
    e
}

/// Applies a budget to `items` (in order): those larger than a whole
/// window's budget are recorded as skipped (waiting would never help), and
/// of the rest the longest prefix that fits in what is left after `used` is
/// kept. Returns the kept items and whether some were held back.
#[allow(clippy::too_many_arguments)]
pub fn apply_budget<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> u64,
    uidl: impl Fn(&T) -> &str,
    budget: ByteBudget,
    used: u64,
    whose: &str,
    (plan, ledger, report): (&RoutePlan, &SharedLedger, &mut PassReport),
) -> Result<(Vec<T>, bool), RouteError> {
    let (never, candidates): (Vec<T>, Vec<T>) =
        items.into_iter().partition(|m| size(m) > budget.max);
    if !never.is_empty() {
        let reason = format!(
            "larger than {whose} whole daily budget of {} bytes (max_bytes_per_day)",
            budget.max
        );
        let outcomes: Vec<(&str, Outcome<'_>)> = never
            .iter()
            .map(|m| (uidl(m), Outcome::Skipped { reason: &reason }))
            .collect();
        ledger.call(|l| l.record_outcomes(&plan.key, &outcomes))?;
        for (key, outcome) in &outcomes {
            report.not_copied(key, outcome);
        }
    }
    let mut left = budget.left.saturating_sub(used);
    let mut kept = Vec::with_capacity(candidates.len());
    let mut held_back = false;
    for m in candidates {
        match left.checked_sub(size(&m)) {
            Some(rest) if !held_back => {
                left = rest;
                kept.push(m);
            }
            _ => held_back = true,
        }
    }
    Ok((kept, held_back))
}
