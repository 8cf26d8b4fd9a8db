-- Rows stored before 0006 have no inserted_at of their own (a read would
-- compute now() for them): fix it at the epoch, before every later row.
ALTER TABLE parts UPDATE inserted_at = toDateTime(0) WHERE 1;
