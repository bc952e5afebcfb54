-- The CA: its two certificates, where their keys are, and CRL settings. One row.
CREATE TABLE ca (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    organisation TEXT NOT NULL,
    name TEXT NOT NULL,
    key_algorithm TEXT NOT NULL,
    root_certificate BLOB NOT NULL,
    issuing_certificate BLOB NOT NULL,
    -- "file:<name in the CA directory>" or a pkcs11: URI (never with a PIN).
    root_key TEXT NOT NULL,
    issuing_key TEXT NOT NULL,
    crl_url TEXT,
    crl_days INTEGER NOT NULL,
    crl_number INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) STRICT;

-- Every certificate the issuing CA signed. Times are Unix seconds (UTC).
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    common_name TEXT NOT NULL,
    epc TEXT,
    group_id INTEGER,
    rule_id INTEGER,
    subject_id TEXT,
    ward TEXT,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    der BLOB NOT NULL,
    revoked_at INTEGER,
    revocation_reason TEXT,
    invalidity_date INTEGER,
    renewal_of TEXT REFERENCES certificates (serial)
) STRICT;
CREATE INDEX certificates_epc ON certificates (epc);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

-- Append-only, hash-chained: hash = SHA-256(previous_hash || id || at || actor || operation || detail).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    operation TEXT NOT NULL,
    detail TEXT NOT NULL,
    previous_hash BLOB NOT NULL,
    hash BLOB NOT NULL
) STRICT;
