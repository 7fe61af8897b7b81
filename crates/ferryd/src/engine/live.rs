//! What a run shares while it runs: the byte counters of the files it writes and when a
//! byte last moved. The transfer code bumps atomics; the service reads them for views and
//! checkpoints. Nothing here takes the service's lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::partfile::Progress;
use super::segmented::SegTable;
use super::sources::SourceBytes;
use crate::model::{mono_ms, Segment};

/// `Report::Progressed` is sent at most this often per job (ms).
pub const PROGRESS_INTERVAL_MS: i64 = 500;

/// The counters of one file being written.
#[derive(Debug, Clone)]
enum LiveFile {
    /// One connection.
    Bytes(Arc<Progress>),
    /// Several connections, one segment each.
    Segments(Arc<SegTable>),
}

/// A file's durable state, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    /// The file's index in its job.
    pub index: u32,
    /// Bytes on disk.
    pub synced: u64,
    /// The segments, for a multi-connection download.
    pub segments: Option<Vec<Segment>>,
    /// Bytes that came from the origin and from peers.
    pub from_origin: u64,
    pub from_peers: u64,
}

/// What one run shares.
#[derive(Debug, Default)]
pub struct LiveRun {
    files: Mutex<BTreeMap<u32, LiveFile>>,
    sources: Mutex<BTreeMap<u32, Arc<SourceBytes>>>,
    last_progress_ms: AtomicI64,
    next_report_ms: AtomicI64,
}

impl LiveRun {
    /// A run starting now.
    pub fn new() -> Arc<LiveRun> {
        let run = LiveRun::default();
        run.last_progress_ms.store(mono_ms(), Ordering::Relaxed);
        Arc::new(run)
    }

    pub(super) fn set_bytes(&self, index: u32, progress: Arc<Progress>) {
        self.files.lock().insert(index, LiveFile::Bytes(progress));
    }

    pub(super) fn set_segments(&self, index: u32, table: Arc<SegTable>) {
        self.files.lock().insert(index, LiveFile::Segments(table));
    }

    pub(super) fn set_sources(&self, index: u32, sources: Arc<SourceBytes>) {
        self.sources.lock().insert(index, sources);
    }

    /// Where the bytes of file `index` came from, while the run writes it.
    pub fn sources(&self, index: u32) -> Option<(u64, u64)> {
        self.sources.lock().get(&index).map(|s| {
            (
                s.origin.load(Ordering::Relaxed),
                s.peers.load(Ordering::Relaxed),
            )
        })
    }

    pub(super) fn reset_sources(&self, index: u32) {
        if let Some(s) = self.sources.lock().get(&index) {
            s.reset();
        }
    }

    pub(super) fn forget_segments(&self, index: u32) {
        let mut files = self.files.lock();
        if matches!(files.get(&index), Some(LiveFile::Segments(_))) {
            files.remove(&index);
        }
    }

    /// Bytes moved: records the time; true when a `Report::Progressed` is due.
    pub(super) fn moved(&self) -> bool {
        let now = mono_ms();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        let due = self.next_report_ms.load(Ordering::Relaxed);
        now >= due
            && self
                .next_report_ms
                .compare_exchange(
                    due,
                    now + PROGRESS_INTERVAL_MS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// When a byte last moved (or the run started), on the monotonic clock
    /// ([`mono_ms`]).
    pub fn last_progress_mono(&self) -> i64 {
        self.last_progress_ms.load(Ordering::Relaxed)
    }

    /// Bytes written so far of file `index` (what users see), if the run writes it.
    pub fn written(&self, index: u32) -> Option<u64> {
        match self.files.lock().get(&index)? {
            LiveFile::Bytes(p) => Some(p.written.load(Ordering::Relaxed)),
            LiveFile::Segments(t) => Some(t.written()),
        }
    }

    /// The durable state of every file the run writes.
    pub fn durable(&self) -> Vec<Durable> {
        let files = self.files.lock().clone();
        files
            .into_iter()
            .map(|(index, f)| {
                let (from_origin, from_peers) = self.sources(index).unwrap_or_default();
                match f {
                    LiveFile::Bytes(p) => Durable {
                        index,
                        synced: p.synced.load(Ordering::Acquire),
                        segments: None,
                        from_origin,
                        from_peers,
                    },
                    LiveFile::Segments(t) => {
                        let segments = t.snapshot();
                        Durable {
                            index,
                            synced: segments.iter().map(|s| s.done).sum(),
                            segments: Some(segments),
                            from_origin,
                            from_peers,
                        }
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_are_spaced() {
        let run = LiveRun::new();
        assert!(run.moved(), "the first bytes are reported at once");
        assert!(!run.moved(), "then not again within the interval");
        run.next_report_ms.store(0, Ordering::Relaxed);
        assert!(run.moved(), "due again once the interval has passed");
    }

    #[test]
    fn counters_are_read_without_the_worker() {
        let run = LiveRun::new();
        let p = Progress::starting_at(10);
        run.set_bytes(3, p.clone());
        p.written.store(25, Ordering::Relaxed);
        p.synced.store(20, Ordering::Relaxed);
        assert_eq!(run.written(3), Some(25));
        assert_eq!(run.written(4), None);
        assert_eq!(
            run.durable(),
            vec![Durable {
                index: 3,
                synced: 20,
                segments: None,
                from_origin: 0,
                from_peers: 0,
            }]
        );
    }
}
