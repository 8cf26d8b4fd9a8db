-- The parts of each location by the time they were recorded: one row per
-- part with its place in the parts area's insertion order (order_ms, id)
-- and the columns of the area's location filters. parts is ordered by id
-- and parts_order by insertion order, so a read of one location's parts
-- recorded at or around a time ("the part line_1 reported at 10:00:00",
-- what a client that just sent it asks) found its rows only by walking the
-- insertion order from its start: a read of the whole table. Here those
-- rows lie in one narrow key range (externalid, then recorded_ms), read on
-- its own and sorted into insertion order (internal/chstore).
--
-- Granules of 1024 rows: a read takes one key range, and at least one
-- granule of each data part it lies in (a part just sent is in several
-- small, unmerged data parts), so small granules keep it small; the
-- primary index stays small too (8M rows: 8k marks).
--
-- Fed by a view on every INSERT into parts. The backfill below copies the
-- rows stored before; a row inserted while this migration runs may be
-- copied by both, so the engine replaces duplicates on merge and the
-- reads select DISTINCT. Partitioned like parts_order (30-day spans of
-- order_ms), so a month's rows can be dropped with the order's.
CREATE TABLE IF NOT EXISTS parts_by_location (
    externalid    String,
    recorded_ms   Int64,
    order_ms      Int64,
    id            UInt64,
    site          UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location_id   UInt64
) ENGINE = ReplacingMergeTree() PARTITION BY intDiv(order_ms, 2592000000) ORDER BY (externalid, recorded_ms, order_ms, id)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_by_location_mv TO parts_by_location AS
SELECT externalid, recorded_ms, order_ms, id, site, location_kind, location_id
FROM parts;

INSERT INTO parts_by_location (externalid, recorded_ms, order_ms, id, site, location_kind, location_id)
SELECT externalid, recorded_ms, order_ms, id, site, location_kind, location_id
FROM parts;
