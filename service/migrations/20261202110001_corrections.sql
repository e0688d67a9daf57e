-- Corrections of a recorded disposition (Screening.CorrectOutcome, the operator console): the contacts row holds the
-- disposition in force; each row here says what it was before, what it became, who changed it, when and why. Case
-- timelines show them; the audit entry of the same transaction ("corrected") records the change in the chain.
CREATE TABLE contact_corrections (
    correction_id    TEXT PRIMARY KEY,
    contact_id       TEXT NOT NULL,
    corrected_ms     BIGINT NOT NULL,
    from_disposition TEXT NOT NULL,
    to_disposition   TEXT NOT NULL,
    corrected_by     TEXT NOT NULL,
    role             TEXT NOT NULL,
    reason           TEXT NOT NULL
);
CREATE INDEX contact_corrections_by_contact ON contact_corrections (contact_id, corrected_ms);
