-- Enrollment tokens, PostgreSQL flavour (same columns as ../sqlite/0004_enrollment.sql).
-- Only the SHA-256 of a token is stored: a copy of the database enrolls nobody. A token is
-- used at most once: `used_at` is set by one conditional UPDATE (unused and unexpired).
CREATE TABLE enrollments (
    token_sha256     TEXT   NOT NULL PRIMARY KEY,
    host             TEXT   NOT NULL,
    created_by       TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    -- SHA-256 of the certificate issued with the token (hex), for the audit trail.
    cert_fingerprint TEXT
);
CREATE INDEX enrollments_host ON enrollments (host, created_at);
