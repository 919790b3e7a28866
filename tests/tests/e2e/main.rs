//! Backwatch's end-to-end tests, one module per subject, in one test binary: real PostgreSQL
//! clusters, pgBackRest, Barman, SMTP, Alertmanager and Chromium, and the real agent and
//! collector processes (the harness is `tests/src/harness/`). One binary links once instead
//! of once per file. Run one subject with `cargo test -p backwatch-tests --test e2e enroll::`.

mod alerting;
mod alertmanager;
mod archive_dir;
mod archive_encryption;
mod archive_rate;
mod backup_freshness;
mod backup_tools;
mod base_backup;
mod cli;
mod clock;
mod dashboard;
mod data_at_risk;
mod delivery;
mod demo;
mod deploy_samples;
mod drill;
mod enroll;
mod exposure;
mod harness_pg;
mod harness_smtp;
mod history;
mod labels;
mod listeners;
mod metrics;
mod mtls;
mod multi_collector;
mod nagios;
mod openapi;
mod packages;
mod pg_versions;
mod reliability;
mod reload;
mod reports;
mod restore;
mod retire;
mod settings;
mod silence;
mod smtp_tls;
mod standby;
mod store_postgres;
mod storm;
mod units;
mod wal_archiving;
