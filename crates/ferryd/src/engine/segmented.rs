//! Multi-connection downloads (aria2's `-x`): a large file from a server that accepts
//! ranges is split into segments fetched in parallel into the same part file. A
//! connection that finishes early takes half of the largest remaining segment (work
//! stealing). Each segment's durable progress is recorded, so a crash resumes every
//! segment where it stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::error::{self, TransferError};
use super::netclient::decorate;
use super::partfile::{Progress, Writer};
use super::ratelimit::consume_all;
use super::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind, Segment};

/// Files smaller than two segments of this size use one connection.
pub const MIN_SEGMENT: u64 = 4 << 20;
/// A segment is split for another connection only if at least this much remains.
const MIN_STEAL: u64 = 2 << 20;

/// One segment while it transfers: `[start, end)`, `end` shrinking when another
/// connection steals its tail; `progress` holds absolute offsets.
#[derive(Debug)]
pub struct Seg {
    start: u64,
    end: AtomicU64,
    progress: Arc<Progress>,
}

/// Every segment of a file, shared with the service for progress and checkpoints.
#[derive(Debug, Default)]
pub struct SegTable {
    segs: Mutex<Vec<Arc<Seg>>>,
}

impl SegTable {
    fn new(segments: &[Segment]) -> SegTable {
        SegTable {
            segs: Mutex::new(
                segments
                    .iter()
                    .map(|s| {
                        Arc::new(Seg {
                            start: s.start,
                            end: AtomicU64::new(s.end),
                            progress: Progress::starting_at(s.start + s.done),
                        })
                    })
                    .collect(),
            ),
        }
    }

    /// The durable state, for the store.
    pub fn snapshot(&self) -> Vec<Segment> {
        self.segs
            .lock()
            .iter()
            .map(|s| Segment {
                start: s.start,
                end: s.end.load(Ordering::Acquire),
                done: s.progress.synced.load(Ordering::Acquire) - s.start,
            })
            .collect()
    }

    /// Bytes written so far (for display).
    pub fn written(&self) -> u64 {
        self.segs
            .lock()
            .iter()
            .map(|s| s.progress.written.load(Ordering::Relaxed) - s.start)
            .sum()
    }

    /// Bytes durable so far.
    pub fn synced(&self) -> u64 {
        self.snapshot().iter().map(|s| s.done).sum()
    }

    fn unfinished(&self) -> Vec<Arc<Seg>> {
        self.segs
            .lock()
            .iter()
            .filter(|s| s.progress.written.load(Ordering::Acquire) < s.end.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    /// Splits the segment with the most left to do, if worth it; returns the new tail.
    fn steal(&self) -> Option<Arc<Seg>> {
        let mut segs = self.segs.lock();
        let (victim, remaining) = segs
            .iter()
            .map(|s| {
                let left = s
                    .end
                    .load(Ordering::Acquire)
                    .saturating_sub(s.progress.written.load(Ordering::Acquire));
                (s.clone(), left)
            })
            .max_by_key(|(_, left)| *left)?;
        if remaining < 2 * MIN_STEAL {
            return None;
        }
        let pos = victim.progress.written.load(Ordering::Acquire);
        let split = pos + remaining / 2;
        let old_end = victim.end.swap(split, Ordering::AcqRel);
        if old_end <= split {
            victim.end.store(old_end, Ordering::Release);
            return None;
        }
        let tail = Arc::new(Seg {
            start: split,
            end: AtomicU64::new(old_end),
            progress: Progress::starting_at(split),
        });
        segs.push(tail.clone());
        Some(tail)
    }
}

/// What the segmented path decided.
pub enum Segmented {
    /// The server or the file does not suit several connections: use one.
    Fallback,
    Done(Outcome),
}

fn strong_validator(h: &HeaderMap) -> Option<String> {
    if let Some(e) = h.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !e.starts_with("W/") {
            return Some(e.to_string());
        }
    }
    h.get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Splits `[0, total)` into `n` segments.
pub fn split(total: u64, n: u64) -> Vec<Segment> {
    let n = n.max(1);
    let size = total.div_ceil(n);
    (0..n)
        .map(|i| Segment {
            start: i * size,
            end: ((i + 1) * size).min(total),
            done: 0,
        })
        .filter(|s| s.start < s.end)
        .collect()
}

/// Downloads with `connections` connections when the server and the file allow it.
pub async fn download(task: &FileTask<'_>, connections: u32) -> Result<Segmented, TransferError> {
    let url = task.record.remote_url.clone();
    let part = task.part.clone();
    let (segments, total, validator) = if task.record.segments.is_empty() {
        if task.record.bytes_transferred > 0 {
            // A single-connection download is under way: finish it that way.
            return Ok(Segmented::Fallback);
        }
        task.events.connecting();
        let head =
            super::http::identity(decorate(task.client.head(&url), task.options), task.options);
        let resp = tokio::select! {
            _ = task.cancel.cancelled() => return Ok(Segmented::Done(Outcome::Cancelled)),
            r = tokio::time::timeout(task.stall_timeout, head.send()) => match r {
                Ok(Ok(r)) => r,
                _ => return Ok(Segmented::Fallback),
            },
        };
        let h = resp.headers();
        let ranges = h
            .get(header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        // The header itself: reqwest reports a HEAD response's (empty) body length.
        let length = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| resp.status() == StatusCode::OK);
        let (Some(total), Some(validator)) = (length, strong_validator(h)) else {
            return Ok(Segmented::Fallback);
        };
        if !ranges || total < 2 * MIN_SEGMENT {
            return Ok(Segmented::Fallback);
        }
        let n = (connections as u64).min(total / MIN_SEGMENT);
        let segments = split(total, n);
        task.owner
            .create_part(part.clone())
            .await
            .map_err(|e| TransferError::local_io("creating", &part, &e))?;
        task.events.segments_started(
            total,
            validator.clone(),
            resp.url().to_string(),
            segments.clone(),
        );
        (segments, total, validator)
    } else {
        let (Some(total), Some(validator)) =
            (task.record.bytes_total, task.record.validator.clone())
        else {
            task.events.restarted();
            return Err(TransferError::new(
                ErrorContext::Daemon,
                ErrorKind::SegmentsIncomplete,
                "the recorded segments lack a size or validator; restarting the file",
            ));
        };
        (task.record.segments.clone(), total, validator)
    };

    // One open of the part file, as its owner; each connection writes through a copy of
    // the descriptor.
    let file = task
        .owner
        .reopen_part(part.clone())
        .await
        .map_err(|e| TransferError::local_io("opening", &part, &e))?;
    let table = Arc::new(SegTable::new(&segments));
    task.events.live_segments(table.clone());
    let stop = task.cancel.child_token();
    let mut workers = tokio::task::JoinSet::new();
    for seg in table.unfinished() {
        workers.spawn(run_connection(
            ConnCtx {
                client: task.client.clone(),
                options: task.options.clone(),
                limits: task.limits.to_vec(),
                url: url.clone(),
                validator: validator.clone(),
                part: part.clone(),
                file: file
                    .try_clone()
                    .map_err(|e| TransferError::local_io("opening", &part, &e))?,
                stall: task.stall_timeout,
                events: task.events.clone(),
                stop: stop.clone(),
            },
            table.clone(),
            seg,
        ));
    }
    let mut first_error = None;
    while let Some(r) = workers.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.cancel();
                first_error.get_or_insert(e);
            }
            Err(e) => {
                stop.cancel();
                first_error.get_or_insert(TransferError::internal(e));
            }
        }
    }
    if task.cancel.is_cancelled() {
        return Ok(Segmented::Done(Outcome::Cancelled));
    }
    if let Some(e) = first_error {
        if e.kind == ErrorKind::ContentChanged {
            task.events.restarted();
        }
        return Err(e);
    }
    if table.written() < total {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!("{url}: segments ended before the whole file arrived"),
        ));
    }
    Ok(Segmented::Done(Outcome::Done { len: total }))
}

struct ConnCtx {
    client: reqwest::Client,
    options: crate::model::JobOptions,
    limits: Vec<Arc<super::ratelimit::RateLimiter>>,
    url: String,
    validator: String,
    part: std::path::PathBuf,
    /// The part file, opened once for the whole download.
    file: std::fs::File,
    stall: std::time::Duration,
    events: super::FileEvents,
    stop: CancellationToken,
}

/// One connection: fetches its segment, then steals work until none is left.
async fn run_connection(
    ctx: ConnCtx,
    table: Arc<SegTable>,
    first: Arc<Seg>,
) -> Result<(), TransferError> {
    let mut seg = first;
    loop {
        fetch(&ctx, &seg).await?;
        if ctx.stop.is_cancelled() {
            return Ok(());
        }
        match table.steal() {
            Some(next) => seg = next,
            None => return Ok(()),
        }
    }
}

async fn fetch(ctx: &ConnCtx, seg: &Seg) -> Result<(), TransferError> {
    let pos = seg.progress.written.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    if pos >= end {
        return Ok(());
    }
    let req = super::http::identity(
        decorate(ctx.client.get(&ctx.url), &ctx.options),
        &ctx.options,
    )
    .header(header::RANGE, format!("bytes={pos}-{}", end - 1))
    .header(header::IF_RANGE, ctx.validator.as_str());
    let resp = tokio::select! {
        _ = ctx.stop.cancelled() => return Ok(()),
        r = tokio::time::timeout(ctx.stall, req.send()) => match r {
            Err(_) => return Err(TransferError::new(ErrorContext::Transport, ErrorKind::Stalled, format!("{}: no answer", ctx.url))),
            Ok(Err(e)) => return Err(error::from_reqwest(&e, &ctx.url)),
            Ok(Ok(r)) => r,
        },
    };
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let start = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(pos) {
                return Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::BadRange,
                    format!(
                        "{}: asked for bytes from {pos}, the server sent another range",
                        ctx.url
                    ),
                ));
            }
        }
        StatusCode::OK => {
            return Err(TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::ContentChanged,
                format!(
                    "{}: the file changed on the server; downloading it again",
                    ctx.url
                ),
            ))
        }
        s => {
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(error::parse_retry_after);
            return Err(error::from_status(s.as_u16(), &ctx.url, retry_after));
        }
    }
    let file = ctx
        .file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &ctx.part, &e))?;
    let writer = Writer::start(file, pos, seg.progress.clone())
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e))?;
    let mut at = pos;
    let mut resp = resp;
    loop {
        let limit = seg.end.load(Ordering::Acquire);
        if at >= limit {
            break;
        }
        let next = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            r = tokio::time::timeout(ctx.stall, resp.chunk()) => r,
        };
        match next {
            Err(_) => {
                let _ = writer.finish(true).await;
                return Err(TransferError::new(
                    ErrorContext::Transport,
                    ErrorKind::Stalled,
                    format!("{}: no data", ctx.url),
                ));
            }
            Ok(Err(e)) => {
                let _ = writer.finish(true).await;
                return Err(error::from_reqwest(&e, &ctx.url));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(mut chunk))) => {
                let room = (limit - at) as usize;
                if chunk.len() > room {
                    // Another connection took over the rest of this segment.
                    chunk.truncate(room);
                }
                at += chunk.len() as u64;
                let moved = chunk.len() as u64;
                consume_all(&ctx.limits, chunk.len()).await;
                if writer.write(chunk).await.is_err() {
                    let e = writer
                        .finish(false)
                        .await
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("writer stopped"));
                    return Err(TransferError::local_io("writing", &ctx.part, &e));
                }
                ctx.events.bytes(moved);
            }
        }
    }
    writer
        .finish(true)
        .await
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e))?;
    if at < seg.end.load(Ordering::Acquire) && !ctx.stop.is_cancelled() {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!("{}: a segment's connection ended early", ctx.url),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_file() {
        let s = split(10, 3);
        assert_eq!(s.first().unwrap().start, 0);
        assert_eq!(s.last().unwrap().end, 10);
        for w in s.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }

    #[test]
    fn stealing_halves_the_largest_remainder() {
        let t = SegTable::new(&[Segment {
            start: 0,
            end: 64 << 20,
            done: 0,
        }]);
        let tail = t.steal().expect("a big segment is split");
        assert_eq!(tail.start, 32 << 20);
        assert_eq!(tail.end.load(Ordering::Acquire), 64 << 20);
        assert_eq!(t.snapshot()[0].end, 32 << 20);
        let small = SegTable::new(&[Segment {
            start: 0,
            end: MIN_STEAL,
            done: 0,
        }]);
        assert!(small.steal().is_none());
    }
}
