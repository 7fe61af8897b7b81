//! Several connections over one segment table, each to a source (the origin or a peer):
//! each connection takes a segment, and one that finishes early takes an orphaned segment
//! or half of the largest remaining one (work stealing, `segtable`). A failing peer is
//! dropped and its segment goes to the others, and the reserve (the origin) joins. Each
//! segment's durable progress is recorded, so a crash resumes every segment where it
//! stopped. The segmented download and the download from peers run on it; the swarm
//! opens its segments with it.
//!
//! May use: the engine's range connection, segment table, sources, fleet port, task and
//! errors; `model`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::error::TransferError;
use super::fleet::PeerFinder;
use super::rangeconn::{fetch, ConnCtx};
use super::segtable::{Seg, SegTable};
use super::sources::{Source, SourceBytes, SourceKind};
use super::task::{FileTask, Outcome};
use crate::model::ranges::Layout;
use crate::model::{ErrorContext, ErrorKind, Segment};

/// The sources of a multi-connection download.
pub(super) struct Sources {
    /// The file's size.
    pub total: u64,
    /// Connections started at once, one source each.
    pub start: Vec<Source>,
    /// Connections started as soon as one fails (the origin, while peers serve).
    pub reserve: Vec<Source>,
    /// Where the bytes land in the part file (a file of ranges); `None`: at their offsets.
    pub layout: Option<Arc<Layout>>,
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

/// Fetches the unfinished `segments` of a file whose part file exists, over `sources`.
pub(super) async fn run(
    task: &FileTask<'_>,
    segments: Vec<Segment>,
    sources: Sources,
) -> Result<Outcome, TransferError> {
    let (file, table) = open_segments(task, &segments).await?;
    let stop = task.cancel.child_token();
    let mut workers = tokio::task::JoinSet::new();
    let start =
        |workers: &mut tokio::task::JoinSet<_>, source: Source| -> Result<(), TransferError> {
            if let Some(seg) = table.take() {
                let mut ctx = ConnCtx::new(task, source, &file, &stop)?;
                ctx.layout = sources.layout.clone();
                workers.spawn(run_connection(ctx, table.clone(), seg));
            }
            Ok(())
        };
    for source in sources.start {
        start(&mut workers, source)?;
    }
    let mut reserve = Some(sources.reserve);
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
    if table.written() < sources.total {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!(
                "{}: every source stopped before the whole file arrived",
                task.record.remote_url
            ),
        ));
    }
    Ok(Outcome::Done { len: sources.total })
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
