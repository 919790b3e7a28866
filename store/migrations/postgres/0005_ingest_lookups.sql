-- Ingest looks rollup rows up by their full key, many per statement. With only
-- (period, bucket_start) beside the primary key, the planner may take that index for a key
-- lookup whenever its statistics make the two look alike (a young table, every host in the
-- same bucket) and then filter every host's row of the bucket for each key: ingest cost
-- grows with the fleet. Ending the index with host and check_id makes a lookup through it
-- exact too, whichever index the planner picks; range reads and pruning by bucket keep it.
DROP INDEX rollups_period_bucket;
CREATE INDEX rollups_period_bucket ON rollups (period, bucket_start, host, check_id);

-- Rollup rows, check states and hosts are rewritten in place all day (every result touches
-- its check's two rollup rows and its state, every contact its host). Free room on each page
-- lets PostgreSQL keep the new row version on the same page without touching the indexes
-- (a HOT update), instead of spreading dead versions that lookups then wade through until
-- vacuum. Applies to pages written from now on.
ALTER TABLE rollups SET (fillfactor = 70);
ALTER TABLE check_state SET (fillfactor = 70);
ALTER TABLE hosts SET (fillfactor = 70);
