//! Generated gRPC types and stubs for ferry's wire contract, package `ferry.v1`.
//!
//! The source of truth is `proto/ferry/v1/ferry.proto` at the workspace root.

#![allow(clippy::all, missing_docs)]

/// Package `ferry.v1`.
pub mod v1 {
    tonic::include_proto!("ferry.v1");

    /// Encoded `FileDescriptorSet` of the package, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ferry_descriptor.bin"));
}
