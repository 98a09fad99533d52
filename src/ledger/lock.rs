//! The one-writer rule: an OS lock on `<ledger>.lock` holding the writer's pid.
//!
//! Why an OS lock on a side file: the kernel drops it when the holder dies,
//! even by `kill -9`, so there is no stale lock to clean up by hand (a plain
//! pid file would need liveness guesses); it is separate from the database
//! so it never meddles with SQLite's own locks; and it is held for the whole
//! life of the process, whereas SQLite would only serialise single
//! transactions, letting two daemons interleave passes over the same
//! maildrops. The file is never deleted: unlinking a lock file lets a third
//! process lock a fresh inode while a second still holds the old one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::{LedgerError, Result};

/// Held for as long as the ledger is open for writing; dropping it (or the
/// process dying) releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// `<ledger>.lock`, beside the ledger.
pub(crate) fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Takes the lock without waiting, or says who holds it.
    pub(crate) fn acquire(ledger: &Path) -> Result<WriterLock> {
        let lock = lock_path(ledger);
        let io_err = |action, source| LedgerError::Io {
            path: ledger.to_path_buf(),
            action,
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    LedgerError::ReadOnly {
                        path: ledger.to_path_buf(),
                    }
                }
                _ => io_err("create its lock file", e),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LedgerError::Busy {
                    path: ledger.to_path_buf(),
                    pid: read_pid(&mut file),
                    lock,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock its lock file", e)),
        }
        write_pid(&mut file).map_err(|e| io_err("write its lock file", e))?;
        Ok(WriterLock { _file: file })
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()
}

/// The holder's pid; `None` if it has not written it yet or wrote garbage.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
