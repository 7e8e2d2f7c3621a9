-- The fingerprint of the master key (a keyed hash of a fixed string under it, never the key):
-- checked at every start, so a lost or replaced `keys/master.key` stops the service with an
-- error instead of a new key being used on data sealed with the old one. One row at most.
CREATE TABLE key_check (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint  BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);
