//! The segments of a file fetched over several connections, possibly from several
//! sources: `[start, end)` each, `end` shrinking when another connection steals the tail,
//! and who owns each. A connection that finishes takes an orphaned segment (one whose
//! connection failed) first, else half of the largest remaining one (work stealing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::partfile::Progress;
use crate::model::Segment;

/// Files smaller than two segments of this size use one connection to the origin.
pub const MIN_SEGMENT: u64 = 4 << 20;
/// A segment is split for another connection only if at least this much remains.
pub(super) const MIN_STEAL: u64 = 2 << 20;

/// One segment while it transfers: `[start, end)`, `end` shrinking when another
/// connection steals its tail; `progress` holds absolute offsets.
#[derive(Debug)]
pub struct Seg {
    pub(super) start: u64,
    pub(super) end: AtomicU64,
    pub(super) progress: Arc<Progress>,
    /// A connection is fetching it.
    owned: AtomicBool,
}

impl Seg {
    fn new(start: u64, end: u64, done: u64, owned: bool) -> Arc<Seg> {
        Arc::new(Seg {
            start,
            end: AtomicU64::new(end),
            progress: Progress::starting_at(start + done),
            owned: AtomicBool::new(owned),
        })
    }

    fn left(&self) -> u64 {
        self.end
            .load(Ordering::Acquire)
            .saturating_sub(self.progress.written.load(Ordering::Acquire))
    }

    /// Gives the segment up (its connection failed): another connection takes it over
    /// where its bytes stopped.
    pub(super) fn release(&self) {
        self.owned.store(false, Ordering::Release);
    }
}

/// Every segment of a file, shared with the service for progress and checkpoints.
#[derive(Debug, Default)]
pub struct SegTable {
    segs: Mutex<Vec<Arc<Seg>>>,
}

impl SegTable {
    /// A table of `segments`, none owned yet.
    pub(super) fn new(segments: &[Segment]) -> SegTable {
        SegTable {
            segs: Mutex::new(
                segments
                    .iter()
                    .map(|s| Seg::new(s.start, s.end, s.done, false))
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

    /// Work for a connection: an unfinished segment nobody fetches (claimed), else the
    /// tail of the segment with the most left to do, if worth splitting.
    pub(super) fn take(&self) -> Option<Arc<Seg>> {
        let mut segs = self.segs.lock();
        if let Some(free) = segs.iter().find(|s| {
            s.left() > 0
                && s.owned
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
        }) {
            return Some(free.clone());
        }
        let (victim, remaining) = segs
            .iter()
            .map(|s| (s.clone(), s.left()))
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
        let tail = Seg::new(split, old_end, 0, true);
        segs.push(tail.clone());
        Some(tail)
    }
}

/// One segment's state, for the swarm's planner (`swarm`), which addresses segments by
/// index and never splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegState {
    pub start: u64,
    pub end: u64,
    /// Bytes handed to the kernel, as an absolute offset.
    pub written: u64,
    /// Bytes on disk, as an absolute offset.
    pub synced: u64,
    /// A connection is fetching it.
    pub owned: bool,
}

impl SegTable {
    /// Every segment's state, in table order.
    pub fn states(&self) -> Vec<SegState> {
        self.segs
            .lock()
            .iter()
            .map(|s| SegState {
                start: s.start,
                end: s.end.load(Ordering::Acquire),
                written: s.progress.written.load(Ordering::Acquire),
                synced: s.progress.synced.load(Ordering::Acquire),
                owned: s.owned.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Claims segment `index` for a connection when it is unfinished and nobody fetches it.
    pub(super) fn claim(&self, index: usize) -> Option<Arc<Seg>> {
        let segs = self.segs.lock();
        let s = segs.get(index)?;
        (s.left() > 0
            && s.owned
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then(|| s.clone())
    }
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
    fn free_segments_first_then_stealing_halves_the_largest_remainder() {
        let t = SegTable::new(&[Segment {
            start: 0,
            end: 64 << 20,
            done: 0,
        }]);
        let first = t.take().expect("the free segment");
        assert_eq!(first.start, 0);
        let tail = t.take().expect("a big segment is split");
        assert_eq!(tail.start, 32 << 20);
        assert_eq!(tail.end.load(Ordering::Acquire), 64 << 20);
        assert_eq!(t.snapshot()[0].end, 32 << 20);
        // A failed connection's segment goes to the next taker whole, where it stopped.
        first.progress.written.store(8 << 20, Ordering::Release);
        first.release();
        let again = t.take().expect("the orphan");
        assert!(Arc::ptr_eq(&again, &first));
        let small = SegTable::new(&[Segment {
            start: 0,
            end: MIN_STEAL,
            done: 0,
        }]);
        assert!(small.take().is_some());
        assert!(small.take().is_none());
    }
}
