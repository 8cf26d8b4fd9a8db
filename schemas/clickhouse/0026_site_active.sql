-- A site can be closed without deleting it: a site that is not active takes
-- no parts (its locations are not found at ingest) and drops out of its
-- users' sites (a key whose user has no open site left stops working).
ALTER TABLE sites ADD COLUMN active UInt8 DEFAULT 1;
