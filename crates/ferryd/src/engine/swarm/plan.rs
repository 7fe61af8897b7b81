//! The swarm's decisions, as pure functions: the piece size, the rendezvous
//! (highest-random-weight) assignment of pieces to the machines that want the content,
//! and which piece to fetch next and from where.
//!
//! May use: nothing but `sha2`; the driver (`swarm/driver.rs`) feeds it views of the
//! pieces and the peers.

use sha2::{Digest, Sha256};

/// The smallest piece.
pub const MIN_PIECE: u64 = 1 << 20;
/// The largest piece.
pub const MAX_PIECE: u64 = 4 << 20;

/// The piece size of content of `length` bytes: about 64 pieces, whole MiB, from 1 to 4
/// MiB. Every machine computes the same size from the same length.
pub fn piece_size(length: u64) -> u64 {
    (length.div_ceil(64).div_ceil(MIN_PIECE) * MIN_PIECE).clamp(MIN_PIECE, MAX_PIECE)
}

/// The pieces of `[0, length)`: `(start, end)` each.
pub fn pieces(length: u64) -> Vec<(u64, u64)> {
    let size = piece_size(length);
    (0..length.div_ceil(size))
        .map(|i| (i * size, ((i + 1) * size).min(length)))
        .collect()
}

/// The rendezvous weight of `piece` of `content` at machine `node`.
pub fn weight(content: &str, piece: usize, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(content.as_bytes());
    h.update([0]);
    h.update((piece as u64).to_le_bytes());
    h.update(node.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The machine among `members` that fetches `piece` from the origin: the highest weight.
/// When a member leaves, only its own pieces move, spread over the others.
pub fn owner<'a>(content: &str, piece: usize, members: &'a [String]) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(content, piece, m), m.as_str()))
        .map(String::as_str)
}

/// True when `ranges` hold all of `[start, end)`.
pub fn covers(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    ranges.iter().any(|&(a, b)| a <= start && end <= b)
}

/// A piece as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct PieceView {
    pub start: u64,
    pub end: u64,
    /// Every byte is written.
    pub done: bool,
    /// A connection fetches it now.
    pub busy: bool,
}

/// A peer that answered for the content, as the planner sees it.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub node: String,
    /// The ranges it serves.
    pub ranges: Vec<(u64, u64)>,
    /// The ranges it fetches from the origin now.
    pub pending: Vec<(u64, u64)>,
    /// It holds the whole content (a cache entry, or a verified download).
    pub complete: bool,
    /// It made no progress for a while: what it was to fetch is reassigned.
    pub late: bool,
    /// It may be asked now (not resting after a failure, below its connection limit).
    pub usable: bool,
    /// Our connections to it now.
    pub load: usize,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Fetch piece `piece` from peer `peer` (an index into the peers).
    Peer { piece: usize, peer: usize },
    /// Fetch piece `piece` from the origin.
    Origin { piece: usize },
    /// Nothing now: wait for the peers to hold more.
    Wait,
}

/// What the planner may start.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Another connection to a peer may start.
    pub peer: bool,
    /// Another connection to the origin may start.
    pub origin: bool,
    /// We waited long with nothing to do: fetch from the origin what nobody holds.
    pub take_over: bool,
}

/// The next fetch: a piece some peer holds (the rarest first, from the least loaded
/// holder); else a piece this machine is assigned (rendezvous over itself and the peers
/// still fetching, the late left out) that nobody holds or fetches; else, when taking
/// over, any piece nobody holds.
pub fn next(content: &str, me: &str, pieces: &[PieceView], peers: &[PeerView], room: Room) -> Next {
    let open = || {
        pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.done && !p.busy)
    };
    // Our own order of pieces, so machines starting together start on different ones.
    let mine_first = |i: &usize| std::cmp::Reverse(weight(content, *i, me));
    if room.peer {
        let best = open()
            .filter_map(|(i, p)| {
                let holders: Vec<usize> = peers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| covers(&h.ranges, p.start, p.end))
                    .map(|(j, _)| j)
                    .collect();
                let usable = holders
                    .iter()
                    .copied()
                    .filter(|&j| peers[j].usable)
                    .min_by_key(|&j| {
                        (
                            peers[j].load,
                            std::cmp::Reverse(weight(content, i, &peers[j].node)),
                        )
                    })?;
                Some((holders.len(), i, usable))
            })
            .min_by_key(|(rarity, i, _)| (*rarity, mine_first(i)));
        if let Some((_, piece, peer)) = best {
            return Next::Peer { piece, peer };
        }
    }
    if !room.origin {
        return Next::Wait;
    }
    let held = |p: &PieceView| peers.iter().any(|h| covers(&h.ranges, p.start, p.end));
    let mut members: Vec<String> = peers
        .iter()
        .filter(|h| !h.complete && !h.late)
        .map(|h| h.node.clone())
        .collect();
    members.push(me.to_string());
    let fetched_by_other = |p: &PieceView| {
        peers
            .iter()
            .filter(|h| !h.late)
            .any(|h| covers(&h.pending, p.start, p.start + 1))
    };
    let own = open()
        .filter(|(i, p)| {
            !held(p) && !fetched_by_other(p) && owner(content, *i, &members) == Some(me)
        })
        .map(|(i, _)| i)
        .min_by_key(mine_first);
    if let Some(piece) = own {
        return Next::Origin { piece };
    }
    if room.take_over {
        if let Some(piece) = open()
            .filter(|(_, p)| !held(p))
            .map(|(i, _)| i)
            .min_by_key(mine_first)
        {
            return Next::Origin { piece };
        }
    }
    Next::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(n: usize, size: u64) -> Vec<PieceView> {
        (0..n)
            .map(|i| PieceView {
                start: i as u64 * size,
                end: (i as u64 + 1) * size,
                done: false,
                busy: false,
            })
            .collect()
    }

    fn peer(node: &str) -> PeerView {
        PeerView {
            node: node.into(),
            ranges: Vec::new(),
            pending: Vec::new(),
            complete: false,
            late: false,
            usable: true,
            load: 0,
        }
    }

    const ROOM: Room = Room {
        peer: true,
        origin: true,
        take_over: false,
    };

    #[test]
    fn piece_sizes_and_pieces_cover_the_content() {
        assert_eq!(piece_size(10), MIN_PIECE);
        assert_eq!(piece_size(64 << 20), 1 << 20);
        assert_eq!(piece_size(1 << 30), MAX_PIECE);
        let p = pieces((5 << 20) + 3);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], (0, 1 << 20));
        assert_eq!(p[5], (5 << 20, (5 << 20) + 3));
    }

    #[test]
    fn rendezvous_moves_only_the_pieces_of_the_machine_that_left() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let three: Vec<String> = all[..3].to_vec();
        let mut per = std::collections::HashMap::new();
        for i in 0..400 {
            let before = owner("x", i, &all).unwrap();
            let after = owner("x", i, &three).unwrap();
            if before != "d" {
                assert_eq!(before, after, "piece {i} moved though its machine stayed");
            }
            *per.entry(before).or_insert(0) += 1;
        }
        // Each of four machines gets a fair share (400 pieces: 100 expected each).
        for (m, n) in per {
            assert!((60..=140).contains(&n), "{m} owns {n} of 400 pieces");
        }
    }

    #[test]
    fn held_pieces_come_from_peers_rarest_first_and_own_pieces_from_the_origin() {
        let pieces = free(4, 10);
        let mut b = peer("b");
        b.ranges = vec![(0, 20)];
        let mut c = peer("c");
        c.ranges = vec![(0, 10)];
        // Piece 1 is held by b alone: rarer than piece 0.
        assert_eq!(
            next("x", "a", &pieces, &[b.clone(), c.clone()], ROOM),
            Next::Peer { piece: 1, peer: 0 }
        );
        // Without room for peers: an unheld piece of ours from the origin, never a held one.
        let no_peers = Room {
            peer: false,
            ..ROOM
        };
        match next("x", "a", &pieces, &[b.clone(), c.clone()], no_peers) {
            Next::Origin { piece } => {
                assert!(piece >= 2);
                let members = vec!["b".to_string(), "c".to_string(), "a".to_string()];
                assert_eq!(owner("x", piece, &members), Some("a"));
            }
            Next::Wait => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alone_fetches_everything_from_the_origin_and_late_machines_lose_their_pieces() {
        let pieces = free(8, 10);
        let mut seen = std::collections::HashSet::new();
        let mut ps = pieces.clone();
        while let Next::Origin { piece } = next("x", "a", &ps, &[], ROOM) {
            ps[piece].busy = true;
            seen.insert(piece);
        }
        assert_eq!(seen.len(), 8);
        // With b late, a owns every piece.
        let mut b = peer("b");
        b.late = true;
        let mut ps = pieces.clone();
        let mut n = 0;
        while let Next::Origin { piece } = next("x", "a", &ps, std::slice::from_ref(&b), ROOM) {
            ps[piece].busy = true;
            n += 1;
        }
        assert_eq!(n, 8);
        // With b working, a takes only its own; take-over gets the rest.
        let b = peer("b");
        let mut ps = pieces.clone();
        let mut mine = 0;
        while let Next::Origin { piece } = next("x", "a", &ps, std::slice::from_ref(&b), ROOM) {
            ps[piece].busy = true;
            mine += 1;
        }
        assert!(mine < 8);
        let take = Room {
            take_over: true,
            ..ROOM
        };
        while let Next::Origin { piece } = next("x", "a", &ps, std::slice::from_ref(&b), take) {
            ps[piece].busy = true;
            mine += 1;
        }
        assert_eq!(mine, 8);
    }
}
