-- Aliases: the public name and the real address it stands for. The real address is sealed
-- (XChaCha20-Poly1305) and found by a keyed hash; the keys live outside the database.
-- `id` is never reused (AUTOINCREMENT), so an old bounce token never names a new member.
CREATE TABLE aliases (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    real_hash     BLOB NOT NULL UNIQUE,
    real_sealed   BLOB NOT NULL,
    display_name  TEXT,
    state         TEXT NOT NULL CHECK (state IN ('active', 'paused')),
    created_at    INTEGER NOT NULL,
    hard_bounces  INTEGER NOT NULL DEFAULT 0
);

-- Threading: Message-IDs the service issued, mapped to the (sealed) original of the other side.
CREATE TABLE thread_map (
    issued          TEXT PRIMARY KEY NOT NULL,
    original_sealed BLOB NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX thread_map_expires ON thread_map (expires_at);
