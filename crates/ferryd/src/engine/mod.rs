//! The transfer engine: the scheduler that starts jobs by priority, the worker that runs
//! one job's files in order, and the transfer code per scheme.

pub mod error;
pub mod file;
pub mod http;
pub mod netclient;
pub mod partfile;
pub mod ratelimit;
pub mod scheduler;
pub mod segmented;
pub mod tlsprobe;
pub mod upload;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::FileRecord;
use partfile::Progress;
pub use worker::FileEvents;

/// Everything one file's transfer needs.
pub struct FileTask<'a> {
    /// The job's options (headers, credentials, …).
    pub options: &'a crate::model::JobOptions,
    /// The HTTP client for this job.
    pub client: &'a reqwest::Client,
    /// Bandwidth limits that apply (the job's, the daemon's).
    pub limits: &'a [Arc<ratelimit::RateLimiter>],
    /// Connections to use for a large file (1: one).
    pub connections: u32,
    /// The file as recorded when the transfer started (its offset is the checkpoint).
    pub record: &'a FileRecord,
    pub part: PathBuf,
    pub progress: Arc<Progress>,
    /// A read that delivers nothing for this long is a (transient) stall.
    pub stall_timeout: Duration,
    pub cancel: CancellationToken,
    pub events: &'a FileEvents,
}

/// How a file's transfer ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte is in the part file (written, not yet synced).
    Done { len: u64 },
    /// Stopped by suspend, cancel, complete or shutdown; progress is synced.
    Cancelled,
}

/// Schemes ferry transfers.
pub const SCHEMES: &[&str] = &["http", "https", "file"];
