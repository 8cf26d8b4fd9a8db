-- Shifts: planned production time of a site (line = 0) or of one line.
-- start_time and end_time are local wall-clock times "HH:MM" in the site's
-- time zone; a shift whose end is not after its start ends on the next day.
-- days lists the ISO weekdays it runs on, e.g. "mon,tue,wed,thu,fri".
CREATE TABLE IF NOT EXISTS shifts (
    id            UInt64,
    site          UInt64,
    line          UInt64,
    code          String,
    description   String,
    start_time    String,
    end_time      String,
    days          String,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Production periods: per location, running or down (or planned_down,
-- unscheduled) from start until end (NULL while the period is open). The
-- OEE engine writes them; a new version of a row (higher version) replaces
-- the old one, e.g. when an open period is closed. duration is in seconds,
-- reason the id of a downtime reason or 0.
CREATE TABLE IF NOT EXISTS productionperiods (
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
    version       UInt64,
    deleted       UInt8
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- When an API key was last used. Rows are copied from the rate limiter's
-- Redis buckets now and then; the largest last_used of a key wins.
CREATE TABLE IF NOT EXISTS apikey_usage (
    key       UInt64,
    last_used DateTime
) ENGINE = ReplacingMergeTree(last_used) ORDER BY key;
