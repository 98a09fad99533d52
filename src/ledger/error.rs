//! The ledger's error type: every message names the ledger file.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Everything that can go wrong in the ledger. Almost all of it is fatal for
/// the process (docs/ARCHITECTURE.md, "Error classes": fatal, "stop before
/// touching any source"); see [`LedgerError::is_fatal`].
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process holds the writer lock.
    #[error("ledger {}: already in use by another mailferry process ({}; lock file {})",
        path.display(), pid.map_or("pid unknown".to_owned(), |p| format!("pid {p}")), lock.display())]
    Busy {
        path: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// A file-system operation failed (create the directory, the lock file…).
    #[error("ledger {}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// `open_read_only` on a file that does not exist.
    #[error("ledger {}: no such file (run `mailferry sync` once to create it)", path.display())]
    Missing { path: PathBuf },
    /// The file or its directory cannot be written.
    #[error("ledger {}: read-only (the file, its directory or the file system); mailferry needs to write it", path.display())]
    ReadOnly { path: PathBuf },
    /// The disk is full.
    #[error("ledger {}: disk full: {source}", path.display())]
    DiskFull {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Not a SQLite file, or a SQLite file of another program.
    #[error("ledger {}: not a mailferry ledger ({reason}); refusing to touch it", path.display())]
    Foreign { path: PathBuf, reason: String },
    /// SQLite reports the file damaged.
    #[error("ledger {}: corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Written by a newer mailferry.
    #[error("ledger {}: schema version {found} is newer than this mailferry knows ({known}); upgrade mailferry", path.display())]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    /// Read-only access to a ledger whose schema a writer has not upgraded yet.
    #[error("ledger {}: schema version {found}, this mailferry needs {known}; run a writing command (sync) once to upgrade it", path.display())]
    TooOld {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    /// Any other SQLite failure.
    #[error("ledger {}: {action}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    /// A stored value this code cannot read back (hand-edited file, bug).
    #[error("ledger {}: unreadable row: {detail}", path.display())]
    BadRow { path: PathBuf, detail: String },
    /// The caller asked for something inconsistent (a bug in the caller).
    #[error("ledger {}: {detail}", path.display())]
    Misuse { path: PathBuf, detail: String },
}

impl LedgerError {
    /// True when the process should stop rather than retry: everything but
    /// a momentary lock conflict inside SQLite (a reader meeting a
    /// checkpoint), which a retry resolves.
    pub fn is_fatal(&self) -> bool {
        !self.is_transient()
    }

    /// True for SQLite `BUSY`/`LOCKED`: retry the operation later.
    pub fn is_transient(&self) -> bool {
        match self {
            LedgerError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// The ledger file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LedgerError::Busy { path, .. }
            | LedgerError::Io { path, .. }
            | LedgerError::Missing { path }
            | LedgerError::ReadOnly { path }
            | LedgerError::DiskFull { path, .. }
            | LedgerError::Foreign { path, .. }
            | LedgerError::Corrupt { path, .. }
            | LedgerError::TooNew { path, .. }
            | LedgerError::TooOld { path, .. }
            | LedgerError::Sqlite { path, .. }
            | LedgerError::BadRow { path, .. }
            | LedgerError::Misuse { path, .. } => path,
        }
    }

    /// Classifies a SQLite error by its code, so a full disk or a foreign
    /// file reads as such rather than as a generic failure.
    pub(crate) fn sqlite(path: &Path, action: &'static str, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => LedgerError::Foreign {
                path,
                reason: "not an SQLite database".into(),
            },
            Some(ErrorCode::DatabaseCorrupt) => LedgerError::Corrupt { path, source },
            Some(ErrorCode::DiskFull) => LedgerError::DiskFull { path, source },
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                LedgerError::ReadOnly { path }
            }
            _ => LedgerError::Sqlite {
                path,
                action,
                source,
            },
        }
    }
}

/// Result alias for the ledger.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Attaches the ledger path and what was being done to a rusqlite result.
pub(crate) trait Context<T> {
    fn ctx(self, path: &Path, action: &'static str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, path: &Path, action: &'static str) -> Result<T> {
        self.map_err(|e| LedgerError::sqlite(path, action, e))
    }
}
