//! Backwatch collector: takes agent streams over mutual TLS, judges each result with the check
//! rules, keeps fleet history and serves it over HTTP.

pub mod alerts;
pub mod api;
pub mod certs;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod group_commit;
pub mod http_serve;
pub mod ingest;
pub mod labels;
pub mod leader;
pub mod listen;
pub mod nagios;
pub mod notify;
pub mod report;
pub mod retention;
pub mod server;
pub mod silence;
pub mod tls;

pub use backwatch_rules as rules;
pub use backwatch_rules::{human, status};
pub use backwatch_store as store;
