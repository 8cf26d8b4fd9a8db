-- The memory of the processor's production-period state machines: one
-- row per location, the newest version wins. state is the machine's
-- snapshot (JSON of period.Snapshot) after every record of the location's
-- partition before offset; outbox holds the period rows the processor wrote
-- together with it, written again when the state is loaded, so that a
-- crash between the two writes loses nothing. A new owner of a partition
-- loads the rows whose partition is its own and resumes the open periods.
CREATE TABLE IF NOT EXISTS period_state (
    topic         String,
    location_kind Enum8('line' = 1, 'machine' = 2),
    location      UInt64,
    partition     Int32,
    offset        Int64,
    site          UInt64,
    externalid    String,
    state         String,
    outbox        String,
    version       UInt64,
    written_at    DateTime
) ENGINE = ReplacingMergeTree(version) ORDER BY (topic, location_kind, location);
