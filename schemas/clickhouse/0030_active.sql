-- Every record area has active (Leading2Lean's convention): a retired
-- record is kept, readable, with active = 0. Existing rows are active.
-- (sites have theirs since 0026.) One ALTER per statement (see 0021): a
-- migration cut off between them runs again cleanly.
ALTER TABLE areas ADD COLUMN active UInt8 DEFAULT 1;
ALTER TABLE lines ADD COLUMN active UInt8 DEFAULT 1;
ALTER TABLE machines ADD COLUMN active UInt8 DEFAULT 1;
ALTER TABLE products ADD COLUMN active UInt8 DEFAULT 1;
ALTER TABLE reasons ADD COLUMN active UInt8 DEFAULT 1;
ALTER TABLE shifts ADD COLUMN active UInt8 DEFAULT 1;
