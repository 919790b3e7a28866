-- archive_command latency per hour of a WAL check's day row (docs/checks.md, monthly review):
-- 24 hourly maxima of pg_stat_archiver's latest hand-over-to-archived time, encoded as
-- delay_hourly is. NULL for other kinds and for rows written before this column.
ALTER TABLE rollups ADD COLUMN latency_hourly TEXT;
