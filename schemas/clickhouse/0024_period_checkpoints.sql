-- Where a new owner of a parts partition starts feeding the production-
-- period state machines: every location's saved state (period_state)
-- covers the partition's records before offset. The processor saves a
-- machine's state when it wrote period rows and otherwise at most every
-- TAKT_PERIOD_SAVE_INTERVAL, so the records between offset and the
-- partition's position are read again and fed to the machines only.
CREATE TABLE IF NOT EXISTS period_checkpoints (
    topic     String,
    partition Int32,
    offset    Int64,
    version   UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (topic, partition);
