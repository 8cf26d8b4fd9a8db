-- The idempotency ids of stored parts (wire.Part.IdempotencyID: a digest of
-- the client's scope and idempotency key), one row per part that carried
-- one, with where it is stored. The processor looks ids up here before it
-- stores a part: an id held at another (partition, offset) is a repeat that
-- reached Kafka twice, and is dropped. A block's rows are written before
-- the block's parts, so every stored part's id is here; a row written for
-- a block that then failed names the offset the block is written again at.
-- Ordered by the id, so a look-up reads a few granules. Partitioned by
-- month of receipt, so that months older than any retry can be dropped.
CREATE TABLE IF NOT EXISTS part_keys (
    idempotency_id UUID,
    topic          String,
    partition      Int32,
    offset         Int64,
    received_ms    Int64
) ENGINE = MergeTree() PARTITION BY toYYYYMM(toDateTime(intDiv(received_ms, 1000))) ORDER BY (idempotency_id, topic);
