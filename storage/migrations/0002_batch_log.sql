-- The batch log: every stored batch's header hash, numbered from 1 in the order stored
-- (commit order: the number is taken under a lock held until the batch commits, so an
-- entry never appears below one already anchored). Its Merkle roots are anchored on chain
-- so a proof can show its batch was stored before a given block.
CREATE TABLE batch_log (
    entry BIGINT PRIMARY KEY,
    header_hash BYTEA NOT NULL UNIQUE REFERENCES batches (header_hash),
    stored_at BIGINT NOT NULL
);

-- Batches stored before this migration, in the order they were received.
INSERT INTO batch_log (entry, header_hash, stored_at)
SELECT ROW_NUMBER() OVER (ORDER BY received_at, header_hash), header_hash, received_at
FROM batches;

-- Anchors of the batch log: entries first_entry..=last_entry (RFC 9162 leaves
-- SHA-256(0x00 || header hash)) have root `root`, anchored in block `block` by transaction
-- `tx_hash` (NULL when the anchor was found on chain after a crash, not sent now).
CREATE TABLE batch_anchors (
    first_entry BIGINT PRIMARY KEY,
    last_entry BIGINT NOT NULL UNIQUE,
    root BYTEA NOT NULL,
    first_time BIGINT NOT NULL,
    last_time BIGINT NOT NULL,
    block BIGINT NOT NULL,
    tx_hash BYTEA,
    anchored_at BIGINT NOT NULL
);
