-- The MTA-STS policy cache (RFC 8461 §5.1; src/delivery/sts_cache.rs), so a restart keeps
-- each recipient domain's policy in force for its max_age, even while the policy host is down.
-- A recipient domain identifies a member's provider: it is kept only as a keyed hash, and the
-- row's content (the domain, the TXT record's id and the policy, whose mx: lines name the
-- domain's hosts) only sealed under the master key. Rows go once expires_at (fetched_at +
-- max_age) has passed: never read after it, deleted when a policy is next stored.
CREATE TABLE mta_sts_policies (
    domain_hash  BLOB PRIMARY KEY NOT NULL,
    sealed       BLOB NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires_at);
