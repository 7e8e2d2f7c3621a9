-- PostgreSQL translation of migrations/sqlite/0005_send_log.sql (see there).
CREATE TABLE send_log (
    queue_id         TEXT PRIMARY KEY NOT NULL,
    at               BIGINT NOT NULL,
    sender_alias     TEXT NOT NULL,
    recipient_alias  TEXT NOT NULL,
    size             BIGINT NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('queued', 'delivered', 'failed', 'expired'))
);
CREATE INDEX send_log_at ON send_log (at);
