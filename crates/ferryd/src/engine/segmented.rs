//! Multi-connection downloads (aria2's `-x`), from one or several sources: a large file
//! from an origin that accepts ranges is split into segments fetched in parallel into the
//! same part file; a file the fleet's peers hold is fetched from every peer at once, the
//! origin held in reserve. A connection that finishes early takes an orphaned segment or
//! half of the largest remaining one (work stealing, `segtable`). A failing peer is
//! dropped and its segment goes to the others, and the reserve (the origin) joins. Each
//! segment's durable progress is recorded, so a crash resumes every segment where it
//! stopped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::error::{self, TransferError};
use super::fleet::PeerFinder;
use super::httpmeta;
use super::netclient::for_download;
use super::partfile::Writer;
use super::ratelimit::consume_all;
use super::segtable::Seg;
pub use super::segtable::{split, SegTable, MIN_SEGMENT};
use super::sources::{Source, SourceBytes, SourceKind};
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind, Segment};

/// A peer that sends nothing for this long is dropped (the origin's own stall timeout
/// applies to the origin).
pub(super) const PEER_STALL: Duration = Duration::from_secs(10);

/// What the segmented path decided.
pub enum Segmented {
    /// The server or the file does not suit several connections: use one.
    Fallback,
    Done(Outcome),
}

/// The sources of a multi-source download.
pub(super) struct Plan {
    /// The file's size.
    pub total: u64,
    /// Connections started at once, one source each.
    pub sources: Vec<Source>,
    /// Connections started as soon as one fails (the origin, while peers serve).
    pub reserve: Vec<Source>,
}

/// Downloads from the origin with `connections` connections when the server and the
/// file allow it.
pub async fn download(task: &FileTask<'_>, connections: u32) -> Result<Segmented, TransferError> {
    let url = task.record.remote_url.clone();
    let part = task.part.clone();
    let (segments, total, validator) =
        if task.record.segments.is_empty() {
            if task.record.bytes_transferred > 0 {
                // A single-connection download is under way: finish it that way.
                return Ok(Segmented::Fallback);
            }
            task.events.connecting();
            let head = for_download(task.client.head(&url), task.options);
            let resp = tokio::select! {
                _ = task.cancel.cancelled() => return Ok(Segmented::Done(Outcome::Cancelled)),
                r = tokio::time::timeout(task.stall_timeout, head.send()) => match r {
                    Ok(Ok(r)) => r,
                    _ => return Ok(Segmented::Fallback),
                },
            };
            let h = resp.headers();
            let ranges = httpmeta::accepts_ranges(h);
            let length = httpmeta::content_length(h).filter(|_| resp.status() == StatusCode::OK);
            let (Some(total), Some(validator)) = (length, httpmeta::validator(h)) else {
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
                Some(validator.clone()),
                resp.url().to_string(),
                segments.clone(),
                httpmeta::no_store(h),
            );
            (segments, total, Some(validator))
        } else {
            let Some(total) = task.record.bytes_total.filter(|_| {
                task.record.validator.is_some() || task.record.expected_sha256.is_some()
            }) else {
                task.events.restarted();
                return Err(TransferError::new(
                    ErrorContext::Daemon,
                    ErrorKind::SegmentsIncomplete,
                    "the recorded segments lack a size or validator; restarting the file",
                ));
            };
            (
                task.record.segments.clone(),
                total,
                task.record.validator.clone(),
            )
        };
    let origin = Source::origin(task.client.clone(), url, task.options.clone(), validator);
    let sources = vec![origin; connections.max(1) as usize];
    let plan = Plan {
        total,
        sources,
        reserve: Vec::new(),
    };
    run(task, segments, plan).await.map(Segmented::Done)
}

/// Opens the part file once, as its owner (each connection writes through a copy of the
/// descriptor), and makes the table of `segments` that the connections take their work
/// from, shown live in the job's progress.
pub(super) async fn open_segments(
    task: &FileTask<'_>,
    segments: &[Segment],
) -> Result<(std::fs::File, Arc<SegTable>), TransferError> {
    let file = task
        .owner
        .reopen_part(task.part.clone())
        .await
        .map_err(|e| TransferError::local_io("opening", &task.part, &e))?;
    let table = Arc::new(SegTable::new(segments));
    task.events.live_segments(table.clone());
    Ok((file, table))
}

/// Fetches the unfinished `segments` of a file whose part file exists, over `plan`'s
/// sources.
pub(super) async fn run(
    task: &FileTask<'_>,
    segments: Vec<Segment>,
    plan: Plan,
) -> Result<Outcome, TransferError> {
    let part = task.part.clone();
    let (file, table) = open_segments(task, &segments).await?;
    let stop = task.cancel.child_token();
    let mut workers = tokio::task::JoinSet::new();
    let start =
        |workers: &mut tokio::task::JoinSet<_>, source: Source| -> Result<(), TransferError> {
            if let Some(seg) = table.take() {
                let ctx = ConnCtx {
                    limits: task.limits.to_vec(),
                    yielder: task.yielder.clone(),
                    part: part.clone(),
                    file: file
                        .try_clone()
                        .map_err(|e| TransferError::local_io("opening", &part, &e))?,
                    stall: if source.is_origin() {
                        task.stall_timeout
                    } else {
                        PEER_STALL.min(task.stall_timeout)
                    },
                    events: task.events.clone(),
                    stop: stop.clone(),
                    bytes: task.sources.clone(),
                    source,
                };
                workers.spawn(run_connection(ctx, table.clone(), seg));
            }
            Ok(())
        };
    for source in plan.sources {
        start(&mut workers, source)?;
    }
    let mut reserve = Some(plan.reserve);
    let mut first_error = None;
    while let Some(r) = workers.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(ConnError::Peer { peer, error })) => {
                tracing::info!(%peer, "dropping a peer: {}", error.message);
                if let Some(finder) = &task.peers {
                    finder.failed(&peer, &error.message);
                }
                if let Some(reserve) = reserve.take() {
                    for source in reserve {
                        start(&mut workers, source)?;
                    }
                }
            }
            Ok(Err(ConnError::Fatal(e))) => {
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
        return Ok(Outcome::Cancelled);
    }
    if let Some(e) = first_error {
        if e.kind == ErrorKind::ContentChanged {
            task.events.restarted();
        }
        return Err(e);
    }
    if table.written() < plan.total {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!(
                "{}: every source stopped before the whole file arrived",
                task.record.remote_url
            ),
        ));
    }
    Ok(Outcome::Done { len: plan.total })
}

pub(super) struct ConnCtx {
    pub(super) source: Source,
    pub(super) limits: Vec<Arc<super::ratelimit::RateLimiter>>,
    pub(super) yielder: Option<Arc<super::yielding::Yielder>>,
    pub(super) part: std::path::PathBuf,
    /// The part file, opened once for the whole download.
    pub(super) file: std::fs::File,
    pub(super) stall: Duration,
    pub(super) events: super::events::FileEvents,
    pub(super) stop: CancellationToken,
    pub(super) bytes: Arc<SourceBytes>,
}

/// How a connection failed.
enum ConnError {
    /// A peer failed: it is dropped, its segment goes to another connection.
    Peer { peer: String, error: TransferError },
    /// The download stops.
    Fatal(TransferError),
}

/// One connection: fetches its segment, then takes more work until none is left. A peer
/// that fails gives its segment up.
async fn run_connection(
    ctx: ConnCtx,
    table: Arc<SegTable>,
    first: Arc<Seg>,
) -> Result<(), ConnError> {
    let mut seg = first;
    loop {
        if let Err(error) = fetch(&ctx, &seg).await {
            return Err(match &ctx.source.kind {
                SourceKind::Peer(peer) if error.context != ErrorContext::LocalFile => {
                    seg.release();
                    ConnError::Peer {
                        peer: peer.clone(),
                        error,
                    }
                }
                _ => ConnError::Fatal(error),
            });
        }
        if ctx.stop.is_cancelled() {
            return Ok(());
        }
        match table.take() {
            Some(next) => seg = next,
            None => return Ok(()),
        }
    }
}

fn stalled(ctx: &ConnCtx, what: &str) -> TransferError {
    TransferError::new(
        ErrorContext::Transport,
        ErrorKind::Stalled,
        format!("{}: {what}", ctx.source.label()),
    )
}

/// Fetches the rest of `seg` from `ctx`'s source (the swarm fetches its pieces with it).
pub(super) async fn fetch(ctx: &ConnCtx, seg: &Seg) -> Result<(), TransferError> {
    let pos = seg.progress.written.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    if pos >= end {
        return Ok(());
    }
    let label = ctx.source.label();
    let req = ctx.source.range_request(pos, end);
    let resp = tokio::select! {
        _ = ctx.stop.cancelled() => return Ok(()),
        r = tokio::time::timeout(ctx.stall, req.send()) => match r {
            Err(_) => return Err(stalled(ctx, "no answer")),
            Ok(Err(e)) => return Err(error::from_reqwest(&e, &label)),
            Ok(Ok(r)) => r,
        },
    };
    let _watch = ctx.yielder.as_ref().and_then(|y| y.watch(&resp));
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
                    format!("{label}: asked for bytes from {pos}, it sent another range"),
                ));
            }
        }
        StatusCode::OK if ctx.source.is_origin() => {
            return Err(TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::ContentChanged,
                format!("{label}: the file changed on the server; downloading it again"),
            ))
        }
        s => return Err(httpmeta::status_error(s, resp.headers(), &label)),
    }
    let file = ctx
        .file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &ctx.part, &e))?;
    let writer = Writer::start(file, pos, seg.progress.clone())
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e))?;
    let mut at = pos;
    let mut resp = resp;
    let result = loop {
        let limit = seg.end.load(Ordering::Acquire);
        if at >= limit {
            break Ok(());
        }
        let next = tokio::select! {
            _ = ctx.stop.cancelled() => break Ok(()),
            r = tokio::time::timeout(ctx.stall, resp.chunk()) => r,
        };
        match next {
            Err(_) => break Err(stalled(ctx, "no data")),
            Ok(Err(e)) => break Err(error::from_reqwest(&e, &label)),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(mut chunk))) => {
                let room = (limit - at) as usize;
                if chunk.len() > room {
                    // Another connection took over the rest of this segment.
                    chunk.truncate(room);
                }
                at += chunk.len() as u64;
                let moved = chunk.len() as u64;
                consume_all(&ctx.limits, chunk.len()).await;
                let n = chunk.len() as u64;
                if writer.write(chunk).await.is_err() {
                    let e = writer
                        .finish(false)
                        .await
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("writer stopped"));
                    return Err(TransferError::local_io("writing", &ctx.part, &e));
                }
                ctx.bytes.add(&ctx.source.kind, n);
                ctx.events.bytes(moved);
            }
        }
    };
    let finished = writer
        .finish(true)
        .await
        .map_err(|e| TransferError::local_io("writing", &ctx.part, &e));
    result?;
    finished?;
    if at < seg.end.load(Ordering::Acquire) && !ctx.stop.is_cancelled() {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!("{label}: a segment's connection ended early"),
        ));
    }
    Ok(())
}

/// A peer offers the content: fetches it from every offering peer at once, the origin
/// joining as soon as a peer fails.
pub(super) async fn from_peers(
    task: &FileTask<'_>,
    total: u64,
    validator: Option<String>,
    final_url: String,
    offers: &[super::fleet::PeerOffer],
    no_store: bool,
) -> Result<Outcome, TransferError> {
    let part = task.part.clone();
    task.owner
        .create_part(part.clone())
        .await
        .map_err(|e| TransferError::local_io("creating", &part, &e))?;
    let n = (offers.len() as u64)
        .min(total.div_ceil(MIN_SEGMENT))
        .max(1);
    let segments = split(total, n);
    task.events.segments_started(
        total,
        validator.clone(),
        final_url,
        segments.clone(),
        no_store,
    );
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        validator,
    );
    let plan = Plan {
        total,
        sources: offers.iter().map(Source::peer).collect(),
        reserve: vec![origin; task.connections.max(1) as usize],
    };
    let result = run(task, segments, plan).await;
    if let Some(finder) = &task.peers {
        report_fetched(finder.as_ref(), &task.sources);
    }
    result
}

/// Tells the finder how much each peer sent (in total, per file).
pub(super) fn report_fetched(finder: &dyn PeerFinder, bytes: &SourceBytes) {
    let used = bytes.peers_used();
    if let [only] = used.as_slice() {
        finder.fetched(only, bytes.peers.load(Ordering::Relaxed));
    } else {
        let each = bytes.peers.load(Ordering::Relaxed) / used.len().max(1) as u64;
        for p in &used {
            finder.fetched(p, each);
        }
    }
}
