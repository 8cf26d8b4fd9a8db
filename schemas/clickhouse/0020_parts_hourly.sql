-- Hourly rollup of parts per (site, location, product, UTC hour), fed by a
-- materialized view on every INSERT into parts. OEE queries read this
-- instead of the raw rows. Hours are UTC epoch hours (intDiv, because
-- toStartOfInterval is missing on 18.16 and toStartOfHour depends on the
-- server's time zone): local hours, days, weeks and months of every zone
-- with whole-hour offsets are unions of them.
--
-- Exactness: the view sees each INSERT block into parts exactly once, and
-- the processor writes each part row exactly once (offsets and
-- PartsMaxOffset), so a replayed Kafka batch adds nothing here either. The
-- rollup is summed at read time (sum() ... GROUP BY), never read raw, so
-- unmerged SummingMergeTree rows do not matter.
--
-- Rows already in parts when this runs are not rolled up; backfill them
-- with chstore.BackfillPartsHourly while no processor writes.
CREATE TABLE IF NOT EXISTS parts_hourly (
    site          UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location_id   UInt64,
    product_id    UInt64,
    hour          DateTime,
    produced      UInt64,
    good          UInt64,
    scrap         UInt64,
    rework        UInt64,
    events        UInt64
) ENGINE = SummingMergeTree() PARTITION BY toYYYYMM(hour) ORDER BY (site, location_kind, location_id, product_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_hourly_mv TO parts_hourly AS
SELECT
    site,
    location_kind,
    location_id,
    product_id,
    toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
    toUInt64(sum(quantity)) AS produced,
    toUInt64(sumIf(quantity, quality = 'good')) AS good,
    toUInt64(sumIf(quantity, quality = 'scrap')) AS scrap,
    toUInt64(sumIf(quantity, quality = 'rework')) AS rework,
    toUInt64(count()) AS events
FROM parts
GROUP BY site, location_kind, location_id, product_id, hour;
