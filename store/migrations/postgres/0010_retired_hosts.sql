-- Hosts taken out of the fleet (README, "Retire a host"): left out of the fleet view, reports,
-- /metrics and silence detection, their streams refused; their history stays readable. Deleting
-- the row un-retires the host.
CREATE TABLE retired_hosts (
    host       TEXT   NOT NULL PRIMARY KEY,
    retired_at BIGINT NOT NULL,
    retired_by TEXT   NOT NULL,
    reason     TEXT   NOT NULL
);
