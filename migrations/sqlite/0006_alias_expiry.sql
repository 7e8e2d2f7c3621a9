-- Expiring aliases: `expires_at` (Unix seconds, NULL = never). An expired alias is retired like
-- a removal; `removed_aliases.expired` says it went by expiry, so RCPT can say so.
-- A pending web registration carries the chosen lifetime (seconds) until it is confirmed.
ALTER TABLE aliases ADD COLUMN expires_at INTEGER;
CREATE INDEX aliases_expires ON aliases (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE pending ADD COLUMN lifetime INTEGER;
ALTER TABLE removed_aliases ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
