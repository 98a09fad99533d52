//! Transfer budgets: a target's `max_bytes_per_day` (Gmail documents 500 MB
//! of IMAP upload a day) is kept across passes, processes and restarts by
//! summing the bytes the ledger's runs appended in the trailing window. A
//! spent budget pauses the route in the ledger until the window frees up;
//! `status` shows the pause, `run` waits for it, `sync` says until when.

use std::time::{Duration, SystemTime};

use crate::config::Account;
use crate::ledger::WindowUse;
use crate::retry::ErrorClass;
use crate::sync::pass::{ByteBudget, RoutePlan};
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
    match max.checked_sub(used.bytes).filter(|left| *left > 0) {
        Some(left) => Ok(Some(ByteBudget { left, max })),
        None => {
            let until = used.oldest.map_or(SystemTime::now(), |t| t + window());
            let reason = spent(target, max);
            ledger.call(|l| l.set_pause(key, until, &reason))?;
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
    match max.checked_sub(used.bytes).filter(|left| *left > 0) {
        Some(left) => Ok(Some(ByteBudget { left, max })),
        None => {
            let until = used.oldest.map_or(SystemTime::now(), |t| t + window());
            let reason = format!(
                "source {}: the download budget of {max} bytes per {:?} (max_bytes_per_day) is spent",
                source.name,
                window()
            );
            ledger.call(|l| l.set_pause(&plan.key, until, &reason))?;
            Err(paused(until, reason))
        }
    }
}

fn spent(target: &Account, max: u64) -> String {
    format!(
        "target {}: the upload budget of {max} bytes per {:?} (max_bytes_per_day) is spent",
        target.name,
        window()
    )
}

fn paused(until: SystemTime, reason: String) -> RouteError {
    let mut e = RouteError::new(ErrorClass::Quota, format!("paused: {reason}"));
    e.resume_at = Some(until);
    e
}
