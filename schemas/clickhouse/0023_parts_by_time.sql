-- The columns of parts that OEE needs, ordered by time: the OEE reads of
-- partial hours (a window's edges, segment cuts off the hour) read a
-- primary-key range here instead of scanning parts, whose order is its
-- Kafka coordinates. Fed by a materialized view on every INSERT into parts.
--
-- Exactness: a row is the part with the same id; ReplacingMergeTree keyed
-- by (site, recorded_at, id) and read with FINAL, so a row written twice
-- (the backfill below running beside the view, or on two replicas) counts
-- once. FINAL is cheap here: reads are narrow time ranges.
CREATE TABLE IF NOT EXISTS parts_by_time (
    site          UInt64,
    recorded_at   DateTime,
    id            UInt64,
    recorded_ms   Int64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location_id   UInt64,
    product_id    UInt64,
    quality       Enum8('good' = 1, 'scrap' = 2, 'rework' = 3),
    quantity      UInt32
) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(recorded_at) ORDER BY (site, recorded_at, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_by_time_mv TO parts_by_time AS
SELECT site, recorded_at, id, recorded_ms, location_kind, location_id, product_id, quality, quantity
FROM parts;

-- The rows stored before the view existed.
INSERT INTO parts_by_time (site, recorded_at, id, recorded_ms, location_kind, location_id, product_id, quality, quantity)
SELECT site, recorded_at, id, recorded_ms, location_kind, location_id, product_id, quality, quantity
FROM parts;
