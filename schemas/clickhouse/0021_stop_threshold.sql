-- The stop threshold of a location, in seconds: a gap between two parts
-- longer than it is downtime (see internal/period). 0, the default, derives
-- it from the product's ideal cycle time: max(5 × ideal, 60 s), or 300 s for
-- a product without one (period.DefaultThreshold).
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: one ALTER per statement,
-- so a migration cut off between them runs again cleanly (Migrate counts an
-- ADD COLUMN of an existing column as applied).
ALTER TABLE lines ADD COLUMN stop_threshold Float64 DEFAULT 0;
ALTER TABLE machines ADD COLUMN stop_threshold Float64 DEFAULT 0;
