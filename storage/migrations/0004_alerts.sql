-- Alerts (the model is wardseal-core's `alert`): one row per alert id. A clinical alert's
-- id is derived from its reading's leaf hash and the limit crossed, so the collector's
-- push (POST /v1/alerts) and the batch's rule re-check store the same row. `body` is the
-- alert as raised (JSON); the life-cycle columns beside it change.
CREATE TABLE alerts (
    id BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    ward TEXT NOT NULL,
    patient TEXT,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    escalated_at BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX alerts_patient ON alerts (patient, state);
CREATE INDEX alerts_state ON alerts (state, raised_at);

-- The FHIR ObservationInterpretation (L, H, LL, HH) of each stored reading that crossed
-- an alarm limit, with the priority of the limit and the alert it raised.
CREATE TABLE reading_interpretations (
    leaf_hash BYTEA PRIMARY KEY,
    interpretation TEXT NOT NULL,
    priority TEXT NOT NULL,
    alert_id BYTEA NOT NULL
);
