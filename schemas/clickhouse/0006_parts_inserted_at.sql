-- inserted_at is the server time of the INSERT that stored the row. The
-- parts record area pages in (inserted_at, id) order and hides the last
-- seconds, so rows only ever appear after the ones a client has paged
-- through. A single statement (see 0004).
ALTER TABLE parts ADD COLUMN inserted_at DateTime DEFAULT now();
