-- 0002_pause: routes paused until a provider's transfer window resets.
--
-- A route whose target's daily upload budget is spent (max_bytes_per_day, or
-- the server said OVERQUOTA) stops cleanly and is paused until the window
-- resets: `status` shows it, `run` waits for it, `sync` says until when.
CREATE TABLE route_pause (
    source    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    mailbox   TEXT    NOT NULL,
    until_ms  INTEGER NOT NULL,      -- unix ms when the route may run again
    reason    TEXT    NOT NULL,      -- for status: what was spent, and how much
    PRIMARY KEY (source, target, mailbox)
) WITHOUT ROWID;

-- Bytes appended to a target in a trailing window are summed from the runs
-- of its routes: this index keeps that sum cheap for many runs.
CREATE INDEX run_by_target_time ON run (target, started_ms);
