-- PostgreSQL translation of migrations/sqlite/0002_bounce_tokens.sql (see there).
CREATE TABLE bounce_tokens (
    token_hash  BYTEA PRIMARY KEY NOT NULL,
    alias_id    BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    hard        BOOLEAN NOT NULL,
    counts      BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX bounce_tokens_alias ON bounce_tokens (alias_id, counts, hard);
CREATE INDEX bounce_tokens_day ON bounce_tokens (day);
