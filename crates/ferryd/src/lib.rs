//! ferryd: the daemon of ferry, a background intelligent transfer service for Linux.
//!
//! `rpc/` serves gRPC on a Unix socket (one user's, or the machine's in system mode) and
//! calls the `service` facade, which owns the jobs, writes them through to `store/`
//! (SQLite) and hands runnable jobs to `engine/` (scheduler, workers, transfers per
//! scheme); `owner/` does every job's file-system work and process starts as its owner.
//! `privsep/` is the system-wide daemon: a root broker that hands each user's connections
//! to a worker process of that user (which runs the per-user daemon's code). `metrics/`
//! serves the facade's counts as OpenMetrics text when `[metrics] listen` is set.

pub mod cli;
pub mod config;
pub mod costwatch;
pub mod daemon;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod netwatch;
pub mod notify;
pub mod owner;
pub mod paths;
pub mod peers;
pub mod privsep;
pub mod query;
pub mod rpc;
pub mod service;
pub mod store;
