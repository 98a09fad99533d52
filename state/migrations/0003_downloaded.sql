-- 0003_downloaded: bytes downloaded from the source per run, so a source's
-- daily download budget (max_bytes_per_day on a [[source]]; Gmail documents
-- 1,250 MB of POP download a day) is kept across passes and processes, the
-- way 0002 keeps a target's upload budget.
ALTER TABLE run ADD COLUMN downloaded INTEGER NOT NULL DEFAULT 0;  -- octets RETR'd in the run

CREATE INDEX run_by_source_time ON run (source, started_ms);
