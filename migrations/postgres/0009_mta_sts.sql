-- PostgreSQL translation of migrations/sqlite/0009_mta_sts.sql (see there). Shared by every
-- node: a node that meets a domain first reads the policy another node fetched.
CREATE TABLE mta_sts_policies (
    domain_hash  BYTEA PRIMARY KEY NOT NULL,
    sealed       BYTEA NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires_at);
