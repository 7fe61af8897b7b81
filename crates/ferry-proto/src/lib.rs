//! Generated gRPC types and stubs for ferry's wire contract, package `ferry.v1`.
//!
//! The source of truth is `proto/ferry/v1/` at the workspace root, one file per concern:
//!
//! - `common.proto`: `Job`, `File` and the enums they use;
//! - `jobs.proto`: service `Jobs` ([`v1::jobs_client`], [`v1::jobs_server`]);
//! - `notifications.proto`: service `Notifications`;
//! - `queries.proto`: service `Queries`;
//! - `daemon.proto`: service `Daemon`;
//! - `peers.proto`: service `Peers` (peer caching: status, the cache).

#![allow(clippy::all, missing_docs)]

/// Package `ferry.v1`.
pub mod v1 {
    tonic::include_proto!("ferry.v1");

    /// Encoded `FileDescriptorSet` of the package (every file), for gRPC server
    /// reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));

    /// The full names of the package's services, as reflection lists them.
    pub const SERVICE_NAMES: [&str; 5] = [
        "ferry.v1.Jobs",
        "ferry.v1.Notifications",
        "ferry.v1.Queries",
        "ferry.v1.Daemon",
        "ferry.v1.Peers",
    ];
}
