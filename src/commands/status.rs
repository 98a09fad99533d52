//! `mailferry status`: per route, from the ledger only (no server is
//! contacted, and it works while a daemon writes the ledger).

use crate::commands::{exit, print_json, time};
use crate::config::Config;
use std::path::PathBuf;

use std::time::SystemTime;

use crate::ledger::{Ledger, LedgerError, Outstanding, Pause, RouteStatus, RunRecord};
use crate::sync::plan::route_key;

/// Prints the status of every configured route, from the config's ledger
/// or, with `merge`, summed over these ledgers (one per shard).
pub fn run(
    config: &Config,
    json: bool,
    merge: &[PathBuf],
    messages: bool,
) -> Result<u8, LedgerError> {
    let ledgers: Vec<Ledger> = if merge.is_empty() {
        match Ledger::open_read_only(&config.ledger_path) {
            Ok(l) => vec![l],
            Err(LedgerError::Missing { .. }) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        merge
            .iter()
            .map(Ledger::open_read_only)
            .collect::<Result<_, _>>()?
    };
    let mut rows = Vec::new();
    for route in &config.routes {
        let key = route_key(config, route);
        let mut merged: Option<RouteStatus> = None;
        let mut pause: Option<Pause> = None;
        for ledger in &ledgers {
            let status = ledger.route_status(&key)?;
            merged = Some(match merged {
                None => status,
                Some(sum) => add(sum, status),
            });
            if let Some(p) = ledger.pause(&key)?.filter(|p| p.until > SystemTime::now()) {
                pause = Some(p);
            }
        }
        rows.push((route.name.as_str(), merged, pause));
    }
    let ledger = ledgers.first();
    // With --messages: every outstanding message of each route, per ledger.
    let mut listed: Vec<Vec<Outstanding>> = Vec::new();
    for route in &config.routes {
        let key = route_key(config, route);
        let mut all = Vec::new();
        if messages {
            for l in &ledgers {
                all.extend(l.outstanding(&key, u64::MAX)?);
            }
        }
        listed.push(all);
    }
    if json {
        let routes: Vec<serde_json::Value> = rows
            .iter()
            .zip(&listed)
            .map(|((name, s, p), list)| {
                let mut v = to_json(name, s.as_ref(), p.as_ref());
                if messages {
                    v["messages"] = list.iter().map(outstanding_json).collect();
                }
                v
            })
            .collect();
        let files: Vec<&std::path::Path> = if merge.is_empty() {
            vec![config.ledger_path.as_path()]
        } else {
            merge.iter().map(PathBuf::as_path).collect()
        };
        print_json(&serde_json::json!({
            "ledger": config.ledger_path,
            "ledgers": files,
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
        if messages {
            for ((name, _, _), list) in rows.iter().zip(&listed) {
                print_outstanding(name, list);
            }
        }
    }
    let failed = rows
        .iter()
        .any(|(_, s, _)| s.as_ref().is_some_and(|s| s.outstanding > 0));
    Ok(if failed {
        exit::SOME_FAILED
    } else {
        exit::DONE
    })
}

/// Two ledgers' views of one route: counts add up, the later run wins.
fn add(mut sum: RouteStatus, other: RouteStatus) -> RouteStatus {
    let (s, o) = (&mut sum.states, &other.states);
    s.seen += o.seen;
    s.copied += o.copied;
    s.duplicate += o.duplicate;
    s.skipped += o.skipped;
    s.failed += o.failed;
    s.deleted += o.deleted;
    sum.pending_intents += other.pending_intents;
    sum.outstanding += other.outstanding;
    let later = |a: &Option<RunRecord>, b: &Option<RunRecord>| match (a, b) {
        (Some(a), Some(b)) => b.started > a.started,
        (None, Some(_)) => true,
        _ => false,
    };
    if later(&sum.last_run, &other.last_run) {
        sum.last_run = other.last_run;
        sum.last_message_error = other.last_message_error.or(sum.last_message_error);
    } else {
        sum.last_message_error = sum.last_message_error.or(other.last_message_error);
    }
    sum
}

fn to_json(name: &str, status: Option<&RouteStatus>, pause: Option<&Pause>) -> serde_json::Value {
    let Some(s) = status else {
        return serde_json::json!({ "route": name, "runs": 0 });
    };
    let paused =
        pause.map(|p| serde_json::json!({ "until": time::unix(p.until), "reason": p.reason }));
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
        "outstanding": s.outstanding,
        "deleted": s.states.deleted,
        "last_run": last_run,
        "last_error": s.last_message_error,
        "paused": paused,
    })
}

/// One outstanding message for `--json`.
pub fn outstanding_json(m: &Outstanding) -> serde_json::Value {
    serde_json::json!({
        "key": m.uidl,
        "state": m.state.as_str(),
        "attempts": m.attempts,
        "reason": m.reason,
        "size": m.size,
        "summary": m.summary,
        "first_seen": time::unix(m.first_seen),
        "last_try": time::unix(m.last_try),
    })
}

/// One line per outstanding message: key, state, attempts, size, when
/// last tried, and the reason (control characters shown as `?`).
pub fn outstanding_line(m: &Outstanding) -> String {
    let reason: String = m
        .reason
        .as_deref()
        .unwrap_or("no reason recorded")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let size = m
        .size
        .map_or("size unknown".to_string(), |s| format!("{s} bytes"));
    let what = m
        .summary
        .as_deref()
        .map_or(String::new(), |s| format!(" [{s}]"));
    format!(
        "{}{what} {} after {} attempt(s), {size}, last tried {}: {reason}",
        m.uidl,
        m.state.as_str(),
        m.attempts,
        time::utc(m.last_try)
    )
}

fn print_outstanding(route: &str, list: &[Outstanding]) {
    if list.is_empty() {
        return;
    }
    println!(
        "\n{route}: {} message(s) not copied (kept on the source):",
        list.len()
    );
    for m in list {
        println!("  {}", outstanding_line(m));
    }
}

fn print_table(rows: &[(&str, Option<RouteStatus>, Option<Pause>)]) {
    let width = rows
        .iter()
        .map(|(n, _, _)| n.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:>7} {:>10} {:>7} {:>6} {:>7} {:>7}  last run",
        "route", "copied", "duplicates", "skipped", "failed", "pending", "deleted"
    );
    for (name, status, pause) in rows {
        let Some(s) = status else {
            println!(
                "{name:width$}  {:>7} {:>10} {:>7} {:>6} {:>7} {:>7}  never",
                0, 0, 0, 0, 0, 0
            );
            continue;
        };
        let last = match (&s.last_run, pause) {
            (_, Some(p)) => format!("paused until {}: {}", time::utc(p.until), p.reason),
            (last_run, None) => match last_run {
                None => "never".to_string(),
                Some(r) => match (&r.finished, &r.error) {
                    (None, _) => format!("{} (running or interrupted)", time::utc(r.started)),
                    (Some(end), None) => format!("{} ok", time::utc(*end)),
                    (Some(end), Some(e)) => format!("{} failed: {e}", time::utc(*end)),
                },
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
