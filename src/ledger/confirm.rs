//! Copies waiting to be seen again: an APPEND's OK is not proof that a copy
//! survives (GNU Mailutils acknowledged 146 and kept 1), so a copy allows a
//! DELE from the source only once a later target session has seen it
//! (migration 0004).

use std::num::NonZeroU32;

use rusqlite::params;

use super::error::{Context, Result};
use super::sql::{hash_from_blob, json_strings, nz_from_sql, to_u64};
use super::types::RouteKey;
use super::{read_tx, write_tx, Ledger};
use crate::message::Hash;

/// A copy made on a route and not yet seen again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    pub uidl: String,
    /// The route's dedup key the copy is recorded under on the target.
    pub target_hash: Hash,
    /// Its UID on the target, when APPENDUID said.
    pub uid: Option<NonZeroU32>,
    /// Its size as appended, when known.
    pub size: Option<u64>,
}

const UNCONFIRMED: &str = "
    SELECT d.uidl, d.target_hash, t.uid, t.size FROM delivery AS d
    LEFT JOIN target_message AS t
      ON t.target = d.target AND t.mailbox = d.mailbox AND t.hash = d.target_hash
    WHERE d.source = ?1 AND d.target = ?2 AND d.mailbox = ?3
      AND d.state = 'copied' AND d.confirmed_ms IS NULL AND d.target_hash IS NOT NULL
    ORDER BY d.uidl";

const CONFIRM: &str = "
    UPDATE delivery SET confirmed_ms = ?5
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND state = 'copied'
      AND uidl IN (SELECT value FROM json_each(?4))";

/// The target record of a lost copy goes first (dedup must not find it),
/// then the delivery is to be decided again.
const FORGET_TARGET_RECORD: &str = "
    DELETE FROM target_message
    WHERE target = ?2 AND mailbox = ?3 AND hash IN (
      SELECT target_hash FROM delivery
      WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND state = 'copied'
        AND uidl IN (SELECT value FROM json_each(?4)))";

/// Counted as a failed attempt: a target that keeps altering a message
/// (GNU Mailutils cuts a message at its first NUL) gets it a bounded number
/// of times (`max_attempts`), and it is never deleted from the source.
const DECIDE_AGAIN: &str = "
    UPDATE delivery SET state = 'failed', attempts = attempts + 1, confirmed_ms = NULL,
        target_hash = NULL, updated_ms = ?5,
        last_error = 'the target acknowledged the copy, then a later session did not show it (lost or altered)'
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND state = 'copied'
      AND uidl IN (SELECT value FROM json_each(?4))";

/// A copy the target stored altered: appending it again would add another
/// altered copy. Recorded as not copied, with the reason; never deleted.
const SKIP_ALTERED: &str = "
    UPDATE delivery SET state = 'skipped', confirmed_ms = NULL, target_hash = NULL,
        updated_ms = ?5,
        last_error = 'the target stored an altered copy (acknowledged, then not found as sent); kept on the source'
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND state = 'copied'
      AND uidl IN (SELECT value FROM json_each(?4))";

impl Ledger {
    /// Copies on `route` not yet seen in a later target session.
    pub fn unconfirmed(&self, route: &RouteKey) -> Result<Vec<Unconfirmed>> {
        let path = &self.path;
        let tx = read_tx(&self.conn, path)?;
        let mut stmt = tx
            .prepare_cached(UNCONFIRMED)
            .ctx(path, "list unconfirmed")?;
        type Row = (String, Vec<u8>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = stmt
            .query_map(params![route.source, route.target, route.mailbox], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .ctx(path, "list unconfirmed")?
            .collect::<rusqlite::Result<_>>()
            .ctx(path, "list unconfirmed")?;
        rows.into_iter()
            .map(|(uidl, hash, uid, size)| {
                Ok(Unconfirmed {
                    uidl,
                    target_hash: hash_from_blob(path, &hash)?,
                    uid: nz_from_sql(path, uid)?,
                    size: size.map(|s| to_u64(path, s)).transpose()?,
                })
            })
            .collect()
    }

    /// These copies were seen again: their source messages may now be
    /// deleted (durably recorded: a DELE waits on it).
    pub fn confirm_copies<S: AsRef<str>>(&mut self, route: &RouteKey, uidls: &[S]) -> Result<()> {
        self.update_copies(route, uidls, &[CONFIRM], "confirm copies")
    }

    /// These copies are not on the target although it acknowledged them:
    /// forget them there and count a failed attempt, so they are copied
    /// again while attempts are left (and never deleted meanwhile).
    pub fn copies_lost<S: AsRef<str>>(&mut self, route: &RouteKey, uidls: &[S]) -> Result<()> {
        self.update_copies(
            route,
            uidls,
            &[FORGET_TARGET_RECORD, DECIDE_AGAIN],
            "forget lost copies",
        )
    }

    /// These copies were stored altered (see `SKIP_ALTERED`): forget them
    /// and record the messages as not copied, with the reason.
    pub fn copies_altered<S: AsRef<str>>(&mut self, route: &RouteKey, uidls: &[S]) -> Result<()> {
        self.update_copies(
            route,
            uidls,
            &[FORGET_TARGET_RECORD, SKIP_ALTERED],
            "record altered copies",
        )
    }

    fn update_copies<S: AsRef<str>>(
        &mut self,
        route: &RouteKey,
        uidls: &[S],
        statements: &[&str],
        what: &'static str,
    ) -> Result<()> {
        if uidls.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        let path = &self.path;
        let uidls = json_strings(uidls);
        let tx = write_tx(&mut self.conn, path)?;
        for sql in statements {
            let mut stmt = tx.prepare_cached(sql).ctx(path, what)?;
            if sql.contains("?5") {
                stmt.execute(params![
                    route.source,
                    route.target,
                    route.mailbox,
                    uidls,
                    now
                ])
            } else {
                stmt.execute(params![route.source, route.target, route.mailbox, uidls])
            }
            .ctx(path, what)?;
        }
        tx.commit().ctx(path, what)
    }
}
