-- A data subject's rights (cases/privacy.rs): the releases of legal holds, and the record of every erasure (never
-- the number erased).
CREATE TABLE legal_hold_releases (
    case_id TEXT PRIMARY KEY,
    released_ms BIGINT NOT NULL,
    released_by TEXT NOT NULL,
    reason TEXT NOT NULL
);

CREATE TABLE privacy_erasures (
    erasure_id TEXT PRIMARY KEY,
    erased_ms BIGINT NOT NULL,
    erased_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    contacts_removed BIGINT NOT NULL,
    cases_redacted BIGINT NOT NULL
);
