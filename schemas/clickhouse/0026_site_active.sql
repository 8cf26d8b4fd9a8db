-- A site can be closed without deleting it: a site that is not active takes
-- no parts (its locations are not found at ingest), and a key whose user has
-- no open site left stops working; the site stays visible to its users, who
-- can open it again.
ALTER TABLE sites ADD COLUMN active UInt8 DEFAULT 1;
