//! The ledger: the only module that speaks SQL.
//!
//! One SQLite file (WAL) records what happened to every source message on
//! every route, what each target mailbox holds (by identity hash), the append
//! intents that make crashes harmless, and the runs `status` shows
//! (docs/ARCHITECTURE.md, "Ledger schema" and "Exactly once"). The schema is `state/migrations/*.sql`, applied on open.
//!
//! - [`Ledger::open`] is the one writer per file (an OS lock on
//!   `<file>.lock`, see `lock.rs`); [`Ledger::open_read_only`] is for `status`
//!   while a daemon writes.
//! - Every method is one transaction, and batch methods take a whole pass's
//!   worth of messages at once: there is no per-message autocommit.
//! - Durability: WAL with `synchronous=FULL` on every commit. With batched
//!   transactions the fsync per commit is cheap (see `examples/ledger_bench.rs`),
//!   and it means any commit the engine waits on — an intent before APPEND, a
//!   settle before DELE — is on disk when the call returns, without the
//!   engine having to say which commits matter.
//!
//! Files: `error.rs` (the error type), `lock.rs` (one writer), `migrate.rs`
//! (schema), `types.rs` (API types), `source.rs` (per source message and
//! route), `target.rs` (per target mailbox), `intents.rs` (append intents),
//! `runs.rs` (runs and status), `maintenance.rs` (backup, integrity check),
//! `sql.rs` (value conversions).

mod confirm;
mod error;
mod intents;
mod lock;
mod maintenance;
mod migrate;
mod pause;
mod runs;
mod source;
mod sql;
mod target;
mod types;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use confirm::Unconfirmed;
pub use error::{LedgerError, Result};
pub use maintenance::LedgerCheck;
pub use pause::{Pause, WindowUse};
pub use types::{
    Delivery, DeliveryState, Intent, IntentId, NewIntent, Outcome, Outstanding, RouteKey,
    RouteStatus, RunCounts, RunId, RunRecord, SeenMessage, StateCounts, TargetMessage,
    UidValidityChange,
};

use error::Context;
use lock::WriterLock;
use migrate::MIGRATIONS;

/// How long a statement waits for SQLite's own lock (a reader meeting a
/// checkpoint) before failing with a transient error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open ledger file.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// `None` for a read-only ledger.
    _lock: Option<WriterLock>,
    /// Unix milliseconds now; replaced in unit tests to age messages.
    clock: fn() -> i64,
}

impl Ledger {
    /// Opens (creating the file and its directory if missing) the ledger as
    /// its one writer, and brings its schema up to date.
    ///
    /// Fails, naming the file, when another process holds it (with that
    /// process's pid), when it cannot be written, when it is not a mailferry
    /// ledger, or when a newer mailferry wrote it. Never deletes or recreates
    /// an existing file.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        create_parent(&path)?;
        let lock = WriterLock::acquire(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).ctx(&path, "open")?;
        if conn.is_readonly("main").ctx(&path, "open")? {
            return Err(LedgerError::ReadOnly { path });
        }
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&path, "configure")?;
        // Refuse a foreign file before changing anything in it.
        migrate::check(
            migrate::read_header(&conn, &path)?,
            &path,
            migrate::latest(MIGRATIONS),
        )?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .ctx(&path, "switch to WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Foreign {
                path,
                reason: format!("journal mode stays {mode:?}, WAL is needed"),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .ctx(&path, "configure")?;
        migrate::migrate(&mut conn, &path, MIGRATIONS)?;
        Ok(Ledger {
            conn,
            path,
            _lock: Some(lock),
            clock: sql::now_ms,
        })
    }

    /// Opens an existing ledger for reading only (for `status` while a daemon
    /// writes): takes no lock, never writes, never creates.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(LedgerError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).ctx(&path, "open")?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&path, "configure")?;
        let known = migrate::latest(MIGRATIONS);
        let found = migrate::check(migrate::read_header(&conn, &path)?, &path, known)?;
        if found < known {
            return Err(LedgerError::TooOld { path, found, known });
        }
        Ok(Ledger {
            conn,
            path,
            _lock: None,
            clock: sql::now_ms,
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now_ms(&self) -> i64 {
        (self.clock)()
    }
}

/// Creates the ledger's directory if missing.
fn create_parent(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            LedgerError::ReadOnly {
                path: path.to_path_buf(),
            }
        }
        _ => LedgerError::Io {
            path: path.to_path_buf(),
            action: "create its directory",
            source,
        },
    })
}

/// Starts a write transaction, taking SQLite's write lock at once so a
/// conflict shows at BEGIN, not halfway through.
fn write_tx<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(path, "begin a write")
}

/// Starts a read transaction: one consistent snapshot for several queries.
fn read_tx<'c>(conn: &'c Connection, path: &Path) -> Result<Transaction<'c>> {
    conn.unchecked_transaction().ctx(path, "begin a read")
}
