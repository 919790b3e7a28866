//! Backwatch collector: takes agent streams over mutual TLS, judges each result with the check
//! rules, keeps fleet history and serves it over HTTP.

pub mod status;
pub mod store;
