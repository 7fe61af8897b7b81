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

use reqwest::StatusCode;

use super::error::TransferError;
use super::fleet::PeerFinder;
use super::httpmeta;
use super::netclient::for_download;
use super::rangeconn::{fetch, race, ConnCtx, Raced};
use super::segtable::Seg;
pub use super::segtable::{split, SegTable, MIN_SEGMENT};
use super::sources::{Source, SourceBytes, SourceKind};
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind, Segment};

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
            let resp = match race(&task.cancel, task.stall_timeout, head.send()).await {
                Raced::Stopped => return Ok(Segmented::Done(Outcome::Cancelled)),
                Raced::Ready(Ok(r)) => r,
                _ => return Ok(Segmented::Fallback),
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
    let (file, table) = open_segments(task, &segments).await?;
    let stop = task.cancel.child_token();
    let mut workers = tokio::task::JoinSet::new();
    let start =
        |workers: &mut tokio::task::JoinSet<_>, source: Source| -> Result<(), TransferError> {
            if let Some(seg) = table.take() {
                let ctx = ConnCtx::new(task, source, &file, &stop)?;
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
