-- saring's case database: the escalation ladder's evidence, cases and audit log.
-- Portable SQL: the same migration runs on SQLite (the embedded default) and PostgreSQL (production).

-- Outcomes of contacts from a known number: the ladder's input and the cases' evidence timelines. Keyed by the
-- keyed hash of the number; the raw number is kept only on cases (evidence for the legal team).
CREATE TABLE contacts (
    contact_id    TEXT PRIMARY KEY,
    caller_key    TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    channel       TEXT NOT NULL,
    region        TEXT NOT NULL,
    disposition   TEXT NOT NULL,
    operator_id   TEXT,
    likelihood    DOUBLE PRECISION,
    model_version TEXT,
    answered      BIGINT NOT NULL,
    talk_s        DOUBLE PRECISION NOT NULL,
    recorded_ms   BIGINT NOT NULL
);
CREATE INDEX contacts_by_caller ON contacts (caller_key, at_ms);
CREATE INDEX contacts_by_region ON contacts (region, at_ms);

CREATE TABLE cases (
    case_id         TEXT PRIMARY KEY,
    caller_key      TEXT NOT NULL,
    caller_number   TEXT NOT NULL,
    rung            TEXT NOT NULL,
    state           TEXT NOT NULL,
    version         BIGINT NOT NULL,
    region          TEXT NOT NULL,
    approval        TEXT NOT NULL,
    rule            TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    timeline_from_ms BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    decided_by      TEXT,
    decided_ms      BIGINT,
    decision_reason TEXT,
    actioned_by     TEXT,
    delivered_ms    BIGINT,
    action_note     TEXT,
    reverted_by     TEXT,
    reverted_ms     BIGINT,
    revert_reason   TEXT
);
-- One open case per caller at a time, enforced by the database across replicas.
CREATE UNIQUE INDEX cases_one_open_per_caller ON cases (caller_key) WHERE state IN ('proposed', 'approved');
CREATE INDEX cases_by_caller ON cases (caller_key, created_ms);
CREATE INDEX cases_by_created ON cases (created_ms, case_id);

-- The contacts that count towards a case (its incidents).
CREATE TABLE case_incidents (
    case_id    TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (case_id, contact_id)
);
CREATE INDEX case_incidents_by_contact ON case_incidents (contact_id);

-- Append-only, hash-chained: hash = SHA-256(prev_hash || canonical entry). audit_head holds the last link, so a
-- removed tail is detected too.
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    role      TEXT NOT NULL,
    action    TEXT NOT NULL,
    case_id   TEXT,
    state     TEXT,
    reason    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_by_case ON audit (case_id, seq);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
