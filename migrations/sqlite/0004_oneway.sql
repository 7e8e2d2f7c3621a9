-- Recipient opt-out from one-way mail (the web form): only a keyed hash of the normalised
-- address (its own key, not the alias lookup hash), never the address.
CREATE TABLE opt_outs (
    address_hash  BLOB PRIMARY KEY NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Fixed-window send counters for the one-way form and the opt-out confirmation mails:
-- `kind` names the limit, `key` is a keyed hash of the recipient (empty for the global
-- limit), `period` the day or hour number. Rows are purged once `expires_at` has passed,
-- so no history of who received one-way mail is kept beyond the window.
CREATE TABLE send_counts (
    kind        TEXT NOT NULL,
    key         BLOB NOT NULL,
    period      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, key, period)
) WITHOUT ROWID;
CREATE INDEX send_counts_expires ON send_counts (expires_at);
