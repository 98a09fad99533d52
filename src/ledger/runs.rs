//! Runs (one pass of one route) and the per-route summary `status` prints.

use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::error::{Context, Result};
use super::sql::{bad_row, time_from_ms, to_i64, to_u64};
use super::types::{
    DeliveryState, Outstanding, RouteKey, RouteStatus, RunCounts, RunId, RunRecord, StateCounts,
};
use super::{read_tx, write_tx, Ledger};

const START_RUN: &str =
    "INSERT INTO run (source, target, mailbox, started_ms) VALUES (?1, ?2, ?3, ?4)";

const FINISH_RUN: &str = "
    UPDATE run SET finished_ms = ?2, copied = ?3, duplicates = ?4, skipped = ?5,
        failed = ?6, deleted = ?7, bytes = ?8, error = ?9
    WHERE id = ?1";

const STATE_COUNTS: &str = "
    SELECT state, count(*) FROM delivery
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3 GROUP BY state";

const DELETED_COUNT: &str = "
    SELECT count(*) FROM delivery AS d
    JOIN source_message AS s ON s.source = d.source AND s.uidl = d.uidl
    WHERE d.source = ?1 AND d.target = ?2 AND d.mailbox = ?3 AND s.deleted_ms IS NOT NULL";

const PENDING_INTENTS: &str = "
    SELECT count(*) FROM append_intent WHERE source = ?1 AND target = ?2 AND mailbox = ?3";

const LAST_RUN: &str = "
    SELECT id, started_ms, finished_ms, copied, duplicates, skipped, failed, deleted, bytes, error
    FROM run WHERE source = ?1 AND target = ?2 AND mailbox = ?3 ORDER BY id DESC LIMIT 1";

/// Messages of a route not copied (failed, whatever the attempts, or
/// skipped) that are still on the source as far as the ledger knows.
const OUTSTANDING: &str = "
    FROM delivery AS d
    JOIN source_message AS s ON s.source = d.source AND s.uidl = d.uidl
    WHERE d.source = ?1 AND d.target = ?2 AND d.mailbox = ?3
      AND d.state IN ('failed', 'skipped')
      AND s.deleted_ms IS NULL AND s.retired_ms IS NULL";

const LAST_MESSAGE_ERROR: &str = "
    SELECT last_error FROM delivery
    WHERE source = ?1 AND target = ?2 AND mailbox = ?3
      AND state IN ('failed', 'skipped') AND last_error IS NOT NULL
    ORDER BY updated_ms DESC LIMIT 1";

impl Ledger {
    /// Records the start of a pass of `route`.
    pub fn start_run(&mut self, route: &RouteKey) -> Result<RunId> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(
            START_RUN,
            params![route.source, route.target, route.mailbox, now],
        )
        .ctx(path, "start run")?;
        let id = RunId(tx.last_insert_rowid());
        tx.commit().ctx(path, "commit run start")?;
        Ok(id)
    }

    /// Records the end of a pass: what it did, and why it stopped early if it did.
    pub fn finish_run(&mut self, id: RunId, counts: &RunCounts, error: Option<&str>) -> Result<()> {
        let now = self.now_ms();
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        let c = counts;
        tx.execute(
            FINISH_RUN,
            params![
                id.0,
                now,
                to_i64(c.copied),
                to_i64(c.duplicates),
                to_i64(c.skipped),
                to_i64(c.failed),
                to_i64(c.deleted),
                to_i64(c.bytes),
                error
            ],
        )
        .ctx(path, "finish run")?;
        tx.commit().ctx(path, "commit run end")
    }

    /// Counts per state, pending intents, the last run and the last message
    /// error of `route`, from one consistent snapshot.
    pub fn route_status(&self, route: &RouteKey) -> Result<RouteStatus> {
        let path = &self.path;
        let tx = read_tx(&self.conn, path)?;
        let key = params![route.source, route.target, route.mailbox];
        let states = state_counts(&tx, self, route)?;
        let pending: i64 = tx
            .query_row(PENDING_INTENTS, key, |r| r.get(0))
            .ctx(path, "count intents")?;
        let last_run = tx
            .query_row(LAST_RUN, key, read_run)
            .optional()
            .ctx(path, "read last run")?;
        let last_message_error = tx
            .query_row(LAST_MESSAGE_ERROR, key, |r| r.get(0))
            .optional()
            .ctx(path, "read last error")?;
        let outstanding: i64 = tx
            .query_row(&format!("SELECT count(*) {OUTSTANDING}"), key, |r| r.get(0))
            .ctx(path, "count outstanding")?;
        Ok(RouteStatus {
            route: route.clone(),
            states,
            pending_intents: to_u64(path, pending)?,
            outstanding: to_u64(path, outstanding)?,
            last_run: last_run.map(|raw| raw.into_record(self)).transpose()?,
            last_message_error,
        })
    }

    /// The outstanding messages of `route` (see [`RouteStatus::outstanding`]),
    /// most recently tried first, at most `limit`.
    pub fn outstanding(&self, route: &RouteKey, limit: u64) -> Result<Vec<Outstanding>> {
        let path = &self.path;
        let sql = format!(
            "SELECT d.uidl, d.state, d.attempts, d.last_error, d.updated_ms, s.size, s.first_seen_ms,
                    s.summary
             {OUTSTANDING} ORDER BY d.updated_ms DESC, d.uidl LIMIT ?4"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .ctx(path, "list outstanding")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![route.source, route.target, route.mailbox, limit],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                },
            )
            .ctx(path, "list outstanding")?;
        let mut out = Vec::new();
        for row in rows {
            let (uidl, state, attempts, reason, updated, size, first, summary) =
                row.ctx(path, "list outstanding")?;
            out.push(Outstanding {
                uidl,
                state: DeliveryState::parse(&state)
                    .ok_or_else(|| bad_row(path, format!("delivery state {state:?}")))?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                reason,
                last_try: time_from_ms(updated),
                first_seen: time_from_ms(first),
                size: size.and_then(|s| u64::try_from(s).ok()),
                summary,
            });
        }
        Ok(out)
    }
}

fn state_counts(tx: &Transaction<'_>, ledger: &Ledger, route: &RouteKey) -> Result<StateCounts> {
    let path = &ledger.path;
    let key = params![route.source, route.target, route.mailbox];
    let mut counts = StateCounts::default();
    let mut stmt = tx.prepare_cached(STATE_COUNTS).ctx(path, "count states")?;
    let rows = stmt
        .query_map(key, |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ctx(path, "count states")?;
    for row in rows {
        let (state, n) = row.ctx(path, "count states")?;
        let n = to_u64(path, n)?;
        match state.as_str() {
            "seen" => counts.seen = n,
            "copied" => counts.copied = n,
            "duplicate" => counts.duplicate = n,
            "skipped" => counts.skipped = n,
            "failed" => counts.failed = n,
            other => {
                return Err(super::sql::bad_row(
                    path,
                    format!("delivery state {other:?}"),
                ))
            }
        }
    }
    let deleted: i64 = tx
        .query_row(DELETED_COUNT, key, |r| r.get(0))
        .ctx(path, "count deleted")?;
    counts.deleted = to_u64(path, deleted)?;
    Ok(counts)
}

/// A run row before its values are checked.
struct RawRun {
    id: i64,
    started_ms: i64,
    finished_ms: Option<i64>,
    counts: [i64; 6],
    error: Option<String>,
}

fn read_run(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: row.get(0)?,
        started_ms: row.get(1)?,
        finished_ms: row.get(2)?,
        counts: [
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
        ],
        error: row.get(9)?,
    })
}

impl RawRun {
    fn into_record(self, ledger: &Ledger) -> Result<RunRecord> {
        let path = &ledger.path;
        let [copied, duplicates, skipped, failed, deleted, bytes] = self.counts;
        Ok(RunRecord {
            id: RunId(self.id),
            started: time_from_ms(self.started_ms),
            finished: self.finished_ms.map(time_from_ms),
            counts: RunCounts {
                copied: to_u64(path, copied)?,
                duplicates: to_u64(path, duplicates)?,
                skipped: to_u64(path, skipped)?,
                failed: to_u64(path, failed)?,
                deleted: to_u64(path, deleted)?,
                bytes: to_u64(path, bytes)?,
            },
            error: self.error,
        })
    }
}
