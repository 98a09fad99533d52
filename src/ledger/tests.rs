//! Unit tests that need the ledger's insides: its connection (to count the
//! statements a call runs, via SQLite's trace hook) and its clock.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::ffi;

use super::*;
use crate::message::Hash;

/// Every SQL statement SQLite started while `f` ran, in order.
fn traced<T>(ledger: &mut Ledger, f: impl FnOnce(&mut Ledger) -> T) -> (T, Vec<String>) {
    let statements = Mutex::new(Vec::<String>::new());
    let context = std::ptr::from_ref(&statements).cast_mut().cast::<c_void>();
    // SAFETY: the hook is removed before `statements` goes out of scope, and
    // the connection is only used on this thread meanwhile.
    unsafe {
        let db = ledger.conn.handle();
        ffi::sqlite3_trace_v2(
            db,
            ffi::SQLITE_TRACE_STMT as c_uint,
            Some(on_statement),
            context,
        );
    }
    let out = f(ledger);
    // SAFETY: as above; a null callback uninstalls the hook.
    unsafe {
        ffi::sqlite3_trace_v2(ledger.conn.handle(), 0, None, std::ptr::null_mut());
    }
    let statements = statements.into_inner().unwrap_or_default();
    (out, statements)
}

/// SQLITE_TRACE_STMT callback: `x` is the statement's SQL text.
unsafe extern "C" fn on_statement(
    _: c_uint,
    context: *mut c_void,
    _: *mut c_void,
    x: *mut c_void,
) -> c_int {
    // SAFETY: `context` is the `Mutex` `traced` passed, alive while installed;
    // SQLite passes a NUL-terminated string as `x` for this event.
    let (statements, sql) = unsafe {
        (
            &*context.cast::<Mutex<Vec<String>>>(),
            CStr::from_ptr(x.cast::<c_char>())
                .to_string_lossy()
                .into_owned(),
        )
    };
    if let Ok(mut list) = statements.lock() {
        list.push(sql);
    }
    0
}

fn temp_ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path().join("ledger.db")).expect("open ledger");
    (dir, ledger)
}

fn hash(n: u32) -> Hash {
    Hash(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn route(mailbox: &str) -> RouteKey {
    RouteKey::new("pop", "imap", mailbox)
}

#[test]
fn settled_lookup_of_100k_uidls_is_one_statement() -> Result<()> {
    let (_dir, mut ledger) = temp_ledger();
    let r = route("INBOX");
    let uidls: Vec<String> = (0..100_000).map(|i| format!("uidl-{i:06}\"\\")).collect();
    let seen: Vec<SeenMessage<'_>> = uidls
        .iter()
        .enumerate()
        .map(|(i, u)| SeenMessage {
            uidl: u,
            size: 10,
            hash: hash(i as u32),
        })
        .collect();
    ledger.record_seen(&r, &seen)?;
    let outcomes: Vec<(&str, Outcome<'_>)> = uidls
        .iter()
        .step_by(2)
        .map(|u| (u.as_str(), Outcome::Duplicate { of: None }))
        .collect();
    ledger.record_outcomes(&r, &outcomes)?;

    let (settled, statements) = traced(&mut ledger, |l| l.settled(&r, &uidls, 3));
    let settled = settled?;
    assert_eq!(settled.len(), 50_000);
    assert!(settled.contains(&uidls[0]) && !settled.contains(&uidls[1]));
    assert_eq!(statements.len(), 1, "{statements:?}");
    Ok(())
}

#[test]
fn batch_writes_are_one_transaction() -> Result<()> {
    let (_dir, mut ledger) = temp_ledger();
    let r = route("INBOX");
    let uidls: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let seen: Vec<SeenMessage<'_>> = uidls
        .iter()
        .map(|u| SeenMessage {
            uidl: u,
            size: 1,
            hash: hash(7),
        })
        .collect();
    let (result, statements) = traced(&mut ledger, |l| l.record_seen(&r, &seen));
    result?;
    let begins = statements.iter().filter(|s| s.starts_with("BEGIN")).count();
    let commits = statements
        .iter()
        .filter(|s| s.starts_with("COMMIT"))
        .count();
    assert_eq!((begins, commits), (1, 1));
    Ok(())
}

fn at_epoch() -> i64 {
    0
}

fn ten_days_later() -> i64 {
    10 * 86_400_000
}

#[test]
fn deletable_honours_min_age() -> Result<()> {
    let (_dir, mut ledger) = temp_ledger();
    let r = route("INBOX");
    ledger.clock = at_epoch;
    ledger.record_seen(
        &r,
        &[SeenMessage {
            uidl: "old",
            size: 1,
            hash: hash(1),
        }],
    )?;
    ledger.record_outcomes(&r, &[("old", Outcome::Duplicate { of: None })])?;
    ledger.clock = ten_days_later;
    let routes = [r.clone()];
    let days = |n: u64| Some(Duration::from_secs(n * 86_400));
    assert_eq!(
        ledger.deletable("pop", &routes, days(14))?,
        Vec::<String>::new()
    );
    assert_eq!(
        ledger.deletable("pop", &routes, days(10))?,
        vec!["old".to_owned()]
    );
    assert_eq!(
        ledger.deletable("pop", &routes, None)?,
        vec!["old".to_owned()]
    );
    Ok(())
}
