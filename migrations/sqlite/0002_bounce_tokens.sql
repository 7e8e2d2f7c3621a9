-- Failure reports that came back to a bounce address, one row per token (per message), so a
-- report counts once however often it is replayed. The token itself is not stored: `token_hash`
-- is a keyed hash of it (the key lives outside the database). `day` is the token's day; rows are
-- purged once the token has expired (14 days), when it can no longer come back.
-- `counts` is cleared when the operator reactivates the alias, so earlier bounces stop counting
-- while the rows still stop replays.
CREATE TABLE bounce_tokens (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    alias_id    INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    hard        INTEGER NOT NULL CHECK (hard IN (0, 1)),
    counts      INTEGER NOT NULL DEFAULT 1 CHECK (counts IN (0, 1))
) WITHOUT ROWID;
CREATE INDEX bounce_tokens_alias ON bounce_tokens (alias_id, counts, hard);
CREATE INDEX bounce_tokens_day ON bounce_tokens (day);
