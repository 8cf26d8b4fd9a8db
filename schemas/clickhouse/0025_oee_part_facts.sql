-- What the OEE figures need to know of each part, fixed when the processor
-- stores it, so that a past figure never changes when master data does:
--
-- ideal_cycle_time: the ideal cycle time (seconds) of the part's product as
-- the processor resolved it (0: the product has none). -1 marks a row
-- stored before this column existed, or by a processor that does not write
-- it; such a row takes its product's ideal cycle time as it was when this
-- migration ran (product_ideal_backfill below), or today's for a product
-- created since.
--
-- oee_class: how the part counts (period.Class): 'counted' when the period
-- state machine placed it in scheduled time, 'unscheduled' when it was made
-- outside the location's shifts, 'late' when it came too late to change any
-- period. Only counted parts are in the quantities and ideal time, because
-- only their time is in the periods. Rows stored before count, as before.
--
-- One ALTER per statement (18.16 has no ADD COLUMN IF NOT EXISTS; Migrate
-- counts an ADD COLUMN of an existing column as applied).
ALTER TABLE parts ADD COLUMN ideal_cycle_time Float64 DEFAULT -1;
ALTER TABLE parts ADD COLUMN oee_class Enum8('counted' = 0, 'unscheduled' = 1, 'late' = 2) DEFAULT 'counted';

-- first_of_stop: 1 on the first scheduled piece of a stop, 0 on every other
-- period; a stop is one down event however many pieces shift boundaries,
-- nights or reasons cut it into. -1 marks rows stored before: for them a
-- down period starts an event unless a down period ends where it starts.
ALTER TABLE productionperiods ADD COLUMN first_of_stop Int8 DEFAULT -1;

-- The hourly rollup of the OEE quantities of the parts stored from now on,
-- by how they count, with their ideal time (Σ ideal cycle time × quantity
-- over the rows that carry one, and the quantity of those rows). It is fed
-- by a view on every INSERT into parts, like parts_hourly, which counts
-- every part since its own migration: parts_hourly minus this rollup is
-- exactly the parts stored before this migration (the two views see the
-- same blocks from here on, whatever is inserted while it runs), and those
-- count as counted parts with the backfilled ideal cycle time. So nothing
-- needs copying, and nothing is counted twice or lost.
CREATE TABLE IF NOT EXISTS parts_oee_hourly (
    site          UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location_id   UInt64,
    product_id    UInt64,
    hour          DateTime,
    oee_class     Enum8('counted' = 0, 'unscheduled' = 1, 'late' = 2),
    produced      UInt64,
    good          UInt64,
    scrap         UInt64,
    rework        UInt64,
    ideal_time    Float64,
    ideal_qty     UInt64
) ENGINE = SummingMergeTree() PARTITION BY toYYYYMM(hour) ORDER BY (site, location_kind, location_id, product_id, hour, oee_class);

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_oee_hourly_mv TO parts_oee_hourly AS
SELECT
    site,
    location_kind,
    location_id,
    product_id,
    toDateTime(intDiv(toUInt32(recorded_at), 3600) * 3600) AS hour,
    oee_class,
    toUInt64(sum(quantity)) AS produced,
    toUInt64(sumIf(quantity, quality = 'good')) AS good,
    toUInt64(sumIf(quantity, quality = 'scrap')) AS scrap,
    toUInt64(sumIf(quantity, quality = 'rework')) AS rework,
    sumIf(ideal_cycle_time * quantity, ideal_cycle_time >= 0) AS ideal_time,
    toUInt64(sumIf(quantity, ideal_cycle_time >= 0)) AS ideal_qty
FROM parts
GROUP BY site, location_kind, location_id, product_id, hour, oee_class;

-- The backfill rule for rows stored before: every product's ideal cycle
-- time as master data holds it now (deleted products too). Read with
-- argMin(ideal_cycle_time, taken_at), so running this again (a migration
-- cut off after it) changes nothing.
CREATE TABLE IF NOT EXISTS product_ideal_backfill (
    site             UInt64,
    product_id       UInt64,
    ideal_cycle_time Float64,
    taken_at         DateTime
) ENGINE = MergeTree() ORDER BY (site, product_id);

INSERT INTO product_ideal_backfill (site, product_id, ideal_cycle_time, taken_at)
SELECT site, id, ideal_cycle_time, now() FROM products FINAL;
