-- The production periods as the OEE figures read them: a location's
-- periods of a window. productionperiods is ordered by id, so that read
-- (FINAL, by site, location and start) scanned every period of every
-- location (a site's whole history: 421k rows, ~19 MB per OEE read after
-- two years of 200 locations). Here the same versions are ordered by
-- location and start, and a read takes the location's key range.
--
-- A period's id, site, location and start never change between its
-- versions (chstore.OEEPeriods relies on it), so the versions of one
-- period share this sort key and FINAL keeps the latest, as it does in
-- productionperiods. Fed by a view on every INSERT into productionperiods;
-- the backfill copies the periods stored before. A version copied by both
-- is the same row twice under one key and version, which FINAL reads once.
CREATE TABLE IF NOT EXISTS productionperiods_by_location (
    id            UInt64,
    site          UInt64,
    location      UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    state         Enum8('running' = 1, 'down' = 2, 'planned_down' = 3, 'unscheduled' = 4),
    start         DateTime,
    end           Nullable(DateTime),
    first_of_stop Int8,
    version       UInt64,
    deleted       UInt8
) ENGINE = ReplacingMergeTree(version) ORDER BY (site, location_kind, location, start, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS productionperiods_by_location_mv TO productionperiods_by_location AS
SELECT id, site, location, location_kind, state, start, end, first_of_stop, version, deleted
FROM productionperiods;

INSERT INTO productionperiods_by_location (id, site, location, location_kind, state, start, end, first_of_stop, version, deleted)
SELECT id, site, location, location_kind, state, start, end, first_of_stop, version, deleted
FROM productionperiods;
