-- Alerting, SQLite flavour. Same tables and columns as ../postgres/0002_alerts.sql; only the
-- type names and the identity columns differ. Conventions as in 0001: Unix milliseconds,
-- booleans 0/1, JSON as TEXT.

-- Positions of background consumers in append-only logs. 'alerts' is the id of the last
-- row of `transitions` the alert engine has fully handled (its changes committed with it).
CREATE TABLE cursors (
    name     TEXT    NOT NULL PRIMARY KEY,
    position INTEGER NOT NULL
) STRICT;
-- Start after what is already stored: an upgrade must not mail about old incidents.
INSERT INTO cursors (name, position) SELECT 'alerts', COALESCE(MAX(id), 0) FROM transitions;

-- One row per incident of one check on one host (check 'agent.contact' for a silent agent).
-- Columns up to `version` belong to the alert engine, which updates them only when
-- `version` is still what it read; ack and false-positive columns belong to the HTTP API.
CREATE TABLE alerts (
    id                     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    host                   TEXT    NOT NULL,
    check_id               TEXT    NOT NULL,
    status                 TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    severity               TEXT    NOT NULL CHECK (severity IN ('warning', 'critical')),
    peak_severity          TEXT    NOT NULL CHECK (peak_severity IN ('warning', 'critical')),
    notified_severity      TEXT    CHECK (notified_severity IN ('warning', 'critical')),
    summary                TEXT    NOT NULL,
    opened_at              INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    last_change_at         INTEGER NOT NULL,
    last_notified_at       INTEGER,
    resolved_at            INTEGER,
    flapping               INTEGER NOT NULL DEFAULT 0 CHECK (flapping IN (0, 1)),
    silenced               INTEGER NOT NULL DEFAULT 0 CHECK (silenced IN (0, 1)),
    version                INTEGER NOT NULL DEFAULT 0,
    acked_at               INTEGER,
    acked_by               TEXT,
    ack_comment            TEXT,
    false_positive_at      INTEGER,
    false_positive_by      TEXT,
    false_positive_comment TEXT
) STRICT;
-- At most one open alert per (host, check), whatever number of engines run.
CREATE UNIQUE INDEX alerts_one_open ON alerts (host, check_id) WHERE resolved_at IS NULL;
CREATE INDEX alerts_opened ON alerts (opened_at);

-- What happened to an alert, in order: the lifecycle and the people acting on it.
CREATE TABLE alert_events (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    alert_id      INTEGER NOT NULL REFERENCES alerts (id),
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    summary       TEXT    NOT NULL,
    notified      INTEGER NOT NULL CHECK (notified IN (0, 1)),
    transition_id INTEGER
) STRICT;
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Maintenance windows. Every matcher given must match (host and check are `*` patterns);
-- ending one early (DELETE in the API) moves ends_at and records who did it.
CREATE TABLE silences (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    host       TEXT,
    group_name TEXT,
    check_id   TEXT,
    created_by TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    ended_by   TEXT,
    CHECK (host IS NOT NULL OR group_name IS NOT NULL OR check_id IS NOT NULL),
    CHECK (ends_at >= starts_at)
) STRICT;
CREATE INDEX silences_ends ON silences (ends_at);

-- Every notification to every recipient, written in the transaction that decided it.
-- pending -> sending (claimed, leased) -> sent | pending (retry) | failed (given up).
-- handed_over_at is set just before the message body is sent: a claim left behind with it
-- set was interrupted while the server may already have accepted the message.
CREATE TABLE outbox (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    alert_id        INTEGER REFERENCES alerts (id),
    event_id        INTEGER REFERENCES alert_events (id),
    kind            TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body_text       TEXT    NOT NULL,
    body_html       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    message_id      TEXT    NOT NULL UNIQUE,
    thread_id       TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_at      INTEGER,
    lease_until     INTEGER,
    handed_over_at  INTEGER,
    sent_at         INTEGER,
    last_error      TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_leased ON outbox (lease_until) WHERE state = 'sending';
CREATE INDEX outbox_state ON outbox (state, id);

-- Flapping counts the recent changes of one check.
CREATE INDEX transitions_host_check_at ON transitions (host, check_id, at);
