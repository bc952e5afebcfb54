-- Visits recorded by authorities (seed 2's layer 2: laboratories, insurers, pharmacies,
-- other hospitals) with the patient's on-chain consent: one row per visit, numbered by the
-- server from 1 (FHIR Encounter `visit-<n>`). `organisation` is the registry's
-- organisation the certificate `subject` acted for when the visit was recorded, `kind`
-- its kind; `class` is the v3 ActCode encounter class (AMB, VR, HH, FLD, EMER).
CREATE TABLE visits (
    visit BIGINT PRIMARY KEY,
    patient TEXT NOT NULL,
    organisation TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    reason TEXT,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX visits_patient ON visits (patient, started_at);
