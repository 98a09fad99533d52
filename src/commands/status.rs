//! `mailferry status`: per route, from the ledger only (no server is
//! contacted, and it works while a daemon writes the ledger).

use crate::commands::{exit, print_json, time};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, RouteStatus};
use crate::sync::plan::route_key;

/// Prints the status of every configured route.
pub fn run(config: &Config, json: bool) -> Result<u8, LedgerError> {
    let ledger = match Ledger::open_read_only(&config.ledger_path) {
        Ok(l) => Some(l),
        Err(LedgerError::Missing { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut rows = Vec::new();
    for route in &config.routes {
        let key = route_key(config, route);
        let status = match &ledger {
            Some(l) => Some(l.route_status(&key)?),
            None => None,
        };
        rows.push((route.name.as_str(), status));
    }
    if json {
        let routes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, s)| to_json(name, s.as_ref()))
            .collect();
        print_json(&serde_json::json!({
            "ledger": config.ledger_path,
            "ledger_exists": ledger.is_some(),
            "routes": routes,
        }));
    } else {
        if ledger.is_none() {
            println!(
                "no ledger yet at {} (nothing synced so far)",
                config.ledger_path.display()
            );
        }
        print_table(&rows);
    }
    let failed = rows.iter().any(|(_, s)| {
        s.as_ref()
            .is_some_and(|s| s.states.failed + s.states.skipped > 0)
    });
    Ok(if failed {
        exit::SOME_FAILED
    } else {
        exit::DONE
    })
}

fn to_json(name: &str, status: Option<&RouteStatus>) -> serde_json::Value {
    let Some(s) = status else {
        return serde_json::json!({ "route": name, "runs": 0 });
    };
    let last_run = s.last_run.as_ref().map(|r| {
        serde_json::json!({
            "started": time::unix(r.started),
            "finished": r.finished.map(time::unix),
            "counts": r.counts,
            "error": r.error,
        })
    });
    serde_json::json!({
        "route": name,
        "source": s.route.source,
        "target": s.route.target,
        "mailbox": s.route.mailbox,
        "copied": s.states.copied,
        "duplicates": s.states.duplicate,
        "skipped": s.states.skipped,
        "failed": s.states.failed,
        "pending": s.states.seen + s.pending_intents,
        "deleted": s.states.deleted,
        "last_run": last_run,
        "last_error": s.last_message_error,
    })
}

fn print_table(rows: &[(&str, Option<RouteStatus>)]) {
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(5).max(5);
    println!(
        "{:width$}  {:>7} {:>10} {:>7} {:>6} {:>7} {:>7}  last run",
        "route", "copied", "duplicates", "skipped", "failed", "pending", "deleted"
    );
    for (name, status) in rows {
        let Some(s) = status else {
            println!(
                "{name:width$}  {:>7} {:>10} {:>7} {:>6} {:>7} {:>7}  never",
                0, 0, 0, 0, 0, 0
            );
            continue;
        };
        let last = match &s.last_run {
            None => "never".to_string(),
            Some(r) => match (&r.finished, &r.error) {
                (None, _) => format!("{} (running or interrupted)", time::utc(r.started)),
                (Some(end), None) => format!("{} ok", time::utc(*end)),
                (Some(end), Some(e)) => format!("{} failed: {e}", time::utc(*end)),
            },
        };
        let st = &s.states;
        println!(
            "{name:width$}  {:>7} {:>10} {:>7} {:>6} {:>7} {:>7}  {last}",
            st.copied,
            st.duplicate,
            st.skipped,
            st.failed,
            st.seen + s.pending_intents,
            st.deleted
        );
        if let Some(err) = &s.last_message_error {
            println!("{:width$}  last message error: {err}", "");
        }
    }
}
