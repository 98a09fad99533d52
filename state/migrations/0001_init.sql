-- 0001_init: the first mailferry ledger schema.
--
-- One SQLite file, WAL mode, written by one process at a time (src/ledger
-- holds an OS lock on "<file>.lock"). Applied in one transaction by the
-- migration runner, which then sets PRAGMA user_version = 1 and
-- PRAGMA application_id (so a foreign SQLite file is recognised as such).
--
-- Conventions: times are unix milliseconds (INTEGER, UTC); hashes are the 32
-- raw bytes of a message identity (BLOB); names are the account names and
-- mailbox names from the config, verbatim. A "route" is
-- (source, target, mailbox): one source feeds one mailbox of one target.
-- Tables are WITHOUT ROWID where the natural key is the only lookup path, so
-- the key is the b-tree and no second index is kept.

-- One row per message a POP3 source has offered, keyed by its UIDL.
-- The UIDL is the fast path: a settled (source, uidl) is never downloaded
-- again. size/hash are NULL until the message is first downloaded (a message
-- that failed at RETR has a row but no hash).
CREATE TABLE source_message (
    source        TEXT    NOT NULL,  -- source account name
    uidl          TEXT    NOT NULL,  -- POP3 UIDL (RFC 1939), unique per maildrop
    size          INTEGER,           -- octets as downloaded (after dot-unstuffing)
    hash          BLOB    CHECK (hash IS NULL OR length(hash) = 32),
                                     -- message::identity of the message
    hash_version  INTEGER,           -- message::HASH_VERSION that computed hash
    first_seen_ms INTEGER NOT NULL,  -- when the ledger first heard of it; gates
                                     -- delete = { after_days = N }
    deleted_ms    INTEGER,           -- when the source DELE'd it (QUIT acknowledged);
                                     -- NULL while it is (as far as we know) still there
    PRIMARY KEY (source, uidl)
) WITHOUT ROWID;

-- One row per (route, source message): what happened to that message on
-- that route. A source feeding several routes has one row per route, and is
-- only deletable once every one of them is copied or duplicate.
CREATE TABLE delivery (
    source     TEXT    NOT NULL,
    target     TEXT    NOT NULL,     -- target account name
    mailbox    TEXT    NOT NULL,     -- target mailbox name (as configured)
    uidl       TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('seen', 'copied', 'duplicate', 'skipped', 'failed')),
                                     -- seen: known, not yet decided
                                     -- copied: appended by us, durable on the target
                                     -- duplicate: its hash was already on the mailbox
                                     -- skipped: deliberately not copied (reason in last_error)
                                     -- failed: tried and failed; retried until attempts >= max
    attempts   INTEGER NOT NULL DEFAULT 0,  -- failed attempts so far
    last_error TEXT,                 -- reason of the last skip or failure, for status
    updated_ms INTEGER NOT NULL,     -- last state change
    PRIMARY KEY (source, target, mailbox, uidl),
    FOREIGN KEY (source, uidl) REFERENCES source_message (source, uidl)
) WITHOUT ROWID;

-- Deletion looks deliveries up by source message across routes.
CREATE INDEX delivery_by_message ON delivery (source, uidl);

-- One row per target mailbox the ledger has selected.
CREATE TABLE target_mailbox (
    target      TEXT    NOT NULL,
    mailbox     TEXT    NOT NULL,
    uidvalidity INTEGER,             -- last UIDVALIDITY seen (RFC 3501 §2.3.1.1);
                                     -- when it changes every uid below is forgotten
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (target, mailbox)
) WITHOUT ROWID;

-- The identity keys a target mailbox holds: the truth of dedup ("is this hash
-- already there"). Filled by our APPENDs and by reconciling a mailbox the
-- ledger did not know. A message may be recorded under more than one key
-- (content identity and, for identity = "message-id" routes, that key).
CREATE TABLE target_message (
    target      TEXT    NOT NULL,
    mailbox     TEXT    NOT NULL,
    hash        BLOB    NOT NULL CHECK (length(hash) = 32),
    uid         INTEGER,             -- UID under target_mailbox.uidvalidity; NULL when
                                     -- unknown (no APPENDUID) or stale (UIDVALIDITY changed)
    size        INTEGER,             -- RFC822.SIZE on the target, when known
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (target, mailbox, hash)
) WITHOUT ROWID;

-- Append intents (DESIGN.md section 5): committed durably before an APPEND,
-- dropped in the same transaction that records its success. A row left over
-- after a crash means "this APPEND may or may not have happened": resolve it
-- against the mailbox before any new work.
CREATE TABLE append_intent (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale id can't hit a new intent
    source         TEXT    NOT NULL,  -- the delivery this append is for:
    uidl           TEXT    NOT NULL,  --   (source, target, mailbox, uidl)
    target         TEXT    NOT NULL,
    mailbox        TEXT    NOT NULL,
    hash           BLOB    NOT NULL CHECK (length(hash) = 32),
    size           INTEGER NOT NULL,  -- exact octets appended: narrows the search (LARGER/SMALLER)
    uidvalidity    INTEGER,           -- of the mailbox when the intent was made
    uidnext_before INTEGER,           -- UIDNEXT before the APPEND: candidates are UIDs >= it
    created_ms     INTEGER NOT NULL
);

CREATE INDEX append_intent_by_mailbox ON append_intent (target, mailbox);

-- One row per pass of one route, for status.
CREATE TABLE run (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    mailbox     TEXT    NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,             -- NULL while running, or if the process died
    copied      INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    deleted     INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,  -- octets appended
    error       TEXT                 -- why the pass stopped early; NULL if it completed
);

CREATE INDEX run_by_route ON run (source, target, mailbox, id);
