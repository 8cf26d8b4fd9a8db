-- Custom properties of machines: parallel arrays of names and values.
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS, so this migration is a
-- single statement: it is applied whole or not at all.
ALTER TABLE machines ADD COLUMN custom_keys Array(String), ADD COLUMN custom_values Array(String);
