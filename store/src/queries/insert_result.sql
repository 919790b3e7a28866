-- Idempotent by result_id: a replay inserts nothing, and only new rows come back.
-- Sent for many rows at once (multi_row.rs): placeholders only inside VALUES.
INSERT INTO results (
    result_id, host, check_id, kind, measured_at, received_at,
    status, summary, error, observation, duration_ms, interval_secs
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (host, result_id) DO NOTHING
RETURNING host, result_id
