-- The audit chain is keyed from its first entry with scheme 2: the link is HMAC-SHA256 under [audit] chain_secret,
-- a secret kept outside the database. Entries written before keep scheme 1, their unkeyed SHA-256 link, and still
-- verify; the first keyed entry's MAC covers the last of them. Keyed entries that change a case carry the digest of
-- the case's rows after the change (its number, state, rung, decisions, incidents and their dispositions).
ALTER TABLE audit ADD COLUMN scheme BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN case_digest TEXT;
