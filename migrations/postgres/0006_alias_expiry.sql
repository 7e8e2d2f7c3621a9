-- PostgreSQL translation of migrations/sqlite/0006_alias_expiry.sql (see there).
ALTER TABLE aliases ADD COLUMN expires_at BIGINT;
CREATE INDEX aliases_expires ON aliases (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE pending ADD COLUMN lifetime BIGINT;
ALTER TABLE removed_aliases ADD COLUMN expired BOOLEAN NOT NULL DEFAULT FALSE;
