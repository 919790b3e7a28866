//! Builders that start real things (PostgreSQL, later the collector and agents) on free ports in
//! temp dirs, and the `eventually` helper to wait for them. Everything a builder starts is
//! stopped when the returned value is dropped, so a failing test leaves no process behind.

pub mod alerting;
pub mod alertmanager;
pub mod backup_tools;
pub mod browser;
pub mod clock;
pub mod fleet;
pub mod mounts;
pub mod pg;
pub mod seed;
pub mod smtp;
pub mod tls;
pub mod wait;
pub mod webhook;

pub use browser::Browser;
pub use fleet::{Agent, AgentBuilder, Certs, Collector, CollectorBuilder, Scene, bin, scene};
pub use mounts::{HungMount, Tmpfs};
pub use pg::{ArchiverStats, PgCluster, PgClusterBuilder};
pub use smtp::{Mail, Smtp, SmtpTls, count};
pub use wait::{consistently, eventually, eventually_sync, free_port};
pub use webhook::Webhook;
