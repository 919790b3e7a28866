-- Recovery figures per bucket (docs/checks.md R31, R32): the largest data at risk of a WAL
-- check and the narrowest recoverable window of an archive check, for the daily report and the
-- monthly review. NULL for other kinds, for buckets without the figure, and for rows written
-- before these columns.
ALTER TABLE rollups ADD COLUMN risk_secs_max INTEGER;
ALTER TABLE rollups ADD COLUMN window_secs_min INTEGER;
