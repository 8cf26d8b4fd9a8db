-- How far the parts table is complete, per Kafka partition of the parts
-- topic. A row (written by the partition's owner after the flush's parts
-- are in ClickHouse) says: every part of the partition that the broker had
-- acknowledged by watermark_ms (Unix milliseconds, the processor's clock)
-- is stored, and every part the processor stores later gets an order_ms
-- above watermark_ms. partitions is how many partitions the topic had, so
-- that a reader knows which partitions it must hear from. The largest
-- watermark of a partition is the true one (versions only grow); the
-- watermark of the whole table is the smallest of the partitions'.
CREATE TABLE IF NOT EXISTS parts_watermarks (
    topic        String,
    partition    Int32,
    partitions   Int32,
    watermark_ms Int64,
    stored       Int64,
    written_at   DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(watermark_ms) ORDER BY (topic, partition);
