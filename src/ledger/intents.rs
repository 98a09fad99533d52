//! Append intents (docs/ARCHITECTURE.md, "Exactly once"): committed before an APPEND, settled or
//! dropped after, resolved after a crash.

use std::num::NonZeroU32;

use rusqlite::{params, OptionalExtension, Row};

use super::error::{Context, LedgerError, Result};
use super::sql::{hash_from_blob, nz_from_sql, nz_to_sql, time_from_ms, to_i64, to_u64};
use super::target::UPSERT_TARGET_MESSAGE;
use super::types::{Intent, IntentId, NewIntent, RouteKey};
use super::{write_tx, Ledger};

const INSERT_INTENT: &str = "
    INSERT INTO append_intent
        (source, uidl, target, mailbox, hash, size, uidvalidity, uidnext_before, created_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const INTENT_COLUMNS: &str =
    "id, source, target, mailbox, uidl, hash, size, uidvalidity, uidnext_before, created_ms";

/// The UID an APPENDUID gave is only recorded if the mailbox still has the
/// UIDVALIDITY the intent was made under.
const SETTLE_TARGET_UID_VALID: &str = "
    SELECT coalesce(i.uidvalidity = m.uidvalidity, 0)
    FROM append_intent AS i
    LEFT JOIN target_mailbox AS m ON m.target = i.target AND m.mailbox = i.mailbox
    WHERE i.id = ?1";

/// Normally `record_seen` made the row already; the intent's hash is the
/// route's dedup key, not necessarily the content identity, so it is not
/// stored as the message's hash.
const ENSURE_SOURCE_MESSAGE: &str = "
    INSERT INTO source_message (source, uidl, first_seen_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT DO NOTHING";

/// `?7`: when the copy was seen again (an intent found in a later session),
/// else NULL (an APPEND's OK: confirmed by a later session, see 0004).
const SET_COPIED: &str = "
    INSERT INTO delivery (source, target, mailbox, uidl, state, attempts, last_error, updated_ms,
                          target_hash, confirmed_ms)
    VALUES (?1, ?2, ?3, ?4, 'copied', 0, NULL, ?5, ?6, ?7)
    ON CONFLICT DO UPDATE SET state = 'copied', last_error = NULL, updated_ms = excluded.updated_ms,
        target_hash = excluded.target_hash, confirmed_ms = excluded.confirmed_ms";

const DELETE_INTENT: &str = "DELETE FROM append_intent WHERE id = ?1";

impl Ledger {
    /// Commits intents for the APPENDs about to be sent, in one durable
    /// transaction; returns their ids in the same order.
    pub fn add_intents(&mut self, intents: &[NewIntent<'_>]) -> Result<Vec<IntentId>> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        let mut ids = Vec::with_capacity(intents.len());
        {
            let mut stmt = tx.prepare_cached(INSERT_INTENT).ctx(path, "add intent")?;
            for i in intents {
                let r = i.route;
                let id = stmt
                    .insert(params![
                        r.source,
                        i.uidl,
                        r.target,
                        r.mailbox,
                        &i.hash.0[..],
                        to_i64(i.size),
                        nz_to_sql(i.uidvalidity),
                        nz_to_sql(i.uidnext_before),
                        now
                    ])
                    .ctx(path, "add intent")?;
                ids.push(IntentId(id));
            }
        }
        tx.commit().ctx(path, "commit intents")?;
        Ok(ids)
    }

    /// Records APPENDs the server acknowledged (with the UID from APPENDUID
    /// when offered), in one durable transaction: per intent, the target
    /// message is recorded, the delivery becomes `copied`, the intent is
    /// dropped. An unknown id fails the whole batch and changes nothing.
    /// `seen_again`: the copies were found in a session opened after the
    /// one that appended them (intent resolution), so they are durable;
    /// otherwise they wait for [`Ledger::confirm_copies`].
    pub fn settle_appended(
        &mut self,
        appended: &[(IntentId, Option<NonZeroU32>)],
        seen_again: bool,
    ) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        for &(id, uid) in appended {
            let intent = tx
                .query_row(
                    &format!("SELECT {INTENT_COLUMNS} FROM append_intent WHERE id = ?1"),
                    [id.0],
                    read_intent,
                )
                .optional()
                .ctx(path, "settle intent")?
                .ok_or_else(|| LedgerError::Misuse {
                    path: path.clone(),
                    detail: format!("no append intent {}", id.0),
                })?
                .into_intent(path)?;
            let uid_valid: bool = tx
                .query_row(SETTLE_TARGET_UID_VALID, [id.0], |row| row.get(0))
                .ctx(path, "settle intent")?;
            let (r, hash, size) = (&intent.route, &intent.hash.0[..], to_i64(intent.size));
            let uid = nz_to_sql(uid.filter(|_| uid_valid));
            tx.prepare_cached(UPSERT_TARGET_MESSAGE)
                .and_then(|mut s| s.execute(params![r.target, r.mailbox, hash, uid, size, now]))
                .ctx(path, "settle intent")?;
            tx.prepare_cached(ENSURE_SOURCE_MESSAGE)
                .and_then(|mut s| s.execute(params![r.source, intent.uidl, now]))
                .ctx(path, "settle intent")?;
            let confirmed = seen_again.then_some(now);
            tx.prepare_cached(SET_COPIED)
                .and_then(|mut s| {
                    s.execute(params![
                        r.source,
                        r.target,
                        r.mailbox,
                        intent.uidl,
                        now,
                        hash,
                        confirmed
                    ])
                })
                .ctx(path, "settle intent")?;
            tx.prepare_cached(DELETE_INTENT)
                .and_then(|mut s| s.execute([id.0]))
                .ctx(path, "settle intent")?;
        }
        tx.commit().ctx(path, "commit settled appends")
    }

    /// Intents left for this mailbox (after a crash or a failed APPEND),
    /// oldest first: resolve them before new work.
    pub fn pending_intents(&self, target: &str, mailbox: &str) -> Result<Vec<Intent>> {
        let path = &self.path;
        let sql = format!(
            "SELECT {INTENT_COLUMNS} FROM append_intent WHERE target = ?1 AND mailbox = ?2 ORDER BY id"
        );
        let mut stmt = self.conn.prepare_cached(&sql).ctx(path, "list intents")?;
        let rows = stmt
            .query_map(params![target, mailbox], read_intent)
            .ctx(path, "list intents")?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.ctx(path, "list intents")?.into_intent(path)?);
        }
        Ok(out)
    }

    /// Drops an intent whose APPEND is known not to have happened (resolved
    /// against the mailbox, or refused with NO). Returns whether it existed.
    pub fn drop_intent(&mut self, id: IntentId) -> Result<bool> {
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        let n = tx.execute(DELETE_INTENT, [id.0]).ctx(path, "drop intent")?;
        tx.commit().ctx(path, "commit dropped intent")?;
        Ok(n > 0)
    }
}

/// An intent row before its values are checked.
struct RawIntent {
    id: i64,
    route: RouteKey,
    uidl: String,
    hash: Vec<u8>,
    size: i64,
    uidvalidity: Option<i64>,
    uidnext_before: Option<i64>,
    created_ms: i64,
}

/// Reads the [`INTENT_COLUMNS`].
fn read_intent(row: &Row<'_>) -> rusqlite::Result<RawIntent> {
    Ok(RawIntent {
        id: row.get(0)?,
        route: RouteKey::new(
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ),
        uidl: row.get(4)?,
        hash: row.get(5)?,
        size: row.get(6)?,
        uidvalidity: row.get(7)?,
        uidnext_before: row.get(8)?,
        created_ms: row.get(9)?,
    })
}

impl RawIntent {
    fn into_intent(self, path: &std::path::Path) -> Result<Intent> {
        Ok(Intent {
            id: IntentId(self.id),
            route: self.route,
            uidl: self.uidl,
            hash: hash_from_blob(path, &self.hash)?,
            size: to_u64(path, self.size)?,
            uidvalidity: nz_from_sql(path, self.uidvalidity)?,
            uidnext_before: nz_from_sql(path, self.uidnext_before)?,
            created: time_from_ms(self.created_ms),
        })
    }
}
