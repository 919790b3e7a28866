-- Replaces the whole state of one check. The caller has already decided that this result is
-- the newest measurement and what `since` is, so no condition is needed here.
-- Sent for many rows at once (multi_row.rs): placeholders only inside VALUES.
INSERT INTO check_state (
    host, check_id, status, summary, since, observed_at, received_at,
    interval_secs, last_result_id, last_result, details
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (host, check_id) DO UPDATE SET
    status         = excluded.status,
    summary        = excluded.summary,
    since          = excluded.since,
    observed_at    = excluded.observed_at,
    received_at    = excluded.received_at,
    interval_secs  = excluded.interval_secs,
    last_result_id = excluded.last_result_id,
    last_result    = excluded.last_result,
    details        = excluded.details
