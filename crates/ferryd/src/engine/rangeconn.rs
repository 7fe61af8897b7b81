//! One connection to a place that serves a file's bytes, as every strategy uses it: a
//! request or a body read raced against the run's stop and the stall timeout, and the
//! fetch of the rest of a segment into the part file (`Range` and `If-Range` asked, the
//! answer's `Content-Range` checked against what was asked, the bytes paced, counted and
//! written at the segment's offset).
//!
//! May use: the engine's sources, segment table, part-file writer, rate limits, yielding
//! controller, events, HTTP metadata and errors.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::error::{self, TransferError};
use super::events::FileEvents;
use super::httpmeta;
use super::netclient;
use super::partfile::Writer;
use super::ratelimit::{consume_all, RateLimiter};
use super::segtable::Seg;
use super::sources::{Source, SourceBytes};
use super::task::FileTask;
use super::yielding::Yielder;
use crate::model::ranges::Layout;
use crate::model::{Credentials, ErrorContext, ErrorKind};

/// A peer that sends nothing for this long is dropped (the origin's own stall timeout
/// applies to the origin).
pub(super) const PEER_STALL: Duration = Duration::from_secs(10);

/// How a wait on the network ended.
pub(super) enum Raced<T> {
    /// The run was stopped (suspend, cancel, complete, shutdown).
    Stopped,
    /// Nothing came within the stall timeout.
    Stalled,
    Ready(T),
}

/// `fut`'s output, unless `stop` fires first (`None`).
pub(super) async fn unless_stopped<F: Future>(
    stop: &CancellationToken,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        _ = stop.cancelled() => None,
        out = fut => Some(out),
    }
}

/// `fut`'s output, unless `stop` fires first or it takes longer than `stall`.
pub(super) async fn race<F: Future>(
    stop: &CancellationToken,
    stall: Duration,
    fut: F,
) -> Raced<F::Output> {
    match unless_stopped(stop, tokio::time::timeout(stall, fut)).await {
        None => Raced::Stopped,
        Some(Err(_)) => Raced::Stalled,
        Some(Ok(out)) => Raced::Ready(out),
    }
}

/// Sends `req` to `label` with the job's `credentials` (a Negotiate challenge is
/// answered: engine/netclient.rs `send`): `None` when stopped first; no answer within
/// `stall`, or a connection that fails, is an error.
pub(super) async fn send(
    stop: &CancellationToken,
    stall: Duration,
    req: reqwest::RequestBuilder,
    credentials: Option<&Credentials>,
    label: &str,
) -> Result<Option<reqwest::Response>, TransferError> {
    match race(stop, stall, netclient::send(req, credentials, label)).await {
        Raced::Stopped => Ok(None),
        Raced::Stalled => Err(stalled(label, "no answer", stall)),
        Raced::Ready(Err(e)) => Err(e),
        Raced::Ready(Ok(r)) => Ok(Some(r)),
    }
}

/// What reading a response body gave next.
pub(super) enum Next {
    Chunk(Bytes),
    End,
    /// The run was stopped.
    Stopped,
}

/// The next chunk of `response`'s body; a read that delivers nothing within `stall`, or a
/// broken connection, is an error.
pub(super) async fn next_chunk(
    stop: &CancellationToken,
    stall: Duration,
    response: &mut reqwest::Response,
    label: &str,
) -> Result<Next, TransferError> {
    match race(stop, stall, response.chunk()).await {
        Raced::Stopped => Ok(Next::Stopped),
        Raced::Stalled => Err(stalled(label, "no data", stall)),
        Raced::Ready(Err(e)) => Err(error::from_reqwest(&e, label)),
        Raced::Ready(Ok(None)) => Ok(Next::End),
        Raced::Ready(Ok(Some(chunk))) => Ok(Next::Chunk(chunk)),
    }
}

/// `label` sent nothing (`what`: no answer, no data) for `after`.
pub(super) fn stalled(label: &str, what: &str, after: Duration) -> TransferError {
    TransferError::new(
        ErrorContext::Transport,
        ErrorKind::Stalled,
        format!("{label}: {what} for {} s", after.as_secs()),
    )
}

/// One connection of a multi-connection download: where it fetches from and where its
/// bytes go.
pub(super) struct ConnCtx {
    pub(super) source: Source,
    pub(super) limits: Vec<Arc<RateLimiter>>,
    pub(super) yielder: Option<Arc<Yielder>>,
    pub(super) part: PathBuf,
    /// The part file, opened once for the whole download.
    pub(super) file: std::fs::File,
    pub(super) stall: Duration,
    pub(super) events: FileEvents,
    pub(super) stop: CancellationToken,
    pub(super) bytes: Arc<SourceBytes>,
    /// Where the remote file's bytes land in the part file, for a file of ranges (packed
    /// one after the other); `None`: each at its own offset.
    pub(super) layout: Option<Arc<Layout>>,
    /// The file is downloaded as ranges: a `200` is the whole file, never written.
    pub(super) ranged: bool,
}

impl ConnCtx {
    /// A connection of `task`'s download to `source`, writing through a copy of `file`,
    /// ended by `stop`. A peer gets at most [`PEER_STALL`] to send something.
    pub(super) fn new(
        task: &FileTask<'_>,
        source: Source,
        file: &std::fs::File,
        stop: &CancellationToken,
    ) -> Result<ConnCtx, TransferError> {
        Ok(ConnCtx {
            stall: if source.is_origin() {
                task.stall_timeout
            } else {
                PEER_STALL.min(task.stall_timeout)
            },
            source,
            limits: task.limits.to_vec(),
            yielder: task.yielder.clone(),
            part: task.part.clone(),
            file: file
                .try_clone()
                .map_err(|e| TransferError::local_io("opening", &task.part, &e))?,
            events: task.events.clone(),
            stop: stop.clone(),
            bytes: task.sources.clone(),
            layout: None,
            ranged: !task.record.ranges.is_whole(),
        })
    }
}

/// Fetches the rest of `seg` from `ctx`'s source.
pub(super) async fn fetch(ctx: &ConnCtx, seg: &Seg) -> Result<(), TransferError> {
    let pos = seg.progress.written.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    if pos >= end {
        return Ok(());
    }
    let label = ctx.source.label();
    let req = ctx.source.range_request(pos, end);
    let credentials = ctx.source.credentials();
    let Some(resp) = send(&ctx.stop, ctx.stall, req, credentials, &label).await? else {
        return Ok(());
    };
    let _watch = ctx.yielder.as_ref().and_then(|y| y.watch(&resp));
    check_range_answer(ctx, &resp, pos, &label)?;
    let file = ctx
        .file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &ctx.part, &e))?;
    let delta = ctx.layout.as_ref().map_or(0, |l| l.delta(pos));
    let writer = Writer::start_mapped(file, pos, delta, seg.progress.clone())
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e))?;
    let at = write_body(ctx, seg, resp, writer, pos, &label).await?;
    if at < seg.end.load(Ordering::Acquire) && !ctx.stop.is_cancelled() {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!("{label}: a segment's connection ended early"),
        ));
    }
    Ok(())
}

/// A range's answer is a 206 whose `Content-Range` starts where it was asked; a 200 from
/// the origin means the file changed there. For a file of ranges, a 200 whose validator is
/// the one the ranges were asked under (or that came without `If-Range`) means the server
/// ignores `Range`: its body is the whole file and is never written (BITS fails such a job
/// with `BG_E_INSUFFICIENT_RANGE_SUPPORT`).
fn check_range_answer(
    ctx: &ConnCtx,
    resp: &reqwest::Response,
    pos: u64,
    label: &str,
) -> Result<(), TransferError> {
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            if httpmeta::content_range(resp.headers()).map(|r| r.start) != Some(pos) {
                return Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::BadRange,
                    format!("{label}: asked for bytes from {pos}, it sent another range"),
                ));
            }
            Ok(())
        }
        StatusCode::OK if ctx.ranged && !changed_since(ctx, resp) => Err(TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::InsufficientRangeSupport,
            format!(
                "{label}: asked for bytes {pos}- of the file, the server sent the whole file \
                 (200 OK): it does not serve byte ranges, so the file's ranges cannot be \
                 downloaded from it; nothing of that answer was written"
            ),
        )),
        StatusCode::OK if ctx.source.is_origin() => Err(TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::ContentChanged,
            format!("{label}: the file changed on the server; downloading it again"),
        )),
        s => Err(httpmeta::status_error(s, resp.headers(), label)),
    }
}

/// True when a `200` to a range asked under `If-Range` carries another validator than
/// the one asked under: the content changed (else the server ignored `Range`).
fn changed_since(ctx: &ConnCtx, resp: &reqwest::Response) -> bool {
    match (&ctx.source.validator, httpmeta::validator(resp.headers())) {
        (Some(asked), Some(now)) => *asked != now,
        _ => false,
    }
}

/// Writes `resp`'s body from `pos` until the segment's end (which another connection may
/// move closer meanwhile), then syncs what arrived; where the bytes got to.
async fn write_body(
    ctx: &ConnCtx,
    seg: &Seg,
    mut resp: reqwest::Response,
    writer: Writer,
    pos: u64,
    label: &str,
) -> Result<u64, TransferError> {
    let mut at = pos;
    let result = loop {
        let limit = seg.end.load(Ordering::Acquire);
        if at >= limit {
            break Ok(());
        }
        let mut chunk = match next_chunk(&ctx.stop, ctx.stall, &mut resp, label).await {
            Ok(Next::Chunk(chunk)) => chunk,
            Ok(Next::End | Next::Stopped) => break Ok(()),
            Err(e) => break Err(e),
        };
        let room = (limit - at) as usize;
        if chunk.len() > room {
            // Another connection took over the rest of this segment.
            chunk.truncate(room);
        }
        let n = chunk.len() as u64;
        at += n;
        consume_all(&ctx.limits, chunk.len()).await;
        if writer.write(chunk).await.is_err() {
            let e = writer
                .finish(false)
                .await
                .err()
                .unwrap_or_else(|| std::io::Error::other("writer stopped"));
            return Err(TransferError::local_io("writing", &ctx.part, &e));
        }
        ctx.bytes.add(&ctx.source.kind, n);
        ctx.events.bytes(n);
    };
    let finished = writer
        .finish(true)
        .await
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e));
    result?;
    finished?;
    Ok(at)
}
