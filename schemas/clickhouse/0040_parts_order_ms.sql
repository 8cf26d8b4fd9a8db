-- order_ms is a part's place in the parts area's insertion order (then id):
-- the processor sets it to the part's receive time, raised past the
-- watermark it last published for the part's Kafka partition (see
-- parts_watermarks), so a part never takes a place a reader may already
-- have paged past. Rows stored before it existed keep the second of their
-- INSERT, which is the order they were paged in. A single statement (see
-- 0004).
ALTER TABLE parts ADD COLUMN order_ms Int64 DEFAULT toInt64(toUInt32(inserted_at)) * 1000;
