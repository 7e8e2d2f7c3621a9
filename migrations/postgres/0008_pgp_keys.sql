-- PostgreSQL translation of migrations/sqlite/0008_pgp_keys.sql (see there).
ALTER TABLE aliases ADD COLUMN pgp_sealed BYTEA;
ALTER TABLE pending ADD COLUMN pgp_sealed BYTEA;
ALTER TABLE pending DROP CONSTRAINT pending_kind_check;
ALTER TABLE pending ADD CONSTRAINT pending_kind_check CHECK (kind IN ('register', 'remove', 'key'));
