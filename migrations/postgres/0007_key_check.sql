-- PostgreSQL translation of migrations/sqlite/0007_key_check.sql (see there). Shared by every
-- node: a node whose master key differs from the one recorded here refuses to start.
CREATE TABLE key_check (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
