//! Per target mailbox: UIDVALIDITY and the identity hashes it holds.

use std::collections::HashSet;
use std::num::NonZeroU32;

use rusqlite::{params, OptionalExtension};

use super::error::{Context, Result};
use super::sql::{hash_from_blob, nz_from_sql, nz_to_sql, to_i64, to_u64};
use super::types::{TargetMessage, UidValidityChange};
use super::{read_tx, write_tx, Ledger};
use crate::message::Hash;

const GET_UIDVALIDITY: &str =
    "SELECT uidvalidity FROM target_mailbox WHERE target = ?1 AND mailbox = ?2";

const SET_UIDVALIDITY: &str = "
    INSERT INTO target_mailbox (target, mailbox, uidvalidity, updated_ms) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT DO UPDATE SET uidvalidity = excluded.uidvalidity, updated_ms = excluded.updated_ms";

/// A renumbered mailbox was recreated or rebuilt: what the ledger recorded
/// of the old one says nothing about the new one (trusting it would make a
/// message "duplicate" of a copy that is gone). The engine reconciles the
/// new mailbox and records what it finds.
const FORGET_MAILBOX: &str = "DELETE FROM target_message WHERE target = ?1 AND mailbox = ?2";

/// The copies settled into a renumbered mailbox may be gone with the old
/// mailbox: their source messages (those still on the source) are to be
/// decided again, so they are downloaded, found on the new mailbox or
/// copied again — and never deleted from the source on the word of a copy
/// that may no longer exist.
const RECHECK_DELIVERIES: &str = "
    UPDATE delivery SET state = 'seen', updated_ms = ?3
    WHERE target = ?1 AND mailbox = ?2
      AND (state = 'duplicate' OR (state = 'copied' AND target_hash IS NULL))
      AND EXISTS (SELECT 1 FROM source_message AS s
                  WHERE s.source = delivery.source AND s.uidl = delivery.uidl
                    AND s.deleted_ms IS NULL)";

/// Copies whose dedup key is known (made since ledger version 4) need not
/// be downloaded again: they are to be seen again on the renumbered mailbox
/// by content (see `sync::confirm`), found ones confirmed, missing ones
/// copied again a bounded number of times, altered ones kept on the source.
const RECONFIRM_COPIES: &str = "
    UPDATE delivery SET confirmed_ms = NULL, updated_ms = ?3
    WHERE target = ?1 AND mailbox = ?2 AND state = 'copied' AND target_hash IS NOT NULL
      AND EXISTS (SELECT 1 FROM source_message AS s
                  WHERE s.source = delivery.source AND s.uidl = delivery.uidl
                    AND s.deleted_ms IS NULL)";

/// A new UID or size replaces the recorded one; an unknown one keeps it.
pub(crate) const UPSERT_TARGET_MESSAGE: &str = "
    INSERT INTO target_message (target, mailbox, hash, uid, size, recorded_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT DO UPDATE SET
        uid = coalesce(excluded.uid, uid),
        size = coalesce(excluded.size, size),
        recorded_ms = excluded.recorded_ms";

const HAS_HASH: &str =
    "SELECT 1 FROM target_message WHERE target = ?1 AND mailbox = ?2 AND hash = ?3";

/// CROSS JOIN keeps the list outer: one primary-key probe per hash.
const HASHES_PRESENT: &str = "
    SELECT t.hash FROM json_each(?3) AS j
    CROSS JOIN target_message AS t
      ON t.target = ?1 AND t.mailbox = ?2 AND t.hash = unhex(j.value)";

const TARGET_MESSAGES: &str = "
    SELECT hash, uid, size FROM target_message
    WHERE target = ?1 AND mailbox = ?2 ORDER BY uid IS NULL, uid, hash";

const COPIES_INTO: &str =
    "SELECT count(*) FROM delivery WHERE target = ?1 AND mailbox = ?2 AND state = 'copied'";

const HIGHEST_UID: &str = "SELECT max(uid) FROM target_message WHERE target = ?1 AND mailbox = ?2";

impl Ledger {
    /// The highest UID recorded on the mailbox (under its current
    /// UIDVALIDITY), if any: what lies above it the ledger does not know.
    pub fn highest_uid(&self, target: &str, mailbox: &str) -> Result<Option<NonZeroU32>> {
        let path = &self.path;
        let top: Option<i64> = self
            .conn
            .query_row(HIGHEST_UID, params![target, mailbox], |row| row.get(0))
            .ctx(path, "read the highest UID")?;
        nz_from_sql(path, top)
    }

    /// The last UIDVALIDITY recorded for the mailbox.
    pub fn uidvalidity(&self, target: &str, mailbox: &str) -> Result<Option<NonZeroU32>> {
        let path = &self.path;
        let value: Option<Option<i64>> = self
            .conn
            .query_row(GET_UIDVALIDITY, params![target, mailbox], |row| row.get(0))
            .optional()
            .ctx(path, "read UIDVALIDITY")?;
        nz_from_sql(path, value.flatten())
    }

    /// Records the UIDVALIDITY a SELECT returned. When it differs from the
    /// recorded one, everything recorded of the mailbox's messages is
    /// forgotten (the mailbox was recreated: its UIDs name other messages and
    /// its old content may be gone), and the deliveries into it whose source
    /// message is still on the source are to be decided again; the caller
    /// reconciles the mailbox, as [`UidValidityChange::Changed`] asks.
    pub fn set_uidvalidity(
        &mut self,
        target: &str,
        mailbox: &str,
        uidvalidity: NonZeroU32,
    ) -> Result<UidValidityChange> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        let old: Option<Option<i64>> = tx
            .query_row(GET_UIDVALIDITY, params![target, mailbox], |row| row.get(0))
            .optional()
            .ctx(path, "read UIDVALIDITY")?;
        let change = match nz_from_sql(path, old.flatten())? {
            None => UidValidityChange::First,
            Some(old) if old == uidvalidity => return Ok(UidValidityChange::Unchanged),
            Some(old) => UidValidityChange::Changed { old },
        };
        tx.execute(
            SET_UIDVALIDITY,
            params![target, mailbox, uidvalidity.get(), now],
        )
        .ctx(path, "record UIDVALIDITY")?;
        if matches!(change, UidValidityChange::Changed { .. }) {
            tx.execute(FORGET_MAILBOX, params![target, mailbox])
                .ctx(path, "forget the renumbered mailbox")?;
            tx.execute(RECHECK_DELIVERIES, params![target, mailbox, now])
                .ctx(path, "recheck the deliveries into the renumbered mailbox")?;
            tx.execute(RECONFIRM_COPIES, params![target, mailbox, now])
                .ctx(path, "recheck the copies in the renumbered mailbox")?;
        }
        tx.commit().ctx(path, "commit UIDVALIDITY")?;
        Ok(change)
    }

    /// Records messages found on a target mailbox (reconcile), in one
    /// transaction. UIDs are taken as valid under the mailbox's recorded
    /// UIDVALIDITY: call [`Ledger::set_uidvalidity`] first.
    pub fn record_target_messages(
        &mut self,
        target: &str,
        mailbox: &str,
        messages: &[TargetMessage],
    ) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        {
            let mut stmt = tx
                .prepare_cached(UPSERT_TARGET_MESSAGE)
                .ctx(path, "record target messages")?;
            for m in messages {
                stmt.execute(params![
                    target,
                    mailbox,
                    &m.hash.0[..],
                    nz_to_sql(m.uid),
                    m.size.map(to_i64),
                    now
                ])
                .ctx(path, "record target messages")?;
            }
        }
        tx.commit().ctx(path, "commit target messages")
    }

    /// Is a message with this identity on the mailbox? (A primary-key lookup.)
    pub fn has_hash(&self, target: &str, mailbox: &str, hash: &Hash) -> Result<bool> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(HAS_HASH)
            .ctx(path, "look up hash")?;
        stmt.exists(params![target, mailbox, &hash.0[..]])
            .ctx(path, "look up hash")
    }

    /// Which of `hashes` are on the mailbox, in one statement.
    pub fn hashes_present(
        &self,
        target: &str,
        mailbox: &str,
        hashes: &[Hash],
    ) -> Result<HashSet<Hash>> {
        let path = &self.path;
        let hex: Vec<String> = hashes.iter().map(Hash::to_hex).collect();
        let mut stmt = self
            .conn
            .prepare_cached(HASHES_PRESENT)
            .ctx(path, "look up hashes")?;
        let rows = stmt
            .query_map(
                params![target, mailbox, super::sql::json_strings(&hex)],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .ctx(path, "look up hashes")?;
        let mut present = HashSet::new();
        for blob in rows {
            present.insert(hash_from_blob(path, &blob.ctx(path, "look up hashes")?)?);
        }
        Ok(present)
    }

    /// How many messages mailferry copied into the mailbox (as deliveries),
    /// for `verify` to tell "nothing to check" from "nothing copied".
    pub fn copies_into(&self, target: &str, mailbox: &str) -> Result<u64> {
        let path = &self.path;
        let n: i64 = self
            .conn
            .query_row(COPIES_INTO, params![target, mailbox], |row| row.get(0))
            .ctx(path, "count copies")?;
        to_u64(path, n)
    }

    /// Everything the ledger believes is on the mailbox, by UID (unknown UIDs
    /// last), for `verify`.
    pub fn target_messages(&self, target: &str, mailbox: &str) -> Result<Vec<TargetMessage>> {
        let path = &self.path;
        let tx = read_tx(&self.conn, path)?;
        let mut stmt = tx
            .prepare_cached(TARGET_MESSAGES)
            .ctx(path, "list target messages")?;
        let mut rows = stmt
            .query(params![target, mailbox])
            .ctx(path, "list target messages")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().ctx(path, "list target messages")? {
            let blob: Vec<u8> = row.get(0).ctx(path, "list target messages")?;
            let uid: Option<i64> = row.get(1).ctx(path, "list target messages")?;
            let size: Option<i64> = row.get(2).ctx(path, "list target messages")?;
            out.push(TargetMessage {
                hash: hash_from_blob(path, &blob)?,
                uid: nz_from_sql(path, uid)?,
                size: size.map(|s| to_u64(path, s)).transpose()?,
            });
        }
        Ok(out)
    }
}
