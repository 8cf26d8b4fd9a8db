-- Where the parts of each UTC hour of a site lie in parts, whose order is
-- its id (partition << 40 | offset): per Kafka partition the smallest and
-- largest id recorded in that hour. An OEE read of a partial hour (a
-- window's edge, a segment cut off the hour) reads only those id ranges of
-- parts instead of scanning its time columns. Fed by a materialized view
-- on every INSERT into parts; a view's GROUP BY makes it a few rows per
-- block.
--
-- min and max are idempotent, so a row counted twice (the backfill below
-- beside the view) changes nothing; late parts only widen a range.
CREATE TABLE IF NOT EXISTS parts_hour_ranges (
    site      UInt64,
    hour      DateTime,
    partition Int32,
    min_id    AggregateFunction(min, UInt64),
    max_id    AggregateFunction(max, UInt64)
) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(hour) ORDER BY (site, hour, partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_hour_ranges_mv TO parts_hour_ranges AS
SELECT
    site,
    toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
    partition,
    minState(id) AS min_id,
    maxState(id) AS max_id
FROM parts
GROUP BY site, hour, partition;

-- The rows stored before the view existed.
INSERT INTO parts_hour_ranges (site, hour, partition, min_id, max_id)
SELECT site, toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS h, partition, minState(id), maxState(id)
FROM parts
GROUP BY site, h, partition;
