//! This machine's download as the swarm shares it ([`Download`]): which pieces it fetched
//! first-hand from the origin (servable once on disk), which it fetches from the origin
//! now, which peers wrote bytes of each piece, and whether the whole file matched its
//! SHA-256 (then all of it is served).
//!
//! May use: the engine's segment table and fleet port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::super::fleet::SharedRanges;
use super::super::segtable::SegTable;

/// This machine's download, as shared with the fleet.
pub(super) struct Download {
    pub(super) table: Arc<SegTable>,
    pub(super) length: u64,
    /// Per piece: fetched from the origin by us alone (servable once durable).
    pub(super) first_hand: Vec<AtomicBool>,
    /// Per piece: being fetched from the origin now.
    pub(super) pending: Vec<AtomicBool>,
    /// Per piece: the peers that wrote bytes of it.
    pub(super) from_peers: Mutex<Vec<Vec<String>>>,
    /// The whole file matched its SHA-256.
    pub(super) verified: AtomicBool,
}

impl Download {
    /// The download of `length` bytes whose pieces are `table`'s segments, nothing of it
    /// fetched yet.
    pub(super) fn new(table: Arc<SegTable>, length: u64) -> Download {
        let n = table.states().len();
        Download {
            table,
            length,
            first_hand: (0..n).map(|_| AtomicBool::new(false)).collect(),
            pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
            from_peers: Mutex::new(vec![Vec::new(); n]),
            verified: AtomicBool::new(false),
        }
    }
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
