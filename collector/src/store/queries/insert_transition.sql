INSERT INTO transitions (host, check_id, at, from_status, to_status, summary, result_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
