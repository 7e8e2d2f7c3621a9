-- The optional send log (`privacy.send_log`, off by default): one row per remailed message
-- (per recipient spool entry). Aliases only, never a real address. `outcome` starts as
-- 'queued' and is set when delivery ends. Rows older than `privacy.send_log_days` are purged.
CREATE TABLE send_log (
    queue_id         TEXT PRIMARY KEY NOT NULL,
    at               INTEGER NOT NULL,
    sender_alias     TEXT NOT NULL,
    recipient_alias  TEXT NOT NULL,
    size             INTEGER NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('queued', 'delivered', 'failed', 'expired'))
);
CREATE INDEX send_log_at ON send_log (at);
