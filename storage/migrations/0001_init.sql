-- One schema for SQLite and PostgreSQL: only BIGINT, TEXT and BYTEA (SQLite stores blobs
-- unchanged in a BYTEA column), no auto-increment (ids are assigned by the server).

-- Accepted batches: the signed header, its signature and the patient certificate.
CREATE TABLE batches (
    header_hash BYTEA PRIMARY KEY,
    patient TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    collector TEXT NOT NULL,
    header BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    patient_certificate BYTEA NOT NULL,
    reading_count BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (patient, sequence)
);

-- Readings: canonical bytes, leaf hash and position in their batch's Merkle tree.
CREATE TABLE readings (
    batch_hash BYTEA NOT NULL REFERENCES batches (header_hash),
    position BIGINT NOT NULL,
    leaf_hash BYTEA NOT NULL,
    patient TEXT NOT NULL,
    device TEXT NOT NULL,
    data_type BIGINT NOT NULL,
    measured_at BIGINT NOT NULL,
    canonical BYTEA NOT NULL,
    PRIMARY KEY (batch_hash, position)
);
CREATE INDEX readings_leaf ON readings (leaf_hash);
CREATE INDEX readings_patient_time ON readings (patient, measured_at);
CREATE INDEX readings_device_type_time ON readings (device, data_type, measured_at);

-- Refused batches: what and why, never their readings.
CREATE TABLE rejections (
    received_at BIGINT NOT NULL,
    collector TEXT NOT NULL,
    patient TEXT,
    sequence BIGINT,
    header_hash BYTEA,
    code TEXT NOT NULL,
    message TEXT NOT NULL
);

-- Admissions (one row per patient stay; discharged_at set on discharge).
CREATE TABLE admissions (
    patient TEXT PRIMARY KEY,
    ward TEXT NOT NULL,
    room TEXT NOT NULL,
    bed TEXT NOT NULL,
    account BYTEA,
    admitted_at BIGINT NOT NULL,
    discharged_at BIGINT
);

CREATE TABLE device_assignments (
    device TEXT NOT NULL,
    patient TEXT NOT NULL,
    ward TEXT NOT NULL,
    since BIGINT NOT NULL,
    until BIGINT,
    PRIMARY KEY (device, since)
);
CREATE INDEX device_assignments_ward ON device_assignments (ward);

CREATE TABLE staff_assignments (
    staff TEXT NOT NULL,
    patient TEXT NOT NULL,
    duty TEXT NOT NULL,
    since BIGINT NOT NULL,
    until BIGINT,
    PRIMARY KEY (staff, patient, since)
);

-- The Ethereum account a staff member (or lab) is known by in Consent.
CREATE TABLE staff_accounts (
    staff TEXT PRIMARY KEY,
    account BYTEA NOT NULL
);

-- Every access to patient data, allowed or not; entries are leaves of anchored Merkle trees.
CREATE TABLE access_log (
    entry BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    patient TEXT NOT NULL,
    what TEXT NOT NULL,
    allowed BIGINT NOT NULL,
    reason TEXT NOT NULL,
    leaf_hash BYTEA NOT NULL
);

CREATE TABLE access_anchors (
    first_entry BIGINT PRIMARY KEY,
    last_entry BIGINT NOT NULL,
    root BYTEA NOT NULL,
    anchored_at BIGINT NOT NULL
);
