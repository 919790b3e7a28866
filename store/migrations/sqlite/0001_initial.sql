-- Backwatch fleet history, SQLite flavour. Same tables and columns as
-- ../postgres/0001_initial.sql; only the type names and the identity column differ.
-- Times are Unix milliseconds (UTC), booleans 0/1, JSON is TEXT: the sqlx `Any` driver
-- carries nothing richer. STRICT makes SQLite reject a value of the wrong type instead of
-- storing it silently.

-- One row per agent identity (certificate name). Maintained by touch_host only; results do
-- not reference it so a result is never refused because of call order.
CREATE TABLE hosts (
    host          TEXT    NOT NULL PRIMARY KEY,
    first_seen    INTEGER NOT NULL,
    last_contact  INTEGER NOT NULL,
    silent        INTEGER NOT NULL DEFAULT 0 CHECK (silent IN (0, 1)),
    agent_version TEXT    NOT NULL DEFAULT '',
    hostname      TEXT    NOT NULL DEFAULT '',
    os            TEXT    NOT NULL DEFAULT '',
    instance_id   TEXT    NOT NULL DEFAULT '',
    clock_skew_ms INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Every result ever received, keyed by the agent's idempotency key within its host (a key
-- another host already used cannot make this host's result look like a duplicate).
CREATE TABLE results (
    result_id     TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    check_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    measured_at   INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    summary       TEXT    NOT NULL,
    error         TEXT,
    observation   TEXT,
    duration_ms   INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL,
    PRIMARY KEY (host, result_id)
) STRICT;
CREATE INDEX results_host_check_measured ON results (host, check_id, measured_at);
-- history() without a check filter scans one host by time.
CREATE INDEX results_host_measured ON results (host, measured_at);

-- The current state of each check: the newest measurement and the status it led to.
CREATE TABLE check_state (
    host           TEXT    NOT NULL,
    check_id       TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    summary        TEXT    NOT NULL,
    since          INTEGER NOT NULL,
    observed_at    INTEGER,
    received_at    INTEGER,
    interval_secs  INTEGER NOT NULL,
    last_result_id TEXT,
    last_result    TEXT,
    details        TEXT    NOT NULL,
    PRIMARY KEY (host, check_id)
) STRICT;

-- Status changes, append-only; `id` orders transitions that share a millisecond.
CREATE TABLE transitions (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    host        TEXT    NOT NULL,
    check_id    TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    from_status TEXT    CHECK (from_status IN ('ok', 'warning', 'critical', 'unknown')),
    to_status   TEXT    NOT NULL CHECK (to_status IN ('ok', 'warning', 'critical', 'unknown')),
    summary     TEXT    NOT NULL,
    result_id   TEXT
) STRICT;
CREATE INDEX transitions_host_at ON transitions (host, at);
