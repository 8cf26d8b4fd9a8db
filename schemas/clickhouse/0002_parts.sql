-- One row per part event. id is the record id shown by the parts record area:
-- (Kafka partition << 40) | offset, so a replayed message has the same id and
-- the largest id of a partition range is the last offset ClickHouse holds for
-- that partition. The table has no partition key on purpose: every INSERT
-- block then becomes exactly one data part, which ClickHouse commits
-- atomically, and that is what lets the processor resume exactly after the
-- last offset it wrote.
CREATE TABLE IF NOT EXISTS parts (
    id                 UInt64,
    event_id           UUID,
    site               UInt64,
    location_kind      Enum8('line' = 1, 'machine' = 2),
    location_id        UInt64,
    externalid         String,
    product_id         UInt64,
    product_code       String,
    product_reported   String,
    product_resolution Enum8('code' = 1, 'cycle_time' = 2, 'fallback' = 3, 'none' = 4),
    quantity           UInt32,
    quality            Enum8('good' = 1, 'scrap' = 2, 'rework' = 3),
    reason             String,
    reason_id          UInt64,
    cycle_time         Nullable(Float64),
    recorded_at        DateTime,
    recorded_ms        Int64,
    recorded_defaulted UInt8,
    received_ms        Int64,
    processed_ms       Int64,
    topic              String,
    partition          Int32,
    offset             Int64
) ENGINE = MergeTree() ORDER BY id;
