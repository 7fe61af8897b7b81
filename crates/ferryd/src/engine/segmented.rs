//! Multi-connection downloads from the origin (aria2's `-x`): a large file from an origin
//! that accepts ranges is split into segments fetched in parallel into the same part file
//! (`multisource`); a file whose segments were recorded is finished over them after a
//! crash or a stop, without asking the origin again. The planner decides when the origin
//! and the file suit it.
//!
//! May use: the engine's multi-connection runner, sources, task and errors; `model`.

use super::error::TransferError;
use super::multisource::{self, Sources};
use super::sources::Source;
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind, Segment};

/// A new multi-connection download: the origin's answer and the file's cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegments {
    /// The file's size.
    pub total: u64,
    /// The strong validator the ranges are asked under (`If-Range`).
    pub validator: String,
    /// The URL after redirects.
    pub final_url: String,
    /// The origin marked the content private or no-store.
    pub no_store: bool,
    /// The segments, one per connection at first.
    pub segments: Vec<Segment>,
}

/// Downloads a file that has no bytes yet in `new.segments`, with the job's connections.
pub(super) async fn start(task: &FileTask<'_>, new: NewSegments) -> Result<Outcome, TransferError> {
    task.owner
        .create_part(task.part.clone())
        .await
        .map_err(|e| TransferError::local_io("creating", &task.part, &e))?;
    task.events.segments_started(
        new.total,
        Some(new.validator.clone()),
        new.final_url,
        new.segments.clone(),
        new.no_store,
    );
    from_origin(task, new.segments, new.total, Some(new.validator)).await
}

/// Finishes the segments recorded for the file (their size and validator were recorded
/// with them; without either the file restarts).
pub(super) async fn resume(task: &FileTask<'_>) -> Result<Outcome, TransferError> {
    let Some(total) = task
        .record
        .bytes_total
        .filter(|_| task.record.validator.is_some() || task.record.expected_sha256.is_some())
    else {
        task.events.restarted();
        return Err(TransferError::new(
            ErrorContext::Daemon,
            ErrorKind::SegmentsIncomplete,
            "the recorded segments lack a size or validator; restarting the file",
        ));
    };
    let segments = task.record.segments.clone();
    from_origin(task, segments, total, task.record.validator.clone()).await
}

/// Fetches `segments` from the origin over the job's connections.
async fn from_origin(
    task: &FileTask<'_>,
    segments: Vec<Segment>,
    total: u64,
    validator: Option<String>,
) -> Result<Outcome, TransferError> {
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        validator,
    );
    let sources = Sources {
        total,
        start: vec![origin; task.connections.max(1) as usize],
        layout: None,
        reserve: Vec::new(),
    };
    multisource::run(task, segments, sources).await
}
