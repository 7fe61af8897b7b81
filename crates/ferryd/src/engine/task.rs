//! What one file's transfer is given ([`FileTask`]) and how it ends short of an error
//! ([`Outcome`]): the same for every scheme and every strategy.
//!
//! May use: the engine's counters, limits, sources, events and fleet port; `model`,
//! `owner`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::FileEvents;
use super::fleet::PeerFinder;
use super::partfile::Progress;
use super::ratelimit::RateLimiter;
use super::sources::SourceBytes;
use super::yielding::Yielder;
use crate::model::{FileRecord, JobOptions};
use crate::owner::Owner;

/// Everything one file's transfer needs.
pub struct FileTask<'a> {
    /// The job's options (headers, credentials, …).
    pub options: &'a JobOptions,
    /// The HTTP client for this job.
    pub client: &'a reqwest::Client,
    /// Bandwidth limits that apply (the job's, the daemon's).
    pub limits: &'a [Arc<RateLimiter>],
    /// Connections to use for a large file (1: one).
    pub connections: u32,
    /// The file as recorded when the transfer started (its offset is the checkpoint).
    pub record: &'a FileRecord,
    /// Its part file.
    pub part: PathBuf,
    /// Its byte counters.
    pub progress: Arc<Progress>,
    /// A read that delivers nothing for this long is a (transient) stall.
    pub stall_timeout: Duration,
    /// Fires when the run is stopped.
    pub cancel: CancellationToken,
    /// Where the transfer reports.
    pub events: &'a FileEvents,
    /// As whom files are opened.
    pub owner: &'a Owner,
    /// Where its bytes came from, as they arrive.
    pub sources: Arc<SourceBytes>,
    /// The fleet's peers, when this file may be fetched from them.
    pub peers: Option<Arc<dyn PeerFinder>>,
    /// The run's yielding controller, for a job of a background priority: it watches the
    /// connections responses are read from.
    pub yielder: Option<Arc<Yielder>>,
}

/// How a file's transfer ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte is in the part file (written, not yet synced).
    Done { len: u64 },
    /// Stopped by suspend, cancel, complete or shutdown; progress is synced.
    Cancelled,
}
