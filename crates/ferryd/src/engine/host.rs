//! What the engine needs from the owner of the jobs (the service), and what it reports
//! back: a trait the engine owns, so the engine never names the service.
//!
//! Every report carries the run it comes from; the host ignores reports of a run that is
//! no longer the job's current one, so a suspend or cancel that raced with a report wins.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::error::TransferError;
use super::live::LiveRun;
use crate::model::{FileRange, FileRecord, JobRecord, Segment};
use crate::owner::Owner;

/// Identifies one run of a job's worker.
pub type RunId = u64;

/// What one run transfers.
pub struct RunPlan {
    /// The job as it was when the run started.
    pub job: JobRecord,
    /// Its files, with their recorded (durable) progress.
    pub files: Vec<FileRecord>,
    /// As whom the run touches the file system.
    pub owner: Owner,
    /// Where an upload-reply job keeps the server's reply.
    pub reply_path: Option<PathBuf>,
    /// What is left of the job's `max_transfer_time` (measured on the monotonic clock
    /// since it was first queued); `None` without a limit.
    pub transfer_time_left: Option<std::time::Duration>,
    /// The job's failures in a row since a byte last moved: a URL that keeps failing with
    /// network errors counts as failed for good after a few (`mirrors.rs`).
    pub failures_in_a_row: u32,
}

/// How a file's transfer is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStart {
    /// The file's size, when known.
    pub total: Option<u64>,
    /// The validator the bytes are fetched under (ETag, Last-Modified, source snapshot).
    pub validator: Option<String>,
    /// The URL after redirects (a tus upload's own URL).
    pub final_url: Option<String>,
    /// Where the bytes continue.
    pub offset: u64,
    /// The origin marked the content private or no-store: never cached for peers.
    pub no_store: bool,
}

/// What a run reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// About to connect (or open the source).
    Connecting,
    /// A file's source answered.
    FileStarted { index: u32, start: FileStart },
    /// A file is fetched over several connections, in these segments.
    SegmentsStarted {
        index: u32,
        total: u64,
        validator: Option<String>,
        final_url: String,
        segments: Vec<Segment>,
        no_store: bool,
    },
    /// A file of ranges (or on demand) is fetched in these segments: `total` bytes of
    /// ranges, of which the segments' `done` are on disk already.
    RangesStarted {
        index: u32,
        /// The remote file's size, when the server said it.
        size: Option<u64>,
        total: u64,
        validator: Option<String>,
        final_url: String,
        segments: Vec<Segment>,
    },
    /// These ranges of a file are on disk (synced), in remote offsets (BITS:
    /// `IBackgroundCopyCallback3::FileRangesTransferred`); `segments` are the file's
    /// segments now (recorded before anyone hears of the ranges).
    RangesTransferred {
        index: u32,
        ranges: Vec<FileRange>,
        segments: Vec<Segment>,
    },
    /// The origin marked a file's content private or no-store.
    NoPeerCache { index: u32 },
    /// The headers of the last response of a file's transfer, as kept
    /// ([`crate::model::kept_response_headers`]).
    ResponseHeaders {
        index: u32,
        headers: Vec<(String, String)>,
    },
    /// Bytes of a file from peers were rejected: it comes from the origin only from now on.
    OriginOnly { index: u32 },
    /// These peers sent bytes of a file that was then downloaded and checked.
    PeersUsed { index: u32, peers: Vec<String> },
    /// A file matched its expected SHA-256 (given with it or by the peers).
    FileVerified { index: u32 },
    /// Bytes moved (at most every [`super::live::PROGRESS_INTERVAL_MS`] ms per job).
    Progressed,
    /// A file starts over from zero (its content changed, or a range was refused).
    FileRestarted { index: u32 },
    /// Time to record the durable offsets ([`LiveRun`] holds them).
    Checkpoint,
    /// Every byte of a file is in its part file (not yet synced).
    FileDownloaded { index: u32, len: u64 },
    /// An upload-reply job's reply is stored at this path.
    ReplyStored { path: PathBuf },
}

/// The side of the service the engine talks to.
#[async_trait::async_trait]
pub trait Host: Send + Sync + 'static {
    /// Makes `run` the current run of `job` if the job is still queued, and returns what
    /// to transfer; `live` is where the run's byte counters can be read meanwhile.
    fn claim(&self, job: Uuid, run: RunId, live: Arc<LiveRun>) -> Option<RunPlan>;

    /// The retry time of a job in `transient_error` has come.
    fn retry_due(&self, job: Uuid);

    /// Something happened in the run.
    fn report(&self, job: Uuid, run: RunId, report: Report);

    /// Files a stopped run finished and synced: they count as completed. Returns once
    /// that is durable.
    async fn files_completed(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>);

    /// Every file is synced: the job is transferred. Returns as soon as the state is
    /// changed (it becomes durable in the background).
    async fn transferred(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>);

    /// The URL file `index` is fetched from failed for good: the file moves to URL `to`
    /// (0: its remote_url, `i`: its mirror `i - 1`), keeping its durable bytes. Returns
    /// the file as it stands now (durable offset, validator, segments), for the next
    /// attempt; `None` when `run` is no longer the job's current run.
    fn switch_url(&self, job: Uuid, run: RunId, index: u32, to: u32) -> Option<FileRecord>;

    /// The run failed (file `file_index`, when one file caused it).
    fn failed(&self, job: Uuid, run: RunId, file_index: Option<u32>, err: TransferError);

    /// The run's worker has returned (or panicked).
    fn run_finished(&self, job: Uuid, run: RunId);
}
