-- Devices registered for EST enrollment (RFC 7030): the identity their certificate will
-- carry, and the bootstrap credential that lets them ask for it.
CREATE TABLE est_registrations (
    -- Pure identity URI (urn:epc:id:sgtin:…).
    epc TEXT PRIMARY KEY,
    -- The tag form (with its filter value), as the device's certificate carries it.
    epc_tag TEXT NOT NULL,
    group_id INTEGER NOT NULL,
    rule_id INTEGER NOT NULL,
    ward TEXT,
    -- SHA-256 over the EPC and the one-time secret (128 random bits); NULL when none.
    secret_hash BLOB,
    -- Set, in the enrollment's own transaction, when the secret is spent.
    secret_used_at INTEGER,
    -- The subject serialNumber of the device's manufacturer (IDevID) certificate.
    manufacturer_serial TEXT UNIQUE,
    registered_at INTEGER NOT NULL,
    enrolled_serial TEXT REFERENCES certificates (serial),
    CHECK (secret_hash IS NOT NULL OR manufacturer_serial IS NOT NULL)
) STRICT;
