-- touch_host.sql, plus the facts of a fresh Hello, which replace the stored ones.
INSERT INTO hosts (
    host, first_seen, last_contact, agent_version, hostname, os, instance_id, clock_skew_ms,
    labels
)
VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (host) DO UPDATE SET
    last_contact  = CASE WHEN excluded.last_contact > hosts.last_contact
                         THEN excluded.last_contact ELSE hosts.last_contact END,
    agent_version = excluded.agent_version,
    hostname      = excluded.hostname,
    os            = excluded.os,
    instance_id   = excluded.instance_id,
    clock_skew_ms = excluded.clock_skew_ms,
    labels        = excluded.labels
RETURNING silent
