-- Erasure notices (service/src/notices.rs): an erasure or a reassignment served by one replica, told to every other
-- replica so each removes the number from what it alone holds (its journal, caches, capture files). A notice names
-- the erased history keys only by a keyed digest (HMAC(secret, "erasure-notice:" || key)), never the key or the
-- number, and is pruned once no replica can still hold what it names.
CREATE TABLE erasure_notices (
    notice_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    issued_ms BIGINT NOT NULL,
    PRIMARY KEY (notice_id, digest)
);
CREATE INDEX erasure_notices_issued ON erasure_notices (issued_ms);
