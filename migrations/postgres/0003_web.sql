-- PostgreSQL translation of migrations/sqlite/0003_web.sql (see there).
CREATE TABLE pending (
    token_hash    BYTEA PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('register', 'remove')),
    alias         TEXT NOT NULL,
    real_hash     BYTEA NOT NULL,
    real_sealed   BYTEA NOT NULL,
    display_name  TEXT,
    expires_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX pending_register_alias ON pending (alias) WHERE kind = 'register';
CREATE INDEX pending_expires ON pending (expires_at);

CREATE TABLE removed_aliases (
    name        TEXT PRIMARY KEY NOT NULL,
    removed_at  BIGINT NOT NULL
);

CREATE TABLE mail_counts (
    key         BYTEA PRIMARY KEY NOT NULL,
    count       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

ALTER TABLE thread_map ADD COLUMN alias_id BIGINT;
CREATE INDEX thread_map_alias ON thread_map (alias_id);
