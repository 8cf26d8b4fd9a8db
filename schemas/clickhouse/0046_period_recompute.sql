-- Periods derived again under new rules (POST
-- /api/1.0/productionperiods/recompute/, run by the processor).
--
-- rule_version: which rules produced a period: a 63-bit hash of the
-- location's stop threshold, site time zone and shifts as the processor
-- applied them (the same rules give the same number); 0 on rows written
-- before this column existed. One ALTER per statement (see 0021).
ALTER TABLE productionperiods ADD COLUMN rule_version UInt64 DEFAULT 0;

-- The versions a recompute replaced, kept: productionperiods keeps only
-- the newest version of a period. One row per replaced (or deleted)
-- period version and recompute; written again by a recompute that runs
-- again after a crash, so reads use FINAL.
CREATE TABLE IF NOT EXISTS productionperiods_history (
    recompute     String,
    id            UInt64,
    site          UInt64,
    location      UInt64,
    location_kind Enum8('line' = 1, 'machine' = 2),
    externalid    String,
    state         Enum8('running' = 1, 'down' = 2, 'planned_down' = 3, 'unscheduled' = 4),
    start         DateTime,
    end           Nullable(DateTime),
    duration      Float64,
    reason        UInt64,
    first_of_stop Int8,
    dispatch      UInt64,
    dispatchtype  UInt64,
    rule_version  UInt64,
    version       UInt64,
    replaced_at   DateTime
) ENGINE = ReplacingMergeTree(replaced_at) ORDER BY (site, location_kind, location, recompute, id, version);

-- One row per recompute request the processor ran: the window it derived
-- again (from_ms, to_ms: widened to the periods the requested window cuts,
-- and ending where the live state machine's periods begin), the rules it
-- applied, what it changed, and the reasons it could not carry over
-- (JSON). A request is run once: a replayed request finds its row.
CREATE TABLE IF NOT EXISTS period_recomputes (
    id             String,
    site           UInt64,
    location_kind  Enum8('line' = 1, 'machine' = 2),
    location       UInt64,
    externalid     String,
    start_ms       Int64,
    end_ms         Int64,
    from_ms        Int64,
    to_ms          Int64,
    rule_version   UInt64,
    parts          UInt64,
    replaced       UInt32,
    created        UInt32,
    deleted        UInt32,
    unchanged      UInt32,
    reasons_kept   UInt32,
    reasons_lost   String,
    requested_by   String,
    done_at        DateTime
) ENGINE = ReplacingMergeTree(done_at) ORDER BY id;
