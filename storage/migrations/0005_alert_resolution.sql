-- The end of an alert's life cycle (docs/alerts.md): who resolved it and when, with the
-- reason given. A clinician or administrator resolves through
-- POST /v1/alerts/{id}/resolve; a collector resolves its ward's technical alerts when the
-- condition clears. `raise_logged_at` is set once the raise is in the anchored access
-- log, so a repeated push of the same alert logs it once.
ALTER TABLE alerts ADD COLUMN resolved_by TEXT;
ALTER TABLE alerts ADD COLUMN resolved_at BIGINT;
ALTER TABLE alerts ADD COLUMN resolution TEXT;
ALTER TABLE alerts ADD COLUMN raise_logged_at BIGINT;
