-- PostgreSQL translation of migrations/sqlite/0004_oneway.sql (see there).
CREATE TABLE opt_outs (
    address_hash  BYTEA PRIMARY KEY NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE send_counts (
    kind        TEXT NOT NULL,
    key         BYTEA NOT NULL,
    period      BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, key, period)
);
CREATE INDEX send_counts_expires ON send_counts (expires_at);
