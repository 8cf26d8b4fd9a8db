-- Why a recompute request derived nothing: its window held more parts
-- than one recompute may read (TAKT_RECOMPUTE_MAX_PARTS), or reading them
-- ran out of time on every attempt. Empty for a request that ran.
ALTER TABLE period_recomputes ADD COLUMN error String DEFAULT '';
