-- Agent certificates issued by the enrollment listener, SQLite flavour (same columns as
-- ../postgres/0007_certificates.sql). One row per certificate, written in the same transaction
-- that hands it out (enrollment) or before it is handed out (renewal), so every certificate
-- the collector signed is here. What it is for:
-- - supersession: a certificate is refused once a newer one for its host first opened an
--   ingest stream more than `enroll.supersede_grace` ago, so a stolen key cannot keep a
--   renewed-away identity, while a renewal whose reply never reached the agent (never used)
--   locks nobody out;
-- - one live lineage: `Renew` is refused to a certificate that already has a used renewal,
--   so a stolen key cannot fork the identity away from the agent;
-- - deny lineage: `renewed_from` links a renewal to the certificate that authenticated it, so
--   denying one fingerprint denies every certificate renewed from it.
-- Certificates made elsewhere (deploy/ script) are not here and work until one is issued.
CREATE TABLE certificates (
    -- SHA-256 of the certificate's DER, lowercase hex, as grpc.deny_fingerprints lists it.
    fingerprint  TEXT    NOT NULL PRIMARY KEY,
    host         TEXT    NOT NULL,
    -- Serial number, lowercase hex (as `openssl x509 -serial` prints it, without colons).
    serial       TEXT    NOT NULL,
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    issued_at    INTEGER NOT NULL,
    -- Fingerprint of the certificate that authenticated the renewal; NULL for an enrollment.
    renewed_from TEXT,
    -- When this certificate first opened an ingest stream (same encoding as issued_at);
    -- NULL until then. Set once, never moved.
    first_used_at INTEGER
) STRICT;
CREATE INDEX certificates_host ON certificates (host, issued_at);
-- Renew looks for a used renewal of the presented certificate.
CREATE INDEX certificates_renewed_from ON certificates (renewed_from);
