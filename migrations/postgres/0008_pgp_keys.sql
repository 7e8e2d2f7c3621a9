-- PostgreSQL translation of migrations/sqlite/0008_pgp_keys.sql (see there).
ALTER TABLE aliases ADD COLUMN pgp_sealed BYTEA;
ALTER TABLE pending ADD COLUMN pgp_sealed BYTEA;
