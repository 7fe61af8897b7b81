//! Jobs and files as clients see them (with live byte counts), and the changes of jobs
//! the service broadcasts to watchers, event queries and notifications.

use std::sync::Arc;

use super::{FileRecord, JobRecord, Totals};

/// A job with the totals of its files, as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub job: JobRecord,
    pub totals: Totals,
    /// Bytes per second over the last few seconds while a run transfers the job; else 0.
    pub bytes_per_second: u64,
    /// Queued and held back because the network is metered and the job pauses then.
    pub waiting_for_unmetered: bool,
    /// True while the run yields to other traffic (its rate is held to the queueing
    /// delay it measures: a job of a background priority, download or upload).
    pub yielding: bool,
}

/// A file with its live byte count.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView {
    pub file: FileRecord,
    pub bytes_transferred: u64,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
}

/// A change of a job, broadcast to watchers, event queries and notifications.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub kind: ChangeKind,
    pub current: Arc<JobView>,
    pub previous: Option<Arc<JobView>>,
}
