//! What the agent and the collector share that is not the wire contract: loading a TOML
//! configuration with every problem named by file, line and key ([`config`]), the CLI's
//! completions, man pages and version ([`cli`]), the reconnect backoff ([`backoff`]) and error
//! chains for logs ([`error`]). The wire contract and the domain types are `backwatch-proto`.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod error;
