//! ferryd: the daemon of ferry, a background intelligent transfer service for Linux.
//!
//! `rpc/` serves gRPC on a per-user Unix socket and calls the `service` facade, which owns
//! the jobs, writes them through to `store/` (SQLite) and hands runnable jobs to
//! `engine/` (scheduler, workers, transfers per scheme).

pub mod config;
pub mod daemon;
pub mod engine;
pub mod model;
pub mod notify;
pub mod owner;
pub mod paths;
pub mod query;
pub mod rpc;
pub mod service;
pub mod store;
