-- Appended in order: ids follow the VALUES rows. Sent for many rows at once (multi_row.rs).
INSERT INTO transitions (host, check_id, at, from_status, to_status, summary, result_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
