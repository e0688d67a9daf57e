-- A data subject's rights (cases/privacy.rs): the releases of legal holds, and the record of every erasure (never
-- the number erased).
-- One release per hold: a case's open-case hold and, once approved, its legal-referral hold are released apart.
CREATE TABLE legal_hold_releases (
    case_id TEXT NOT NULL,
    cause TEXT NOT NULL,
    released_ms BIGINT NOT NULL,
    released_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (case_id, cause)
);

CREATE TABLE privacy_erasures (
    erasure_id TEXT PRIMARY KEY,
    erased_ms BIGINT NOT NULL,
    erased_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    contacts_removed BIGINT NOT NULL,
    cases_redacted BIGINT NOT NULL
);
