-- One rollup row replaced whole: the caller folded the new samples into what it read (see
-- rollups.rs). used_pct_max ($18) is always bound as a float, -1 standing for NULL: sqlx's
-- `Any` driver binds a NULL float as float4, and PostgreSQL keeps the first execution's
-- parameter types for a cached statement, so a later float8 would be refused. filesystem
-- ($33) likewise comes as text, '' standing for NULL.
-- Sent for many rows at once (multi_row.rs): placeholders only inside VALUES.
INSERT INTO rollups (
    host, check_id, period, bucket_start, kind, samples, n_ok, n_warning, n_critical,
    n_unknown, status_last, first_at, last_at, interval_secs, used_bytes_last,
    used_bytes_max, capacity_bytes, used_pct_max, files_last, newest_mtime,
    newest_size_bytes, newest_age_secs, new_backups, duration_secs, delay_secs_max,
    delay_hourly, archived_count, archived_delta, failed_count, failed_delta, segment_bytes,
    wal_bytes, filesystem, risk_secs_max, window_secs_min, latency_hourly
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
    NULLIF(CAST($18 AS DOUBLE PRECISION), -1), $19, $20, $21, $22, $23, $24, $25, $26, $27,
    $28, $29, $30, $31, $32, NULLIF($33, ''), $34, $35, $36)
ON CONFLICT (host, check_id, period, bucket_start) DO UPDATE SET
    kind = excluded.kind,
    samples = excluded.samples,
    n_ok = excluded.n_ok,
    n_warning = excluded.n_warning,
    n_critical = excluded.n_critical,
    n_unknown = excluded.n_unknown,
    status_last = excluded.status_last,
    first_at = excluded.first_at,
    last_at = excluded.last_at,
    interval_secs = excluded.interval_secs,
    used_bytes_last = excluded.used_bytes_last,
    used_bytes_max = excluded.used_bytes_max,
    capacity_bytes = excluded.capacity_bytes,
    used_pct_max = excluded.used_pct_max,
    files_last = excluded.files_last,
    newest_mtime = excluded.newest_mtime,
    newest_size_bytes = excluded.newest_size_bytes,
    newest_age_secs = excluded.newest_age_secs,
    new_backups = excluded.new_backups,
    duration_secs = excluded.duration_secs,
    delay_secs_max = excluded.delay_secs_max,
    delay_hourly = excluded.delay_hourly,
    archived_count = excluded.archived_count,
    archived_delta = excluded.archived_delta,
    failed_count = excluded.failed_count,
    failed_delta = excluded.failed_delta,
    segment_bytes = excluded.segment_bytes,
    wal_bytes = excluded.wal_bytes,
    filesystem = excluded.filesystem,
    risk_secs_max = excluded.risk_secs_max,
    window_secs_min = excluded.window_secs_min,
    latency_hourly = excluded.latency_hourly
