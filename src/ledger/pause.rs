//! Paused routes and the bytes a target received in a window: what keeps a
//! migration inside a provider's daily transfer budget across passes,
//! processes and restarts.

use std::time::{Duration, SystemTime};

use rusqlite::{params, OptionalExtension};

use super::error::{Context, Result};
use super::sql::{duration_ms, time_from_ms, to_u64};
use super::types::{RouteKey, RunId};
use super::{write_tx, Ledger};

const SET_PAUSE: &str = "
    INSERT INTO route_pause (source, target, mailbox, until_ms, reason) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (source, target, mailbox) DO UPDATE SET until_ms = excluded.until_ms, reason = excluded.reason";

const CLEAR_PAUSE: &str =
    "DELETE FROM route_pause WHERE source = ?1 AND target = ?2 AND mailbox = ?3";

const GET_PAUSE: &str =
    "SELECT until_ms, reason FROM route_pause WHERE source = ?1 AND target = ?2 AND mailbox = ?3";

const DOWNLOADED_SINCE: &str = "
    SELECT coalesce(sum(downloaded), 0), min(started_ms) FROM run
    WHERE source = ?1 AND started_ms >= ?2 AND downloaded > 0";

const SET_DOWNLOADED: &str = "UPDATE run SET downloaded = ?2 WHERE id = ?1";

const BYTES_SINCE: &str = "
    SELECT coalesce(sum(bytes), 0), min(started_ms) FROM run
    WHERE target = ?1 AND started_ms >= ?2 AND bytes > 0";

/// A route's pause: until when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub until: SystemTime,
    pub reason: String,
}

/// What a target received in a trailing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUse {
    pub bytes: u64,
    /// When the oldest of those runs started: the window frees up from then
    /// plus the window's length.
    pub oldest: Option<SystemTime>,
}

impl Ledger {
    /// Pauses `route` until `until`, replacing an earlier pause.
    pub fn set_pause(&mut self, route: &RouteKey, until: SystemTime, reason: &str) -> Result<()> {
        let path = &self.path;
        let until_ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, duration_ms);
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(
            SET_PAUSE,
            params![route.source, route.target, route.mailbox, until_ms, reason],
        )
        .ctx(path, "pause route")?;
        tx.commit().ctx(path, "commit pause")
    }

    /// Lifts a pause (after the route ran again).
    pub fn clear_pause(&mut self, route: &RouteKey) -> Result<()> {
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(
            CLEAR_PAUSE,
            params![route.source, route.target, route.mailbox],
        )
        .ctx(path, "clear pause")?;
        tx.commit().ctx(path, "commit pause")
    }

    /// The route's pause, if it has one (past or not: the caller compares).
    pub fn pause(&self, route: &RouteKey) -> Result<Option<Pause>> {
        let path = &self.path;
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                GET_PAUSE,
                params![route.source, route.target, route.mailbox],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .ctx(path, "read pause")?;
        Ok(row.map(|(ms, reason)| Pause {
            until: time_from_ms(ms),
            reason,
        }))
    }

    /// Records the bytes a run downloaded from its source.
    pub fn record_downloaded(&mut self, run: RunId, bytes: u64) -> Result<()> {
        let path = &self.path;
        let tx = write_tx(&mut self.conn, path)?;
        tx.execute(SET_DOWNLOADED, params![run.0, super::sql::to_i64(bytes)])
            .ctx(path, "record bytes downloaded")?;
        tx.commit().ctx(path, "commit bytes downloaded")
    }

    /// Bytes downloaded from `source` by runs that started in the last
    /// `window`.
    pub fn downloaded_within(&self, source: &str, window: Duration) -> Result<WindowUse> {
        let path = &self.path;
        let since = self.now_ms().saturating_sub(duration_ms(window));
        let (bytes, oldest): (i64, Option<i64>) = self
            .conn
            .query_row(DOWNLOADED_SINCE, params![source, since], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ctx(path, "sum bytes downloaded")?;
        Ok(WindowUse {
            bytes: to_u64(path, bytes)?,
            oldest: oldest.map(time_from_ms),
        })
    }

    /// Bytes appended to `target` (over all its mailboxes) by runs that
    /// started in the last `window`.
    pub fn appended_within(&self, target: &str, window: Duration) -> Result<WindowUse> {
        let path = &self.path;
        let since = self.now_ms().saturating_sub(duration_ms(window));
        let (bytes, oldest): (i64, Option<i64>) = self
            .conn
            .query_row(BYTES_SINCE, params![target, since], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ctx(path, "sum bytes appended")?;
        Ok(WindowUse {
            bytes: to_u64(path, bytes)?,
            oldest: oldest.map(time_from_ms),
        })
    }
}
