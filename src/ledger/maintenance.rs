//! Looking after the ledger file itself: an online backup (safe while a
//! daemon writes) and an integrity check with counts.

use std::path::Path;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use super::error::{Context, LedgerError, Result};
use super::{read_tx, Ledger};

/// What `ledger check` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerCheck {
    /// SQLite's `integrity_check` and `foreign_key_check` found nothing.
    pub ok: bool,
    /// What they reported otherwise (at most 100 lines).
    pub problems: Vec<String>,
    pub schema_version: u32,
    pub source_messages: u64,
    pub deliveries: u64,
    pub target_messages: u64,
    pub pending_intents: u64,
    pub runs: u64,
}

impl Ledger {
    /// Copies the ledger into `dest` (a new file) with SQLite's online backup
    /// API: a consistent snapshot even while another process writes. Refuses
    /// to overwrite an existing file.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(LedgerError::Io {
                path: dest.to_path_buf(),
                action: "write the backup",
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the file exists; choose a new name",
                ),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let mut out = Connection::open_with_flags(dest, flags).ctx(dest, "create the backup")?;
        {
            let backup = Backup::new(&self.conn, &mut out).ctx(&self.path, "start the backup")?;
            backup
                .run_to_completion(256, std::time::Duration::from_millis(5), None)
                .ctx(&self.path, "copy into the backup")?;
        }
        // A backup is one self-contained file: no WAL beside it.
        out.pragma_update(None, "journal_mode", "DELETE")
            .ctx(dest, "finish the backup")?;
        Ok(())
    }

    /// Runs SQLite's integrity and foreign-key checks and counts the rows.
    pub fn check(&self) -> Result<LedgerCheck> {
        let path = &self.path;
        let tx = read_tx(&self.conn, path)?;
        let mut problems: Vec<String> = Vec::new();
        {
            let mut stmt = tx
                .prepare("PRAGMA integrity_check(100)")
                .ctx(path, "check integrity")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .ctx(path, "check integrity")?;
            for row in rows {
                let line = row.ctx(path, "check integrity")?;
                if line != "ok" {
                    problems.push(line);
                }
            }
            let mut stmt = tx
                .prepare("PRAGMA foreign_key_check")
                .ctx(path, "check references")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{} row {} has no parent in {}",
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?
                    ))
                })
                .ctx(path, "check references")?;
            for row in rows.take(100) {
                problems.push(row.ctx(path, "check references")?);
            }
        }
        let count = |table: &str| -> Result<u64> {
            let n: i64 = tx
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .ctx(path, "count rows")?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let schema_version: u32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .ctx(path, "read the schema version")?;
        Ok(LedgerCheck {
            ok: problems.is_empty(),
            schema_version,
            source_messages: count("source_message")?,
            deliveries: count("delivery")?,
            target_messages: count("target_message")?,
            pending_intents: count("append_intent")?,
            runs: count("run")?,
            problems,
        })
    }
}
