-- Self-service on the web (ARCHITECTURE.md §5): confirmation links, names never given out
-- again, and the per-address count of confirmation mails.

-- A registration or removal waiting for its link to be followed. Only a keyed hash of the
-- token is stored; a pending registration holds its alias name until it expires.
CREATE TABLE pending (
    token_hash    BLOB PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('register', 'remove')),
    alias         TEXT NOT NULL,
    real_hash     BLOB NOT NULL,
    real_sealed   BLOB NOT NULL,
    display_name  TEXT,
    expires_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX pending_register_alias ON pending (alias) WHERE kind = 'register';
CREATE INDEX pending_expires ON pending (expires_at);

-- Alias names that were removed: never given to anyone else, so old correspondents cannot
-- reach a stranger. Aliases are public, so the plain name is kept.
CREATE TABLE removed_aliases (
    name        TEXT PRIMARY KEY NOT NULL,
    removed_at  INTEGER NOT NULL
);

-- Confirmation mails per address and day, keyed by an HMAC of (day, address).
CREATE TABLE mail_counts (
    key         BLOB PRIMARY KEY NOT NULL,
    count       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Thread links name the alias that wrote the original, so removing an alias removes them.
-- (Links recorded before this migration have none and expire with privacy.thread_map_days.)
ALTER TABLE thread_map ADD COLUMN alias_id INTEGER;
CREATE INDEX thread_map_alias ON thread_map (alias_id);
