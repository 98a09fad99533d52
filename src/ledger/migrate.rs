//! Schema migrations: the ordered list of `state/migrations/*.sql`, and the
//! runner that brings a ledger file up to the newest in one transaction.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::{Context, LedgerError, Result};

/// One schema step. `version` is what `PRAGMA user_version` holds once it is
/// applied; versions are 1, 2, 3… in list order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

/// Every migration, oldest first. To change the schema, add
/// `state/migrations/000N_what.sql` and one line here; never edit a
/// migration that has shipped.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../state/migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../state/migrations/0002_pause.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../../state/migrations/0003_downloaded.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../state/migrations/0004_confirmed.sql"),
    },
];

/// `PRAGMA application_id` of a mailferry ledger ("MFLG"): tells our file
/// from any other SQLite database.
pub(crate) const APPLICATION_ID: i32 = 0x4d46_4c47;

/// The schema version this binary writes.
pub(crate) fn latest(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

/// What the file's header says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub user_version: u32,
    pub application_id: i32,
    /// Tables, indexes… already in the file.
    pub objects: i64,
}

/// Reads the header; a file that is not SQLite fails here.
pub(crate) fn read_header(conn: &Connection, path: &Path) -> Result<Header> {
    let pragma = |name: &str| -> Result<i64> {
        conn.pragma_query_value(None, name, |row| row.get(0))
            .ctx(path, "read the schema version")
    };
    let user_version = pragma("user_version")?;
    let application_id = pragma("application_id")?;
    let objects = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .ctx(path, "read the schema")?;
    Ok(Header {
        user_version: u32::try_from(user_version).unwrap_or(u32::MAX),
        application_id: i32::try_from(application_id).unwrap_or(0),
        objects,
    })
}

/// Checks the file is ours (or brand new) and not from a newer mailferry.
/// Returns the version it is at (0 for a new file).
pub(crate) fn check(header: Header, path: &Path, known: u32) -> Result<u32> {
    let fresh = header.user_version == 0 && header.objects == 0;
    if fresh && (header.application_id == 0 || header.application_id == APPLICATION_ID) {
        return Ok(0);
    }
    if header.application_id != APPLICATION_ID || header.user_version == 0 {
        return Err(LedgerError::Foreign {
            path: path.to_path_buf(),
            reason: format!(
                "SQLite file of another program: application_id {:#x}, user_version {}",
                header.application_id, header.user_version
            ),
        });
    }
    if header.user_version > known {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            found: header.user_version,
            known,
        });
    }
    Ok(header.user_version)
}

/// Applies every migration newer than the file, and the new version number,
/// in one IMMEDIATE transaction: a crash leaves the old schema or the new
/// one, never half. Returns the version the file is now at.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[Migration]) -> Result<u32> {
    let known = latest(migrations);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(path, "begin the schema migration")?;
    let current = check(read_header(&tx, path)?, path, known)?;
    if current == known {
        return Ok(current);
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        tx.execute_batch(migration.sql)
            .ctx(path, "apply a schema migration")?;
    }
    tx.pragma_update(None, "user_version", known)
        .ctx(path, "set the schema version")?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .ctx(path, "set the application id")?;
    tx.commit().ctx(path, "commit the schema migration")?;
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
    }

    const FAKE_0002: Migration = Migration {
        version: 2,
        sql: "CREATE TABLE fake_second (x INTEGER); ALTER TABLE run ADD COLUMN note TEXT;",
    };

    fn objects(conn: &Connection, name: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap_or(-1)
    }

    #[test]
    fn runs_a_later_migration_on_an_existing_file() -> Result<()> {
        let path = Path::new("memory");
        let mut conn = Connection::open_in_memory().ctx(path, "open")?;
        let first = &MIGRATIONS[..1];
        assert_eq!(migrate(&mut conn, path, first)?, 1);
        assert_eq!(objects(&conn, "fake_second"), 0);
        let both = [MIGRATIONS[0], FAKE_0002];
        assert_eq!(migrate(&mut conn, path, &both)?, 2);
        assert_eq!(objects(&conn, "fake_second"), 1);
        // Idempotent, and the old binary now refuses the newer file.
        assert_eq!(migrate(&mut conn, path, &both)?, 2);
        let err = migrate(&mut conn, path, first).err();
        assert!(
            matches!(
                err,
                Some(LedgerError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                })
            ),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn a_failing_migration_changes_nothing() -> Result<()> {
        let path = Path::new("memory");
        let mut conn = Connection::open_in_memory().ctx(path, "open")?;
        migrate(&mut conn, path, &MIGRATIONS[..1])?;
        let broken = Migration {
            version: 2,
            sql: "CREATE TABLE half_done (x); THIS IS NOT SQL;",
        };
        assert!(migrate(&mut conn, path, &[MIGRATIONS[0], broken]).is_err());
        assert_eq!(objects(&conn, "half_done"), 0);
        assert_eq!(read_header(&conn, path)?.user_version, 1);
        Ok(())
    }

    #[test]
    fn every_earlier_version_upgrades_to_the_latest() -> Result<()> {
        let path = Path::new("memory");
        for start in 1..MIGRATIONS.len() {
            let mut conn = Connection::open_in_memory().ctx(path, "open")?;
            assert_eq!(
                migrate(&mut conn, path, &MIGRATIONS[..start])? as usize,
                start
            );
            assert_eq!(migrate(&mut conn, path, MIGRATIONS)?, latest(MIGRATIONS));
            assert_eq!(objects(&conn, "route_pause"), 1, "from version {start}");
        }
        Ok(())
    }

    #[test]
    fn refuses_foreign_sqlite() -> Result<()> {
        let path = Path::new("memory");
        let mut conn = Connection::open_in_memory().ctx(path, "open")?;
        conn.execute_batch("CREATE TABLE theirs (x);")
            .ctx(path, "setup")?;
        let err = migrate(&mut conn, path, MIGRATIONS).err();
        assert!(matches!(err, Some(LedgerError::Foreign { .. })), "{err:?}");
        Ok(())
    }
}
