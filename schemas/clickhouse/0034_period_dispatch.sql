-- A production period that is a dispatch's down window (dispatches whose
-- type means downtime, applied by the processor) names the dispatch and
-- its type; 0 for every other period. One ALTER per statement (see 0021).
ALTER TABLE productionperiods ADD COLUMN dispatch UInt64 DEFAULT 0;
ALTER TABLE productionperiods ADD COLUMN dispatchtype UInt64 DEFAULT 0;
