//! Files of byte ranges (BITS: `IBackgroundCopyJob3::AddFileWithRanges`) and on-demand
//! files (BITS: `IBackgroundCopyFile6`): only the ranges are fetched, each over `Range`
//! requests (several connections when the job allows them), into one part file: packed
//! one after the other in the order given for a file added with ranges, each at its own
//! offset for an on-demand file (`model::ranges` says why). The ranges are the segments
//! of the multi-connection runner (`multisource`), whose recorded progress says which
//! bytes are on disk: a cut or a crash resumes each range where it stopped, and a server
//! that ignores `Range` (a `200` with the whole file) fails the file without a byte of
//! that answer written (`rangeconn`).
//!
//! An on-demand file fetches what was requested, tells the host which ranges landed,
//! then waits for the next request (`LiveRun::request_ranges`) until its job is
//! completed; once every byte of the file is there, it is transferred.
//!
//! May use: the probe, the multi-connection runner, sources, task, events, errors;
//! `model`.

use std::sync::Arc;

use super::error::TransferError;
use super::multisource::{self, Sources};
use super::probe::{probe, Probed};
use super::sources::Source;
use super::task::{FileTask, Outcome};
use crate::model::ranges::{self, Layout};
use crate::model::{ErrorContext, ErrorKind, FileRange, Segment};

/// What the origin told of the file before its ranges are fetched.
struct Remote {
    size: Option<u64>,
    validator: Option<String>,
    final_url: String,
}

/// Downloads the ranges of `task`'s file (or, on demand, those requested).
pub(super) async fn download(task: FileTask<'_>) -> Result<Outcome, TransferError> {
    let head = match probe(&task).await {
        Probed::Stopped => return Ok(Outcome::Cancelled),
        Probed::Nothing => None,
        Probed::Head(h) => Some(h),
    };
    let remote = Remote {
        size: head.as_ref().and_then(|h| h.length),
        validator: head.as_ref().and_then(|h| h.validator.clone()),
        final_url: head
            .as_ref()
            .map_or_else(|| task.record.remote_url.clone(), |h| h.final_url.clone()),
    };
    let mut segments = task.record.segments.clone();
    if !segments.is_empty()
        && task.record.validator.is_some()
        && remote.validator != task.record.validator
    {
        // The remote file changed since its ranges were fetched: they start over.
        task.events.restarted();
        segments.clear();
    }
    if task.record.ranges.on_demand {
        on_demand(&task, remote, segments).await
    } else {
        added(&task, remote, segments).await
    }
}

/// A file added with ranges: fetches them, packed in their order into the part file.
async fn added(
    task: &FileTask<'_>,
    remote: Remote,
    mut segments: Vec<Segment>,
) -> Result<Outcome, TransferError> {
    let resolved = ranges::resolve(&task.record.ranges.ranges, remote.size).map_err(invalid)?;
    let layout = Layout::packed(&resolved);
    if segments.is_empty() {
        segments = ranges::uncovered(&resolved, &[]);
    }
    prepare_part(task, &segments, Some(layout.local_len)).await?;
    let total = layout.local_len;
    task.events.ranges_started(
        remote.size,
        total,
        remote.validator.clone(),
        remote.final_url.clone(),
        segments.clone(),
    );
    let outcome = fetch(task, &remote, segments.clone(), total, layout).await?;
    if let Outcome::Done { .. } = outcome {
        let landed = resolved
            .iter()
            .map(|&(s, e)| FileRange::from_bounds(s, e))
            .collect();
        task.events.ranges_transferred(landed, all_done(segments));
        return Ok(Outcome::Done { len: total });
    }
    Ok(outcome)
}

/// An on-demand file: fetches what is requested, as it is requested, each range at its
/// own offset, until the run is stopped or the whole file is there.
async fn on_demand(
    task: &FileTask<'_>,
    remote: Remote,
    mut segments: Vec<Segment>,
) -> Result<Outcome, TransferError> {
    let requests = task.events.on_demand();
    let mut requested = task.record.ranges.ranges.clone();
    let mut position = task.record.ranges.position;
    prepare_part(task, &segments, remote.size).await?;
    let layout = Layout::in_place(remote.size.unwrap_or(0));
    loop {
        let (more, at) = requests.take();
        if !more.is_empty() {
            requested = ranges::merge(&requested, &more);
        }
        if let Some(at) = at {
            position = at;
        }
        let resolved = ranges::resolve(&requested, remote.size).map_err(invalid)?;
        let new = ranges::uncovered(&resolved, &segments);
        segments.extend(new);
        prioritise(&mut segments, position);
        let total: u64 = segments.iter().map(|s| s.end - s.start).sum();
        let pending: Vec<FileRange> = segments
            .iter()
            .filter(|s| s.done < s.end - s.start)
            .map(|s| FileRange::from_bounds(s.start + s.done, s.end))
            .collect();
        task.events.ranges_started(
            remote.size,
            total,
            remote.validator.clone(),
            remote.final_url.clone(),
            segments.clone(),
        );
        if !pending.is_empty() {
            match fetch(task, &remote, segments.clone(), total, layout.clone()).await? {
                Outcome::Cancelled => return Ok(Outcome::Cancelled),
                Outcome::Done { .. } => {
                    segments = all_done(segments);
                    task.events
                        .ranges_transferred(ranges::merge(&pending, &[]), segments.clone());
                }
            }
        }
        if let Some(size) = remote.size {
            if ranges::filled(&segments) == [FileRange::new(0, size)] {
                // Every byte of the file is there: it is transferred, as in BITS.
                return Ok(Outcome::Done { len: size });
            }
        }
        tokio::select! {
            _ = task.cancel.cancelled() => return Ok(Outcome::Cancelled),
            _ = requests.requested() => {}
        }
    }
}

/// Puts the segments of the bytes the application reads next first: those that end
/// after `position`, by offset, then those before it.
fn prioritise(segments: &mut [Segment], position: u64) {
    segments.sort_by_key(|s| (s.end <= position, s.start));
}

/// Creates the part file when no byte of the file is recorded (else keeps it), and makes
/// it `len` bytes long when that is known: bytes not downloaded read as zeros.
async fn prepare_part(
    task: &FileTask<'_>,
    segments: &[Segment],
    len: Option<u64>,
) -> Result<(), TransferError> {
    let fresh = segments.iter().all(|s| s.done == 0);
    let file = if fresh {
        task.owner.create_part(task.part.clone()).await
    } else {
        task.owner.reopen_part(task.part.clone()).await
    }
    .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
    if let Some(len) = len {
        let grows = file.metadata().map(|m| m.len() < len).unwrap_or(true);
        if grows {
            file.set_len(len)
                .map_err(|e| TransferError::local_io("sizing", &task.part, &e))?;
        }
    }
    Ok(())
}

/// Fetches the unfinished `segments` from the origin over the job's connections.
async fn fetch(
    task: &FileTask<'_>,
    remote: &Remote,
    segments: Vec<Segment>,
    total: u64,
    layout: Layout,
) -> Result<Outcome, TransferError> {
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        remote.validator.clone(),
    );
    let sources = Sources {
        total,
        start: vec![origin; task.connections.max(1) as usize],
        reserve: Vec::new(),
        layout: Some(Arc::new(layout)),
    };
    multisource::run(task, segments, sources).await
}

/// `segments`, every byte of them on disk.
fn all_done(mut segments: Vec<Segment>) -> Vec<Segment> {
    for s in &mut segments {
        s.done = s.end - s.start;
    }
    segments
}

fn invalid(message: String) -> TransferError {
    TransferError::new(ErrorContext::RemoteFile, ErrorKind::InvalidRange, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_the_bytes_read_next_come_first() {
        let seg = |start, end| Segment {
            start,
            end,
            done: 0,
        };
        let mut s = vec![seg(0, 10), seg(50, 60), seg(20, 30), seg(90, 95)];
        prioritise(&mut s, 25);
        let starts: Vec<u64> = s.iter().map(|s| s.start).collect();
        assert_eq!(starts, vec![20, 50, 90, 0]);
    }
}
