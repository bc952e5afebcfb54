-- Declared gaps in patients' chains: a batch a collector withheld (storage refused it for
-- good and the collector quarantined it), declared by a gap record the patient's current
-- card signed. The record takes the withheld batch's place in the chain (the chain tip is
-- the greater of the last batch and the last gap), so the batch after it continues.
-- `filled_at` is set when the withheld batch itself is accepted later (a resubmission).
CREATE TABLE batch_gaps (
    withheld_hash BYTEA PRIMARY KEY,
    patient TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    previous_hash BYTEA NOT NULL,
    collector TEXT NOT NULL,
    reason TEXT NOT NULL,
    declared_at BIGINT NOT NULL,
    record BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    patient_certificate BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    filled_at BIGINT,
    UNIQUE (patient, sequence)
);
