//! The swarm's loop: every [`POLL`] it asks the fleet which ranges each machine holds,
//! starts what the piece planner (`plan::next`) allows — a piece from a peer that holds
//! it, else one of this machine's own pieces from the origin — and settles the fetches
//! that end: a peer that fails rests, and is dropped after [`PEER_FAILURES`]; an origin
//! failure ends the download.
//!
//! May use: the swarm's planner and shared download, the engine's range connection,
//! sources, fleet port, task and errors.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::super::error::TransferError;
use super::super::fleet::{ContentQuery, Holder, PeerFinder};
use super::super::rangeconn::{fetch, ConnCtx};
use super::super::sources::{Source, SourceKind};
use super::super::task::{FileTask, Outcome};
use super::plan;
use super::shared::Download;
use crate::model::{ErrorContext, ErrorKind};

/// How often the fleet is asked who holds what.
pub const POLL: Duration = Duration::from_millis(300);
/// A machine holding nothing new for this long is late: its pieces go to the others.
pub const LATE: Duration = Duration::from_secs(4);
/// With nothing to do for this long, fetch from the origin what nobody holds.
pub const TAKE_OVER: Duration = Duration::from_secs(6);
/// Connections to peers at once, and to one peer.
const PEER_CONNECTIONS: usize = 4;
const PER_PEER: usize = 2;
/// A peer that fails this often is not asked again during this download.
const PEER_FAILURES: u32 = 3;
/// A peer rests this long after a failure, or after saying it serves as many peers as it
/// may (`503`, not counted as a failure).
const REST: Duration = Duration::from_secs(1);

/// What the swarm's loop works on.
pub(super) struct Swarm<'t, 'a> {
    pub task: &'t FileTask<'a>,
    pub finder: &'t Arc<dyn PeerFinder>,
    pub query: &'t ContentQuery,
    /// The rendezvous key of the content.
    pub key: String,
    pub download: &'t Arc<Download>,
    /// The part file, written through copies.
    pub file: &'t std::fs::File,
    pub origin: Source,
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

/// Where a piece is fetched from.
enum Via {
    Origin,
    Peer(String),
}

/// A piece's fetch that ended: which, from where, the bytes it wrote, how.
struct Fetched {
    piece: usize,
    via: Via,
    wrote: u64,
    result: Result<(), TransferError>,
}

/// The loop's state.
struct Driver<'t, 'a> {
    swarm: Swarm<'t, 'a>,
    me: String,
    stop: CancellationToken,
    origin_connections: usize,
    peers: HashMap<String, Tracked>,
    /// Peers dropped for failing: neither asked nor counted as holders.
    excluded: Vec<String>,
    work: JoinSet<Fetched>,
    origin_busy: usize,
    idle_since: Option<Instant>,
    polled_at: Instant,
    poll: Option<JoinHandle<Vec<Holder>>>,
    first_error: Option<TransferError>,
}

/// Fetches every piece, from the origin and the peers, until all are written.
pub(super) async fn run(swarm: Swarm<'_, '_>) -> Result<Outcome, TransferError> {
    let mut d = Driver {
        me: swarm.finder.node(),
        stop: swarm.task.cancel.child_token(),
        origin_connections: swarm.task.connections.max(2) as usize,
        swarm,
        peers: HashMap::new(),
        excluded: Vec::new(),
        work: JoinSet::new(),
        origin_busy: 0,
        idle_since: None,
        polled_at: Instant::now() - POLL,
        poll: None,
        first_error: None,
    };
    // Nothing starts before the fleet's first answer: a machine that started while its
    // peers' answers were on the way took pieces as if it were alone, pieces their
    // rendezvous owners fetched from the origin too (each machine's first two pieces,
    // about a quarter of a small file's bytes again on four machines).
    d.poll_the_fleet().await;
    if let Some(poll) = d.poll.take() {
        let holders = tokio::select! {
            h = poll => h.unwrap_or_default(),
            () = d.stop.cancelled() => Vec::new(),
        };
        update(&mut d.peers, &d.excluded, holders, d.swarm.download.length);
    }
    loop {
        d.poll_the_fleet().await;
        if d.all_written() && d.work.is_empty() {
            break;
        }
        if d.first_error.is_none() && !d.stop.is_cancelled() {
            d.start_what_may_start()?;
        }
        if d.work.is_empty() {
            if d.first_error.is_some() || d.stop.is_cancelled() {
                break;
            }
            d.idle_since.get_or_insert_with(Instant::now);
        }
        d.wait().await;
    }
    d.end()
}

impl Driver<'_, '_> {
    /// Asks the fleet who holds what every [`POLL`] (in the background), and takes in its
    /// answer once it is there.
    async fn poll_the_fleet(&mut self) {
        if self.poll.is_none() && self.polled_at.elapsed() >= POLL {
            let finder = self.swarm.finder.clone();
            let query = self.swarm.query.clone();
            self.poll = Some(tokio::spawn(async move { finder.holders(&query).await }));
            self.polled_at = Instant::now();
        }
        if self.poll.as_ref().is_some_and(|p| p.is_finished()) {
            let holders = self.poll.take().expect("a poll").await.unwrap_or_default();
            update(
                &mut self.peers,
                &self.excluded,
                holders,
                self.swarm.download.length,
            );
        }
    }

    fn all_written(&self) -> bool {
        self.swarm
            .download
            .table
            .states()
            .iter()
            .all(|s| s.written >= s.end)
    }

    /// Starts every fetch the piece planner allows now.
    fn start_what_may_start(&mut self) -> Result<(), TransferError> {
        loop {
            let (next, order) = self.next();
            let (piece, via) = match next {
                plan::Next::Wait => return Ok(()),
                plan::Next::Origin { piece } => (piece, Via::Origin),
                plan::Next::Peer { piece, peer } => (piece, Via::Peer(order[peer].clone())),
            };
            let Some(seg) = self.swarm.download.table.claim(piece) else {
                return Ok(());
            };
            let source = self.took(piece, &via);
            self.idle_since = None;
            let ctx = ConnCtx::new(self.swarm.task, source, self.swarm.file, &self.stop)?;
            self.work.spawn(async move {
                let before = seg.progress.written.load(Ordering::Acquire);
                let result = fetch(&ctx, &seg).await;
                let wrote = seg.progress.written.load(Ordering::Acquire) - before;
                seg.release();
                Fetched {
                    piece,
                    via,
                    wrote,
                    result,
                }
            });
        }
    }

    /// What the piece planner says to fetch next, and the peers (by address) its answer
    /// counts in.
    fn next(&self) -> (plan::Next, Vec<String>) {
        let now = Instant::now();
        let order: Vec<String> = self
            .peers
            .keys()
            .filter(|k| !self.excluded.contains(k))
            .cloned()
            .collect();
        let views: Vec<plan::PeerView> = order
            .iter()
            .map(|k| {
                let t = &self.peers[k];
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
        let pieces: Vec<plan::PieceView> = self
            .swarm
            .download
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
        let peer_busy: usize = self.peers.values().map(|t| t.load).sum();
        let room = plan::Room {
            peer: peer_busy < PEER_CONNECTIONS,
            origin: self.origin_busy < self.origin_connections,
            take_over: self.idle_since.is_some_and(|t| t.elapsed() >= TAKE_OVER),
        };
        let next = plan::next(&self.swarm.key, &self.me, &pieces, &views, room);
        (next, order)
    }

    /// Notes that `piece` is being fetched `via` the origin or a peer; where to fetch it.
    fn took(&mut self, piece: usize, via: &Via) -> Source {
        let dl = self.swarm.download;
        match via {
            Via::Origin => {
                self.origin_busy += 1;
                dl.pending[piece].store(true, Ordering::Release);
                if dl.from_peers.lock()[piece].is_empty() {
                    dl.first_hand[piece].store(true, Ordering::Release);
                }
                self.swarm.origin.clone()
            }
            Via::Peer(address) => {
                let t = self.peers.get_mut(address).expect("a tracked peer");
                t.load += 1;
                dl.first_hand[piece].store(false, Ordering::Release);
                Source {
                    kind: SourceKind::Peer(address.clone()),
                    client: t.holder.client.clone(),
                    url: t.holder.content_url.clone(),
                    options: None,
                    validator: None,
                }
            }
        }
    }

    /// Waits for a fetch to end, the run to stop, or the next poll.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.swarm.task.cancel.cancelled(), if !self.stop.is_cancelled() => self.stop.cancel(),
            done = self.work.join_next(), if !self.work.is_empty() => match done {
                Some(Ok(fetched)) => self.settle(fetched),
                Some(Err(e)) => self.fail(TransferError::internal(e)),
                None => {}
            },
            _ = tokio::time::sleep(POLL / 3) => {}
        }
    }

    /// Stops every fetch; the download ends with `e` (the first such error).
    fn fail(&mut self, e: TransferError) {
        self.stop.cancel();
        self.first_error.get_or_insert(e);
    }

    /// Takes in a fetch that ended.
    fn settle(&mut self, fetched: Fetched) {
        let Fetched {
            piece,
            via,
            wrote,
            result,
        } = fetched;
        let dl = self.swarm.download;
        match via {
            Via::Origin => {
                self.origin_busy -= 1;
                dl.pending[piece].store(false, Ordering::Release);
                if let Err(e) = result {
                    self.fail(e);
                }
            }
            Via::Peer(address) => {
                if wrote > 0 {
                    let mut from_peers = dl.from_peers.lock();
                    if !from_peers[piece].contains(&address) {
                        from_peers[piece].push(address.clone());
                    }
                }
                if let Some(t) = self.peers.get_mut(&address) {
                    t.load -= 1;
                }
                match result {
                    Ok(()) => {}
                    Err(e) if e.context == ErrorContext::LocalFile => self.fail(e),
                    Err(e) if e.kind == ErrorKind::Http(503) => {
                        // Serving as many peers as it may: ask it again later.
                        if let Some(t) = self.peers.get_mut(&address) {
                            t.rest_until = Instant::now() + REST;
                        }
                    }
                    Err(e) => self.peer_failed(address, e),
                }
            }
        }
    }

    /// A peer failed a fetch: it rests, and after [`PEER_FAILURES`] it is dropped.
    fn peer_failed(&mut self, address: String, e: TransferError) {
        tracing::info!(peer = address, "a swarm peer failed: {}", e.message);
        let Some(t) = self.peers.get_mut(&address) else {
            return;
        };
        t.failures += 1;
        t.rest_until = Instant::now() + REST;
        if t.failures >= PEER_FAILURES {
            self.swarm.finder.failed(&address, &e.message);
            let idle = t.load == 0;
            self.excluded.push(address.clone());
            if idle {
                self.peers.remove(&address);
            }
        }
    }

    /// How the loop ended.
    fn end(self) -> Result<Outcome, TransferError> {
        if let Some(p) = self.poll {
            p.abort();
        }
        if self.swarm.task.cancel.is_cancelled() {
            return Ok(Outcome::Cancelled);
        }
        if let Some(e) = self.first_error {
            return Err(e);
        }
        Ok(Outcome::Done {
            len: self.swarm.download.length,
        })
    }
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
