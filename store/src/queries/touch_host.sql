-- first_seen is written on insert only. last_contact only moves forward, so a call that
-- arrives late cannot make a host look silent. `silent` belongs to set_host_silent.
-- CASE rather than MAX()/GREATEST(): the one spelling both backends accept.
-- Sent for many hosts at once (multi_row.rs): placeholders only inside VALUES.
INSERT INTO hosts (host, first_seen, last_contact)
VALUES ($1, $2, $2)
ON CONFLICT (host) DO UPDATE SET
    last_contact = CASE WHEN excluded.last_contact > hosts.last_contact
                        THEN excluded.last_contact ELSE hosts.last_contact END
RETURNING host, silent
