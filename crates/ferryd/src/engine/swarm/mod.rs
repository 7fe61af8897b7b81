//! Fleet swarm (issue 14): machines that want the same content at the same time split the
//! origin's work and fetch the rest from each other while everyone is still downloading.
//!
//! The file is cut into pieces (`plan::piece_size`, 1–4 MiB). Each piece is fetched from
//! the origin by one of the machines that want the content — its rendezvous owner over
//! the machines that answer for it and are not late — and from that machine by the
//! others. A machine shares, through the fleet ([`PeerFinder::share`]), the pieces it
//! fetched itself from the origin, once they are on disk (the part file's sync); pieces it
//! got from peers are served only once the whole file has matched its SHA-256, so a bad
//! byte always comes from the machine that served it and the liar can be named. Every
//! [`POLL`] the driver asks the fleet which ranges each machine holds
//! ([`PeerFinder::holders`]); a machine that stops answering, leaves, or holds nothing
//! new for [`LATE`] loses its pieces to the others, and a machine that waited
//! [`TAKE_OVER`] with nothing to do fetches from the origin what nobody holds.
//!
//! A known SHA-256 is checked at the end; on a mismatch each piece that came from a peer
//! is fetched again from the origin and compared (`repair`), the peers whose pieces
//! differed are banned and their bytes replaced.
//!
//! May use: the engine's own modules (`segmented`'s connections, `segtable`, `sources`),
//! `model`. The fleet is reached only through [`PeerFinder`].

mod plan;
mod repair;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::JoinSet;

use super::error::TransferError;
use super::fleet::{ContentQuery, PeerFinder};
use super::multisource::open_segments;
use super::rangeconn::{fetch, unless_stopped, ConnCtx};
use super::segtable::SegTable;
use super::sources::{Source, SourceKind};
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind, Segment};

pub use super::fleet::{Holder, ShareGuard, SharedDownload, SharedRanges};
pub use plan::{piece_size, pieces, MIN_PIECE};

/// How often the fleet is asked who holds what.
pub const POLL: Duration = Duration::from_millis(300);
/// A machine holding nothing new for this long is late: its pieces go to the others.
pub const LATE: Duration = Duration::from_secs(4);
/// With nothing to do for this long, fetch from the origin what nobody holds.
pub const TAKE_OVER: Duration = Duration::from_secs(6);
/// After registering, this long for the machines starting together to do the same.
const GATHER: Duration = Duration::from_millis(300);
/// A finished download stays shared this long.
const LINGER: Duration = Duration::from_secs(10);
/// Connections to peers at once, and to one peer.
const PEER_CONNECTIONS: usize = 4;
const PER_PEER: usize = 2;
/// A peer that fails this often is not asked again during this download.
const PEER_FAILURES: u32 = 3;
/// A peer rests this long after a failure, or after saying it serves as many peers as it
/// may (`503`, not counted as a failure).
const REST: Duration = Duration::from_secs(1);

/// What joining the swarm takes: the content as the fleet knows it, and what the origin
/// said about it.
pub struct Join {
    /// The content's URL, validator and length (and SHA-256 when known): what the
    /// machines that want it agree on.
    pub query: ContentQuery,
    pub length: u64,
    /// The origin's strong validator (the pieces are asked under it).
    pub validator: String,
    /// The origin's URL after redirects.
    pub final_url: String,
}

/// This machine's download, as shared with the fleet.
struct Download {
    table: Arc<SegTable>,
    length: u64,
    /// Per piece: fetched from the origin by us alone (servable once durable).
    first_hand: Vec<AtomicBool>,
    /// Per piece: being fetched from the origin now.
    pending: Vec<AtomicBool>,
    /// Per piece: the peers that wrote bytes of it.
    from_peers: Mutex<Vec<Vec<String>>>,
    /// The whole file matched its SHA-256.
    verified: AtomicBool,
}

impl SharedRanges for Download {
    fn durable(&self) -> Vec<(u64, u64)> {
        if self.verified.load(Ordering::Acquire) {
            return vec![(0, self.length)];
        }
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, s) in self.table.states().iter().enumerate() {
            if !self.first_hand[i].load(Ordering::Acquire) || s.synced <= s.start {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == s.start => last.1 = s.synced,
                _ => out.push((s.start, s.synced)),
            }
        }
        out
    }

    fn pending(&self) -> Vec<(u64, u64)> {
        self.table
            .states()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.pending[*i].load(Ordering::Acquire))
            .map(|(_, s)| (s.start, s.end))
            .collect()
    }
}

/// A peer as this download tracks it.
struct Tracked {
    holder: Holder,
    held: u64,
    grew_at: Instant,
    failures: u32,
    rest_until: Instant,
    load: usize,
}

/// Where a piece was fetched from.
enum From {
    Origin,
    Peer(String),
}

/// Joins the swarm for content the fleet does not hold whole (the planner checked that the
/// file is large enough to split and the origin serves ranges).
pub(super) async fn download(
    task: &FileTask<'_>,
    finder: Arc<dyn PeerFinder>,
    join: Join,
) -> Result<Outcome, TransferError> {
    let Join {
        query,
        length,
        validator,
        final_url,
    } = join;
    let part = task.part.clone();
    task.owner
        .create_part(part.clone())
        .await
        .map_err(|e| TransferError::local_io("creating", &part, &e))?;
    let segments: Vec<Segment> = pieces(length)
        .into_iter()
        .map(|(start, end)| Segment {
            start,
            end,
            done: 0,
        })
        .collect();
    task.events.segments_started(
        length,
        Some(validator.clone()),
        final_url,
        segments.clone(),
        false,
    );
    let (file, table) = open_segments(task, &segments).await?;
    let n = segments.len();
    let dl = Arc::new(Download {
        table: table.clone(),
        length,
        first_hand: (0..n).map(|_| AtomicBool::new(false)).collect(),
        pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
        from_peers: Mutex::new(vec![Vec::new(); n]),
        verified: AtomicBool::new(false),
    });
    let reader = task
        .owner
        .read_part(part.clone())
        .await
        .map_err(|e| TransferError::local_io("opening", &part, &e))?;
    let guard = finder.share(SharedDownload {
        query: query.clone(),
        length,
        file: reader
            .try_clone()
            .map_err(|e| TransferError::local_io("opening", &part, &e))?,
        ranges: dl.clone(),
    });
    tracing::info!(
        url = task.record.remote_url,
        length,
        pieces = n,
        "joining the swarm"
    );
    if unless_stopped(&task.cancel, tokio::time::sleep(GATHER))
        .await
        .is_none()
    {
        return Ok(Outcome::Cancelled);
    }
    let origin = Source::origin(
        task.client.clone(),
        task.record.remote_url.clone(),
        task.options.clone(),
        Some(validator),
    );
    let result = run(task, &finder, &query, &dl, &file, origin.clone()).await;
    super::multisource::report_fetched(finder.as_ref(), &task.sources);
    let outcome = match result {
        Ok(Outcome::Done { len }) => {
            if let Some(expected) = &task.record.expected_sha256 {
                let expected = expected.to_ascii_lowercase();
                let ok = repair::check_and_repair(
                    task,
                    &finder,
                    &dl,
                    repair::Files {
                        read: &reader,
                        write: &file,
                    },
                    &origin,
                    &expected,
                )
                .await?;
                dl.verified.store(ok, Ordering::Release);
            }
            Outcome::Done { len }
        }
        other => return other,
    };
    // A verified file (or one without a SHA-256 to check: first-hand pieces only) stays
    // shared a little while, for the machines finishing after us.
    if dl.verified.load(Ordering::Acquire) || task.record.expected_sha256.is_none() {
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            drop(guard);
        });
    }
    Ok(outcome)
}

/// The content's rendezvous key: the same on every machine that wants it.
fn content_key(query: &ContentQuery) -> String {
    match &query.sha256 {
        Some(s) => s.clone(),
        None => format!(
            "{}|{}|{}",
            query.url,
            query.validator.as_deref().unwrap_or(""),
            query.length.unwrap_or(0)
        ),
    }
}

/// Fetches every piece, from the origin and the peers, until all are written.
async fn run(
    task: &FileTask<'_>,
    finder: &Arc<dyn PeerFinder>,
    query: &ContentQuery,
    dl: &Arc<Download>,
    file: &std::fs::File,
    origin: Source,
) -> Result<Outcome, TransferError> {
    let me = finder.node();
    let key = content_key(query);
    let stop = task.cancel.child_token();
    let origin_connections = task.connections.max(2) as usize;
    let mut peers: HashMap<String, Tracked> = HashMap::new();
    let mut excluded: Vec<String> = Vec::new();
    let mut work: JoinSet<(usize, From, u64, Result<(), TransferError>)> = JoinSet::new();
    let mut origin_busy = 0usize;
    let mut idle_since: Option<Instant> = None;
    let mut polled_at = Instant::now() - POLL;
    let mut poll: Option<tokio::task::JoinHandle<Vec<Holder>>> = None;
    let mut first_error: Option<TransferError> = None;
    loop {
        if poll.is_none() && polled_at.elapsed() >= POLL {
            let f = finder.clone();
            let q = query.clone();
            poll = Some(tokio::spawn(async move { f.holders(&q).await }));
            polled_at = Instant::now();
        }
        if poll.as_ref().is_some_and(|p| p.is_finished()) {
            let holders = poll.take().expect("a poll").await.unwrap_or_default();
            update(&mut peers, &excluded, holders, dl.length);
        }
        let states = dl.table.states();
        if states.iter().all(|s| s.written >= s.end) && work.is_empty() {
            break;
        }
        if first_error.is_none() && !stop.is_cancelled() {
            // Start what may start.
            loop {
                let now = Instant::now();
                // Peers dropped for failing are neither asked nor counted as holders.
                let order: Vec<&String> = peers.keys().filter(|k| !excluded.contains(k)).collect();
                let views: Vec<plan::PeerView> = order
                    .iter()
                    .map(|k| {
                        let t = &peers[*k];
                        plan::PeerView {
                            node: t.holder.node.clone(),
                            ranges: t.holder.ranges.clone(),
                            pending: t.holder.pending.clone(),
                            complete: t.holder.complete,
                            late: !t.holder.complete && t.grew_at.elapsed() >= LATE,
                            usable: t.rest_until <= now && t.load < PER_PEER,
                            load: t.load,
                        }
                    })
                    .collect();
                let pieces: Vec<plan::PieceView> = dl
                    .table
                    .states()
                    .iter()
                    .map(|s| plan::PieceView {
                        start: s.start,
                        end: s.end,
                        done: s.written >= s.end,
                        busy: s.owned,
                    })
                    .collect();
                let peer_busy: usize = peers.values().map(|t| t.load).sum();
                let room = plan::Room {
                    peer: peer_busy < PEER_CONNECTIONS,
                    origin: origin_busy < origin_connections,
                    take_over: idle_since.is_some_and(|t| t.elapsed() >= TAKE_OVER),
                };
                let (piece, source, from) = match plan::next(&key, &me, &pieces, &views, room) {
                    plan::Next::Wait => break,
                    plan::Next::Origin { piece } => {
                        origin_busy += 1;
                        dl.pending[piece].store(true, Ordering::Release);
                        if dl.from_peers.lock()[piece].is_empty() {
                            dl.first_hand[piece].store(true, Ordering::Release);
                        }
                        (piece, origin.clone(), From::Origin)
                    }
                    plan::Next::Peer { piece, peer } => {
                        let address = order[peer].clone();
                        let t = peers.get_mut(&address).expect("a tracked peer");
                        t.load += 1;
                        let source = Source {
                            kind: SourceKind::Peer(address.clone()),
                            client: t.holder.client.clone(),
                            url: t.holder.content_url.clone(),
                            options: None,
                            validator: None,
                        };
                        dl.first_hand[piece].store(false, Ordering::Release);
                        (piece, source, From::Peer(address))
                    }
                };
                let Some(seg) = dl.table.claim(piece) else {
                    break;
                };
                idle_since = None;
                let ctx = ConnCtx::new(task, source, file, &stop)?;
                work.spawn(async move {
                    let before = seg.progress.written.load(Ordering::Acquire);
                    let r = fetch(&ctx, &seg).await;
                    let wrote = seg.progress.written.load(Ordering::Acquire) - before;
                    seg.release();
                    (piece, from, wrote, r)
                });
            }
        }
        if work.is_empty() {
            if first_error.is_some() || stop.is_cancelled() {
                break;
            }
            idle_since.get_or_insert_with(Instant::now);
        }
        tokio::select! {
            _ = task.cancel.cancelled(), if !stop.is_cancelled() => stop.cancel(),
            done = work.join_next(), if !work.is_empty() => {
                let Some(done) = done else { continue };
                let (piece, from, wrote, result) = match done {
                    Ok(d) => d,
                    Err(e) => {
                        stop.cancel();
                        first_error.get_or_insert(TransferError::internal(e));
                        continue;
                    }
                };
                match from {
                    From::Origin => {
                        origin_busy -= 1;
                        dl.pending[piece].store(false, Ordering::Release);
                        if let Err(e) = result {
                            stop.cancel();
                            first_error.get_or_insert(e);
                        }
                    }
                    From::Peer(address) => {
                        if wrote > 0 {
                            let mut fp = dl.from_peers.lock();
                            if !fp[piece].contains(&address) {
                                fp[piece].push(address.clone());
                            }
                        }
                        if let Some(t) = peers.get_mut(&address) {
                            t.load -= 1;
                        }
                        match result {
                            Ok(()) => {}
                            Err(e) if e.context == ErrorContext::LocalFile => {
                                stop.cancel();
                                first_error.get_or_insert(e);
                            }
                            Err(e) if e.kind == ErrorKind::Http(503) => {
                                // Serving as many peers as it may: ask it again later.
                                if let Some(t) = peers.get_mut(&address) {
                                    t.rest_until = Instant::now() + REST;
                                }
                            }
                            Err(e) => {
                                tracing::info!(peer = address, "a swarm peer failed: {}", e.message);
                                if let Some(t) = peers.get_mut(&address) {
                                    t.failures += 1;
                                    t.rest_until = Instant::now() + REST;
                                    if t.failures >= PEER_FAILURES {
                                        finder.failed(&address, &e.message);
                                        excluded.push(address.clone());
                                        if t.load == 0 {
                                            peers.remove(&address);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep(POLL / 3) => {}
        }
    }
    if let Some(p) = poll {
        p.abort();
    }
    if task.cancel.is_cancelled() {
        return Ok(Outcome::Cancelled);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Outcome::Done { len: dl.length })
}

/// Refreshes the tracked peers from a poll's answers: new ones join, those that did not
/// answer leave (their connections finish or fail on their own), growth is noted.
fn update(
    peers: &mut HashMap<String, Tracked>,
    excluded: &[String],
    holders: Vec<Holder>,
    length: u64,
) {
    let now = Instant::now();
    let answered: Vec<String> = holders.iter().map(|h| h.peer.clone()).collect();
    peers.retain(|k, t| (answered.contains(k) && !excluded.contains(k)) || t.load > 0);
    for h in holders {
        if h.length != length || excluded.contains(&h.peer) {
            continue;
        }
        let held: u64 = h.ranges.iter().map(|(a, b)| b - a).sum();
        match peers.get_mut(&h.peer) {
            Some(t) => {
                if held > t.held {
                    t.held = held;
                    t.grew_at = now;
                }
                t.holder = h;
            }
            None => {
                peers.insert(
                    h.peer.clone(),
                    Tracked {
                        holder: h,
                        held,
                        grew_at: now,
                        failures: 0,
                        rest_until: now,
                        load: 0,
                    },
                );
            }
        }
    }
}
