//! Backwatch's wire contract and the domain types both sides share. Shared plumbing that is
//! not the contract (configuration loading, CLI helpers, backoff, error chains) is
//! `backwatch-common`.
//!
//! The generated code (committed under `src/gen/`, checked by `tests/regen.rs`) stays inside
//! the private `gen` module; `wire` re-exports what the transport code needs. Probes and rules
//! work on the types of [`model`], converted at the boundary in [`convert`].

#[allow(clippy::all, warnings)]
mod generated {
    include!("gen/backwatch.v1.rs");
}

pub mod convert;
pub mod model;

/// Generated message types and gRPC stubs, for the transport code only (agent `link`,
/// collector `ingest`).
pub mod wire {
    pub use crate::generated::agent_message::Payload as AgentPayload;
    pub use crate::generated::collector_message::Payload as CollectorPayload;
    pub use crate::generated::command::Action as CommandAction;
    pub use crate::generated::enrollment_client::EnrollmentClient;
    pub use crate::generated::enrollment_server::{Enrollment, EnrollmentServer};
    pub use crate::generated::ingest_client::IngestClient;
    pub use crate::generated::ingest_server::{Ingest, IngestServer};
    pub use crate::generated::probe_result::Observation as WireObservation;
    pub use crate::generated::{
        Ack, AgentMessage, BackupDirObservation, CollectorMessage, Command, CommandReply,
        DiskObservation, Hello, PendingSource, Ping, Pong, ProbeKind, ProbeResult, Rejected,
        ResultBatch, RunProbeNow, Unsupported, WalArchiveObservation, Welcome,
    };
    pub use crate::generated::{EnrollReply, EnrollRequest, RenewRequest};
    pub use prost::Message;

    /// gRPC metadata key of a `Renew` refused with FAILED_PRECONDITION because renewal of the
    /// presented certificate has not opened yet: when it opens, RFC 3339. The agent waits
    /// until then instead of retrying.
    pub const RENEW_OPENS_AT: &str = "backwatch-renew-opens-at";
    pub use prost_types::Timestamp;
}
