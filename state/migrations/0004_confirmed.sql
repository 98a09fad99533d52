-- 0004_confirmed: a copy counts as durable only once it was seen again.
--
-- A server may acknowledge an APPEND and then lose it (GNU Mailutils' imap4d
-- kept 1 of 146 acknowledged messages). A DELE from the source is allowed
-- only for a copy seen on the target in a session opened after the one that
-- appended it: confirmed_ms records when. target_hash is the route's dedup key
-- under which the copy is recorded in target_message (the content identity,
-- or the Message-ID key for identity = "message-id"), so a copy found lost
-- can be forgotten there too and made again.
ALTER TABLE delivery ADD COLUMN confirmed_ms INTEGER;  -- NULL: copied, not yet seen again
ALTER TABLE delivery ADD COLUMN target_hash BLOB CHECK (target_hash IS NULL OR length(target_hash) = 32);

-- Copies made before this version were trusted on the APPEND's OK; they
-- keep that trust rather than be checked long after (a user may have
-- deleted them on the target since, on purpose).
UPDATE delivery SET confirmed_ms = updated_ms WHERE state = 'copied';

-- A duplicate is deletable only while no copy under its dedup key waits to
-- be seen again: that lookup goes by (target, mailbox, target_hash).
CREATE INDEX delivery_by_target_hash ON delivery (target, mailbox, target_hash)
    WHERE target_hash IS NOT NULL;

-- A UIDL does not always name one message for ever (popa3d derives it from
-- headers; a message may leave the maildrop without mailferry deleting it).
-- A record whose UIDL was since seen on another message is retired: it
-- settles nothing and allows no DELE; the message now under that UIDL is
-- told apart by content.
ALTER TABLE source_message ADD COLUMN retired_ms INTEGER;

-- Date · From · Subject of a downloaded message, decoded and sanitised, so
-- `status --messages` can name a message that was not copied.
ALTER TABLE source_message ADD COLUMN summary TEXT;
