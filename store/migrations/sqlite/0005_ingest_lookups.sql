-- Same index as ../postgres/0005_ingest_lookups.sql, so both backends keep one schema: a
-- lookup through the (period, bucket_start) index is exact too. (SQLite has no fillfactor;
-- its B-tree rows are rewritten in place.)
DROP INDEX rollups_period_bucket;
CREATE INDEX rollups_period_bucket ON rollups (period, bucket_start, host, check_id);
