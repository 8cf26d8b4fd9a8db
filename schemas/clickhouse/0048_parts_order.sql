-- The parts area's insertion order as a sort key: one row per part with
-- its place in that order (order_ms, then id) and the columns the area's
-- usual filters name (site, location, external id). parts is ordered by
-- id, and ClickHouse 18.16 answers ORDER BY ... LIMIT by reading and
-- sorting every matching row, so a page found in parts costs a read of
-- the whole table. Here a page's rows lie in one narrow key range
-- (order_ms between two bounds), and a read of that range touches only
-- its granules (chstore: pages are found window by window).
--
-- Fed by a view on every INSERT into parts. The backfill below copies the
-- rows stored before; a row inserted while this migration runs may be
-- copied by both, so the engine replaces duplicates on merge and the
-- reads select DISTINCT. Partitioned by 30-day spans of order_ms (no time
-- zone in the key), so merges stay within a month's rows.
CREATE TABLE IF NOT EXISTS parts_order (
    order_ms      Int64,
    id            UInt64,
    site          UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location_id   UInt64,
    externalid    String
) ENGINE = ReplacingMergeTree() PARTITION BY intDiv(order_ms, 2592000000) ORDER BY (order_ms, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS parts_order_mv TO parts_order AS
SELECT order_ms, id, site, location_kind, location_id, externalid
FROM parts;

INSERT INTO parts_order (order_ms, id, site, location_kind, location_id, externalid)
SELECT order_ms, id, site, location_kind, location_id, externalid
FROM parts;
