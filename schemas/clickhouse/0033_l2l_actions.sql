-- Records the record API's actions write (internal/record: dispatches,
-- clock sessions, pitch details), versioned like master data. Times are
-- UTC DateTime; 0 (1970-01-01) means none (an open dispatch or session).

-- Dispatches: events on machines, open until completed. downtime = 1: the
-- dispatch's type meant downtime when it was opened.
CREATE TABLE IF NOT EXISTS dispatches (
    id               UInt64,
    site             UInt64,
    dispatchnumber   UInt64,
    machine          UInt64,
    machinecode      String,
    line             UInt64,
    dispatchtype     UInt64,
    dispatchtypecode String,
    description      String,
    reported         DateTime,
    completed        DateTime,
    status           Enum8('open' = 1, 'closed' = 2),
    downtime         UInt8,
    active           UInt8 DEFAULT 1,
    created          DateTime,
    lastupdated      DateTime,
    createdby        String,
    lastupdatedby    String,
    deleted          UInt8,
    version          UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Sessions of users on lines (users/clock_in, users/clock_out).
CREATE TABLE IF NOT EXISTS clocksessions (
    id            UInt64,
    site          UInt64,
    line          UInt64,
    linecode      String,
    user          UInt64,
    username      String,
    start         DateTime,
    end           DateTime,
    active        UInt8 DEFAULT 1,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Production of a line reported in totals (pitchdetails/record_details);
-- its parts go through the ingest pipeline. sent_good and sent_scrap: Kafka
-- has taken the detail's good and scrap part events.
CREATE TABLE IF NOT EXISTS pitchdetails (
    id             UInt64,
    site           UInt64,
    line           UInt64,
    linecode       String,
    product        UInt64,
    productcode    String,
    start          DateTime,
    end            DateTime,
    actual         UInt64,
    scrap          UInt64,
    operator_count UInt64,
    sent_good      UInt8,
    sent_scrap     UInt8,
    active         UInt8 DEFAULT 1,
    created        DateTime,
    lastupdated    DateTime,
    createdby      String,
    lastupdatedby  String,
    deleted        UInt8,
    version        UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Cycle counters of machines (machines/set_cycle_count and
-- increment_cycle_count). The counter's value and its version are handed
-- out together by one Redis script, so the row with the highest version
-- is the newest value whatever order the rows arrive in.
CREATE TABLE IF NOT EXISTS machine_counters (
    machine     UInt64,
    site        UInt64,
    cyclecount  UInt64,
    lastupdated DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY machine;
