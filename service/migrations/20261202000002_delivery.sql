-- Delivery of an approved rung. Dispatch claims the case first (the caller's number is revealed to the claimant in
-- the claim's answer, once per claim, and the claim is audited), then reports the delivery with its channel.
-- A case's digest covers these columns once any of them is set, so the digests of cases audited before this
-- migration are unchanged.
ALTER TABLE cases ADD COLUMN claimed_by TEXT;
ALTER TABLE cases ADD COLUMN claimed_ms BIGINT;
ALTER TABLE cases ADD COLUMN delivery_channel TEXT;
