-- Encrypted delivery (OpenPGP): a member's public key, sealed like the real address
-- (XChaCha20-Poly1305 under the master key; never in clear). NULL: mail goes in clear.
ALTER TABLE aliases ADD COLUMN pgp_sealed BLOB;

-- A pending confirmation carries the key it was given (a registration's, or a key change's:
-- the new kind 'key', whose NULL key means "remove the key"). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt with its rows and indexes.
CREATE TABLE pending_new (
    token_hash    BLOB PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('register', 'remove', 'key')),
    alias         TEXT NOT NULL,
    real_hash     BLOB NOT NULL,
    real_sealed   BLOB NOT NULL,
    display_name  TEXT,
    expires_at    INTEGER NOT NULL,
    lifetime      INTEGER,
    pgp_sealed    BLOB
);
INSERT INTO pending_new (token_hash, kind, alias, real_hash, real_sealed, display_name, expires_at, lifetime)
    SELECT token_hash, kind, alias, real_hash, real_sealed, display_name, expires_at, lifetime FROM pending;
DROP TABLE pending;
ALTER TABLE pending_new RENAME TO pending;
CREATE UNIQUE INDEX pending_register_alias ON pending (alias) WHERE kind = 'register';
CREATE INDEX pending_expires ON pending (expires_at);
