//! Per source message and route: seen, outcomes, the settled fast path,
//! and what may be deleted from the source.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use super::error::{Context, LedgerError, Result};
use super::sql::{bad_row, duration_ms, hash_from_blob, json_strings, to_i64};
use super::types::{Delivery, DeliveryState, Outcome, RouteKey, SeenMessage};
use super::{read_tx, write_tx, Ledger};
use crate::message::{Hash, HASH_VERSION};

const INSERT_SOURCE_MESSAGE: &str = "
    INSERT INTO source_message (source, uidl, size, hash, hash_version, first_seen_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (source, uidl) DO UPDATE SET
        size = coalesce(size, excluded.size),
        hash_version = CASE WHEN hash IS NULL THEN excluded.hash_version ELSE hash_version END,
        hash = coalesce(hash, excluded.hash)";

const INSERT_SEEN_DELIVERY: &str = "
    INSERT INTO delivery (source, target, mailbox, uidl, state, attempts, updated_ms)
    VALUES (?1, ?2, ?3, ?4, 'seen', 0, ?5)
    ON CONFLICT DO NOTHING";

/// Only ever inserts a bare row: a message can fail before it is downloaded.
const ENSURE_SOURCE_MESSAGE: &str = "
    INSERT INTO source_message (source, uidl, first_seen_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT DO NOTHING";

/// A recorded copy is never downgraded: once on the target, always settled.
/// An UPDATE first, because the delivery nearly always exists (`record_seen`
/// made it): measured several times faster than an UPSERT on this table.
const UPDATE_OUTCOME: &str = "
    UPDATE delivery SET state = ?5, attempts = attempts + ?6, last_error = ?7, updated_ms = ?8,
        target_hash = ?9
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND uidl = ?4 AND state <> 'copied'";

/// For a message never seen (it failed before download); ignored when the
/// delivery exists (it is copied, or the UPDATE would have matched).
const INSERT_OUTCOME: &str = "
    INSERT INTO delivery (source, target, mailbox, uidl, state, attempts, last_error, updated_ms,
                          target_hash)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT DO NOTHING";

/// CROSS JOIN makes SQLite keep the JSON list as the outer loop, so each
/// UIDL is one primary-key probe; left to itself the planner may scan the
/// route's deliveries and rescan the list for each (quadratic).
const SETTLED: &str = "
    SELECT d.uidl FROM json_each(?4) AS j
    CROSS JOIN delivery AS d
      ON d.source = ?1 AND d.target = ?2 AND d.mailbox = ?3 AND d.uidl = j.value
    WHERE (d.state IN ('copied', 'duplicate', 'skipped')
           OR (d.state = 'failed' AND d.attempts >= ?5))
      AND NOT EXISTS (
        SELECT 1 FROM source_message AS s
        WHERE s.source = ?1 AND s.uidl = d.uidl
          AND (s.deleted_ms IS NOT NULL OR s.retired_ms IS NOT NULL))";

/// UIDLs among `?2` whose message the source deleted, or whose record was
/// retired: listed again, the UIDL names another message (popa3d derives
/// UIDLs from headers).
const DELETED_AMONG: &str = "
    SELECT s.uidl FROM json_each(?2) AS j
    CROSS JOIN source_message AS s ON s.source = ?1 AND s.uidl = j.value
    WHERE s.deleted_ms IS NOT NULL OR s.retired_ms IS NOT NULL";

/// A message told apart by content (its key holds its identity) listed
/// again after it was deleted: the same bytes under the same UIDL, back.
const REAPPEARED: &str = "
    UPDATE source_message SET deleted_ms = NULL
    WHERE source = ?1 AND uidl IN (SELECT value FROM json_each(?2)) AND deleted_ms IS NOT NULL
      AND instr(uidl, ' #') > 0";

const RETIRE: &str = "
    UPDATE source_message SET retired_ms = ?3
    WHERE source = ?1 AND uidl IN (SELECT value FROM json_each(?2)) AND retired_ms IS NULL";

const SOURCE_HASHES: &str = "
    SELECT s.uidl, s.hash, s.hash_version = ?3 FROM json_each(?2) AS j
    CROSS JOIN source_message AS s ON s.source = ?1 AND s.uidl = j.value
    WHERE s.hash IS NOT NULL";

/// `?3` is a JSON array of `[target, mailbox]` pairs: the message must be
/// copied or duplicate on every one of them.
const DELETABLE: &str = "
    SELECT s.uidl FROM source_message AS s
    WHERE s.source = ?1 AND s.deleted_ms IS NULL AND s.retired_ms IS NULL
      AND s.first_seen_ms <= ?2
      AND NOT EXISTS (
        SELECT 1 FROM json_each(?3) AS r
        WHERE NOT EXISTS (
          SELECT 1 FROM delivery AS d
          WHERE d.source = s.source AND d.uidl = s.uidl
            AND d.target = r.value ->> 0 AND d.mailbox = r.value ->> 1
            AND (
              (d.state = 'copied' AND d.confirmed_ms IS NOT NULL)
              OR (d.state = 'duplicate' AND (d.target_hash IS NULL OR (
                -- the copy it duplicates is recorded on the mailbox, and
                -- no copy of it is waiting to be seen again (or lost)
                EXISTS (SELECT 1 FROM target_message AS t
                        WHERE t.target = d.target AND t.mailbox = d.mailbox
                          AND t.hash = d.target_hash)
                AND NOT EXISTS (SELECT 1 FROM delivery AS c
                                WHERE c.target = d.target AND c.mailbox = d.mailbox
                                  AND c.target_hash = d.target_hash AND c.state = 'copied'
                                  AND c.confirmed_ms IS NULL)))))))
    ORDER BY s.uidl";

const DELIVERY: &str = "
    SELECT state, attempts, last_error FROM delivery
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 AND uidl = ?4";

const MARK_DELETED: &str = "
    UPDATE source_message SET deleted_ms = ?3
    WHERE source = ?1 AND uidl = ?2 AND deleted_ms IS NULL";

impl Ledger {
    /// Records downloaded messages (size and identity at
    /// [`HASH_VERSION`]) and their delivery on `route` as `seen`, in one
    /// transaction. A message already known keeps its first size, hash and
    /// first-seen time, and a delivery already decided keeps its state.
    pub fn record_seen(&mut self, route: &RouteKey, messages: &[SeenMessage<'_>]) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        {
            let mut message = tx
                .prepare_cached(INSERT_SOURCE_MESSAGE)
                .ctx(path, "record seen")?;
            let mut delivery = tx
                .prepare_cached(INSERT_SEEN_DELIVERY)
                .ctx(path, "record seen")?;
            for m in messages {
                message
                    .execute(params![
                        route.source,
                        m.uidl,
                        to_i64(m.size),
                        &m.hash.0[..],
                        HASH_VERSION,
                        now
                    ])
                    .ctx(path, "record seen")?;
                delivery
                    .execute(params![
                        route.source,
                        route.target,
                        route.mailbox,
                        m.uidl,
                        now
                    ])
                    .ctx(path, "record seen")?;
            }
        }
        tx.commit().ctx(path, "commit seen messages")
    }

    /// Records decisions other than "copied" for messages of `route`, in one
    /// transaction: `Duplicate`, `Skipped` with its reason, `Failed` with its
    /// reason and one more attempt. A message already copied stays copied.
    pub fn record_outcomes(
        &mut self,
        route: &RouteKey,
        outcomes: &[(&str, Outcome<'_>)],
    ) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        {
            let mut update = tx
                .prepare_cached(UPDATE_OUTCOME)
                .ctx(path, "record outcome")?;
            let mut ensure = tx
                .prepare_cached(ENSURE_SOURCE_MESSAGE)
                .ctx(path, "record outcome")?;
            let mut insert = tx
                .prepare_cached(INSERT_OUTCOME)
                .ctx(path, "record outcome")?;
            for (uidl, outcome) in outcomes {
                let (state, attempts, error, of) = match outcome {
                    Outcome::Duplicate { of } => ("duplicate", 0, None, *of),
                    Outcome::Skipped { reason } => ("skipped", 0, Some(*reason), None),
                    Outcome::Failed { reason } => ("failed", 1, Some(*reason), None),
                };
                let of = of.map(|h| h.0.to_vec());
                let values = params![
                    route.source,
                    route.target,
                    route.mailbox,
                    uidl,
                    state,
                    attempts,
                    error,
                    now,
                    of
                ];
                if update.execute(values).ctx(path, "record outcome")? == 0 {
                    ensure
                        .execute(params![route.source, uidl, now])
                        .ctx(path, "record outcome")?;
                    insert.execute(values).ctx(path, "record outcome")?;
                }
            }
        }
        tx.commit().ctx(path, "commit outcomes")
    }

    /// Which of `uidls` are settled on `route` and need no download: copied,
    /// duplicate, skipped, or failed at least `max_attempts` times, and
    /// not deleted from the source (a deleted message's UIDL listed again
    /// names another message). One
    /// statement whatever the number of UIDLs (the no-op poll of a large
    /// leave-on-server maildrop, docs/ARCHITECTURE.md, "Throughput").
    pub fn settled<S: AsRef<str>>(
        &self,
        route: &RouteKey,
        uidls: &[S],
        max_attempts: u32,
    ) -> Result<HashSet<String>> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(SETTLED)
            .ctx(path, "look up settled")?;
        let rows = stmt
            .query_map(
                params![
                    route.source,
                    route.target,
                    route.mailbox,
                    json_strings(uidls),
                    max_attempts
                ],
                |row| row.get::<_, String>(0),
            )
            .ctx(path, "look up settled")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx(path, "look up settled")
    }

    /// Which of `uidls` name a message `source` deleted already: listed
    /// again, such a UIDL belongs to another message.
    pub fn deleted_among<S: AsRef<str>>(
        &self,
        source: &str,
        uidls: &[S],
    ) -> Result<HashSet<String>> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(DELETED_AMONG)
            .ctx(path, "look up deleted")?;
        let rows = stmt
            .query_map(params![source, json_strings(uidls)], |row| {
                row.get::<_, String>(0)
            })
            .ctx(path, "look up deleted")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx(path, "look up deleted")
    }

    /// These content keys were listed again after their message was
    /// deleted: the same message is back (see `REAPPEARED`), and is handled
    /// like any other (settled, deletable) rather than downloaded anew at
    /// every pass.
    pub fn reappeared<S: AsRef<str>>(&mut self, source: &str, keys: &[S]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(REAPPEARED, params![source, json_strings(keys)])
            .ctx(path, "record reappeared messages")?;
        tx.commit().ctx(path, "record reappeared messages")
    }

    /// Records what these messages are (`Date · From · Subject`), for
    /// `status --messages`.
    pub fn record_summaries(&mut self, source: &str, summaries: &[(&str, String)]) -> Result<()> {
        if summaries.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE source_message SET summary = ?3 WHERE source = ?1 AND uidl = ?2",
                )
                .ctx(path, "record summaries")?;
            for (uidl, summary) in summaries {
                stmt.execute(params![source, uidl, summary])
                    .ctx(path, "record summaries")?;
            }
        }
        tx.commit().ctx(path, "record summaries")
    }

    /// Retires the records of these keys (see migration 0004): a UIDL now
    /// names another message.
    pub fn retire<S: AsRef<str>>(&mut self, source: &str, uidls: &[S]) -> Result<()> {
        if uidls.is_empty() {
            return Ok(());
        }
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(RETIRE, params![source, json_strings(uidls), now])
            .ctx(path, "retire UIDLs")?;
        tx.commit().ctx(path, "retire UIDLs")
    }

    /// The identity recorded for each of these keys that has one, and
    /// whether it was computed at the current [`HASH_VERSION`] (a record of
    /// an older version may differ for the same message).
    pub fn source_hashes<S: AsRef<str>>(
        &self,
        source: &str,
        uidls: &[S],
    ) -> Result<HashMap<String, (Hash, bool)>> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(SOURCE_HASHES)
            .ctx(path, "look up source hashes")?;
        let rows: Vec<(String, Vec<u8>, bool)> = stmt
            .query_map(params![source, json_strings(uidls), HASH_VERSION], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .ctx(path, "look up source hashes")?
            .collect::<rusqlite::Result<_>>()
            .ctx(path, "look up source hashes")?;
        rows.into_iter()
            .map(|(uidl, hash, current)| Ok((uidl, (hash_from_blob(path, &hash)?, current))))
            .collect()
    }

    /// UIDLs of `source` that may be deleted from it: copied or duplicate on
    /// EVERY one of `routes` (all of which must be from `source`), not yet
    /// deleted, and first seen at least `min_age` ago. No routes, no
    /// deletion.
    pub fn deletable(
        &self,
        source: &str,
        routes: &[RouteKey],
        min_age: Option<Duration>,
    ) -> Result<Vec<String>> {
        let path = &self.path;
        if let Some(other) = routes.iter().find(|r| r.source != source) {
            return Err(LedgerError::Misuse {
                path: path.clone(),
                detail: format!("deletable({source}) given route {other} of another source"),
            });
        }
        if routes.is_empty() {
            return Ok(Vec::new());
        }
        let cutoff = min_age.map_or(i64::MAX, |age| {
            self.now_ms().saturating_sub(duration_ms(age))
        });
        let pairs: Vec<[&str; 2]> = routes
            .iter()
            .map(|r| [r.target.as_str(), r.mailbox.as_str()])
            .collect();
        // Never default to "[]" here: no route would make every message deletable.
        let pairs = serde_json::to_string(&pairs).map_err(|e| LedgerError::Misuse {
            path: path.clone(),
            detail: format!("cannot encode routes: {e}"),
        })?;
        let tx = read_tx(&self.conn, path)?;
        let mut stmt = tx.prepare_cached(DELETABLE).ctx(path, "list deletable")?;
        let rows = stmt
            .query_map(params![source, cutoff, pairs], |row| {
                row.get::<_, String>(0)
            })
            .ctx(path, "list deletable")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx(path, "list deletable")
    }

    /// Records that the source deleted these messages (after its QUIT was
    /// acknowledged), in one durable transaction.
    pub fn mark_deleted<S: AsRef<str>>(&mut self, source: &str, uidls: &[S]) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        {
            let mut stmt = tx.prepare_cached(MARK_DELETED).ctx(path, "mark deleted")?;
            for uidl in uidls {
                stmt.execute(params![source, uidl.as_ref(), now])
                    .ctx(path, "mark deleted")?;
            }
        }
        tx.commit().ctx(path, "commit deletions")
    }

    /// Where one message stands on `route`; `None` if the ledger never heard of it there.
    pub fn delivery(&self, route: &RouteKey, uidl: &str) -> Result<Option<Delivery>> {
        let path = &self.path;
        let row: Option<(String, i64, Option<String>)> = self
            .conn
            .query_row(
                DELIVERY,
                params![route.source, route.target, route.mailbox, uidl],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .ctx(path, "read delivery")?;
        row.map(|(state, attempts, last_error)| {
            Ok(Delivery {
                state: DeliveryState::parse(&state)
                    .ok_or_else(|| bad_row(path, format!("delivery state {state:?}")))?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                last_error,
            })
        })
        .transpose()
    }
}
