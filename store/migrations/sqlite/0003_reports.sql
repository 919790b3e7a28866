-- Reports, SQLite flavour. Same tables and columns as ../postgres/0003_reports.sql; only the
-- type names differ. Conventions as in 0001: Unix milliseconds, booleans 0/1.

-- Hourly and daily rollups of every check, maintained in the transaction that stores each
-- new result (store/sql/rollups.rs), so reports never scan `results`. `bucket_start` is the
-- start of the UTC hour or day. Which measures a row carries depends on the probe kind;
-- the others stay NULL (or 0 for the counters):
--   disk     used_bytes (total - free), capacity_bytes (used + available), used_pct_max
--   backup   used_bytes (bytes in the directory), files, newest file mtime/size/age,
--            new_backups (times the newest file changed)
--   wal      delay_secs_max (oldest waiting segment), delay_hourly (day rows: 24 hourly
--            maxima), archived/failed counters and their growth, segment_bytes, wal_bytes
--   archive  used_bytes (segment bytes), files (segments), newest_age_secs (retention: the
--            oldest segment's age), duration_secs (newest base backup), wal_bytes (bytes
--            archived that UTC day, from the probe's per-day volume)
CREATE TABLE rollups (
    host              TEXT    NOT NULL,
    check_id          TEXT    NOT NULL,
    period            TEXT    NOT NULL CHECK (period IN ('hour', 'day')),
    bucket_start      INTEGER NOT NULL,
    kind              TEXT    NOT NULL,
    samples           INTEGER NOT NULL,
    n_ok              INTEGER NOT NULL DEFAULT 0,
    n_warning         INTEGER NOT NULL DEFAULT 0,
    n_critical        INTEGER NOT NULL DEFAULT 0,
    n_unknown         INTEGER NOT NULL DEFAULT 0,
    status_last       TEXT    NOT NULL CHECK (status_last IN ('ok', 'warning', 'critical', 'unknown')),
    first_at          INTEGER NOT NULL,
    last_at           INTEGER NOT NULL,
    interval_secs     INTEGER NOT NULL,
    used_bytes_last   INTEGER,
    used_bytes_max    INTEGER,
    capacity_bytes    INTEGER,
    used_pct_max      REAL,
    files_last        INTEGER,
    newest_mtime      INTEGER,
    newest_size_bytes INTEGER,
    newest_age_secs   INTEGER,
    new_backups       INTEGER NOT NULL DEFAULT 0,
    duration_secs     INTEGER,
    delay_secs_max    INTEGER,
    delay_hourly      TEXT,
    archived_count    INTEGER,
    archived_delta    INTEGER NOT NULL DEFAULT 0,
    failed_count      INTEGER,
    failed_delta      INTEGER NOT NULL DEFAULT 0,
    segment_bytes     INTEGER,
    wal_bytes         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (host, check_id, period, bucket_start)
) STRICT;
CREATE INDEX rollups_period_bucket ON rollups (period, bucket_start);

-- One row per scheduled report run, claimed in the transaction that queues its emails:
-- the primary key makes a run happen once across restarts and collectors. `baseline` rows
-- mark the latest due run at the first start of the scheduler, which sends nothing.
CREATE TABLE report_runs (
    run_key       TEXT    NOT NULL PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('daily', 'monthly')),
    period        TEXT    NOT NULL,
    scheduled_at  INTEGER NOT NULL,
    claimed_at    INTEGER NOT NULL,
    claimed_by    TEXT    NOT NULL,
    baseline      INTEGER NOT NULL CHECK (baseline IN (0, 1)),
    notifications INTEGER NOT NULL
) STRICT;
CREATE INDEX report_runs_kind ON report_runs (kind, run_key);

-- Inline parts of a message (the report's PNG charts): a JSON array of
-- {"cid", "content_type", "data" (base64)}; NULL for every other message.
ALTER TABLE outbox ADD COLUMN attachments TEXT;
