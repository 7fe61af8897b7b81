//! What a run shares while it runs: the byte counters of the files it writes, when a
//! byte last moved, and its current rate. The transfer code bumps atomics; the service
//! reads them for views, checkpoints and throughput. Nothing here takes the service's lock.
//!
//! The rate is a moving window: every time a `Report::Progressed` is due (at most every
//! [`PROGRESS_INTERVAL_MS`]) the run records (time, bytes moved so far); the rate is the
//! bytes moved since the oldest record of the last [`RATE_WINDOW_MS`] over the time since
//! then, so it follows changes within a few seconds and falls towards zero when bytes stop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::partfile::Progress;
use super::segtable::SegTable;
use super::sources::SourceBytes;
use crate::model::{mono_ms, FileRange, Segment};

/// What an application asked of an on-demand file while its run runs (BITS:
/// `RequestFileRanges`, `UpdateDownloadPosition`): the run takes the requests between
/// batches of ranges, and waits on `wake` when it has nothing left to fetch.
#[derive(Debug, Default)]
pub struct OnDemand {
    requests: Mutex<(Vec<FileRange>, Option<u64>)>,
    wake: tokio::sync::Notify,
}

impl OnDemand {
    /// Takes the ranges requested and the position given since the last take.
    pub(super) fn take(&self) -> (Vec<FileRange>, Option<u64>) {
        std::mem::take(&mut *self.requests.lock())
    }

    /// Waits for the next request (one that came since the last wait counts).
    pub(super) async fn requested(&self) {
        self.wake.notified().await
    }
}

/// `Report::Progressed` is sent at most this often per job (ms).
pub const PROGRESS_INTERVAL_MS: i64 = 500;

/// The span of time the rate is measured over (ms).
pub const RATE_WINDOW_MS: i64 = 3000;

/// The shortest span a rate is computed over (ms): a run that has just started does not
/// show the burst of its first chunk as a huge rate.
const RATE_MIN_SPAN_MS: i64 = 1000;

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
    /// Bytes moved by this run, every file together (what the rate counts).
    moved_bytes: AtomicU64,
    /// (time ms, `moved_bytes`) recorded at most every `PROGRESS_INTERVAL_MS`, oldest first,
    /// covering a little more than `RATE_WINDOW_MS`.
    samples: Mutex<VecDeque<(i64, u64)>>,
    /// The yielding controller holds the run's rate to the delay it measures.
    yielding: AtomicBool,
    /// The requests of on-demand files, by file index.
    on_demand: Mutex<BTreeMap<u32, Arc<OnDemand>>>,
}

impl LiveRun {
    /// A run starting now. No byte has moved yet: a run that fails before any does not
    /// count as progress, so retries alone never hold off the no-progress timeout.
    pub fn new() -> Arc<LiveRun> {
        let run = LiveRun::default();
        let now = mono_ms();
        run.last_progress_ms.store(i64::MIN, Ordering::Relaxed);
        run.samples.lock().push_back((now, 0));
        Arc::new(run)
    }

    pub(super) fn set_yielding(&self, yielding: bool) {
        self.yielding.store(yielding, Ordering::Relaxed);
    }

    /// True while the yielding controller paces the run (a background job's download or upload
    /// with a connection it watches).
    pub fn yielding(&self) -> bool {
        self.yielding.load(Ordering::Relaxed)
    }

    pub(super) fn set_bytes(&self, index: u32, progress: Arc<Progress>) {
        self.files.lock().insert(index, LiveFile::Bytes(progress));
    }

    pub(super) fn set_segments(&self, index: u32, table: Arc<SegTable>) {
        self.files.lock().insert(index, LiveFile::Segments(table));
    }

    /// The request box of on-demand file `index`.
    pub(super) fn on_demand(&self, index: u32) -> Arc<OnDemand> {
        self.on_demand.lock().entry(index).or_default().clone()
    }

    /// An application requested `ranges` of on-demand file `index` and/or reads at
    /// `position`: the run fetches them next (BITS: `RequestFileRanges`,
    /// `UpdateDownloadPosition`).
    pub fn request_ranges(&self, index: u32, ranges: &[FileRange], position: Option<u64>) {
        let slot = self.on_demand(index);
        {
            let mut r = slot.requests.lock();
            r.0.extend_from_slice(ranges);
            if position.is_some() {
                r.1 = position;
            }
        }
        slot.wake.notify_one();
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

    /// `n` bytes moved: records the time and counts them; true when a
    /// `Report::Progressed` is due (then the rate's window gets a sample too).
    pub(super) fn moved(&self, n: u64) -> bool {
        let now = mono_ms();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        let total = self.moved_bytes.fetch_add(n, Ordering::AcqRel) + n;
        let due = self.next_report_ms.load(Ordering::Relaxed);
        let report = now >= due
            && self
                .next_report_ms
                .compare_exchange(
                    due,
                    now + PROGRESS_INTERVAL_MS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok();
        if report {
            self.sample(now, total);
        }
        report
    }

    /// Records that `total` bytes had moved at `now`, forgetting samples no rate needs.
    fn sample(&self, now: i64, total: u64) {
        let mut samples = self.samples.lock();
        samples.push_back((now, total));
        // Keep one sample older than the window: the base when nothing newer is left.
        while samples.len() > 2 && samples[1].0 < now - RATE_WINDOW_MS {
            samples.pop_front();
        }
    }

    /// Bytes per second over the last few seconds, as of `now` (ms since the epoch).
    pub fn rate(&self, now: i64) -> u64 {
        let total = self.moved_bytes.load(Ordering::Acquire);
        let samples = self.samples.lock();
        // The oldest sample inside the window; else the newest one (nothing was
        // recorded lately, so the rate falls as the time since grows).
        let base = samples
            .iter()
            .find(|(t, _)| *t >= now - RATE_WINDOW_MS)
            .or(samples.back());
        let Some(&(t, bytes)) = base else { return 0 };
        let span = (now - t).max(RATE_MIN_SPAN_MS) as u64;
        total.saturating_sub(bytes) * 1000 / span
    }

    /// When a byte of this run last moved, on the monotonic clock ([`mono_ms`]);
    /// `i64::MIN` while none has.
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
        assert!(run.moved(1), "the first bytes are reported at once");
        assert!(!run.moved(1), "then not again within the interval");
        run.next_report_ms.store(0, Ordering::Relaxed);
        assert!(run.moved(1), "due again once the interval has passed");
    }

    /// A run whose samples are placed by hand (times in ms from 0).
    fn run_with(samples: &[(i64, u64)], total: u64) -> LiveRun {
        let run = LiveRun::default();
        run.samples.lock().extend(samples.iter().copied());
        run.moved_bytes.store(total, Ordering::Relaxed);
        run
    }

    #[test]
    fn the_rate_counts_the_bytes_of_the_window() {
        // 1000 bytes every 500 ms: 2000 B/s, whatever came before the window.
        let samples: Vec<(i64, u64)> = (0..=20).map(|i| (i * 500, i as u64 * 1000)).collect();
        let run = run_with(&samples, 20_000);
        assert_eq!(run.rate(10_000), 2000);
        // Faster lately: the window sees only the recent pace.
        let mut fast = samples.clone();
        fast.extend((21..=30).map(|i| (i * 500, 20_000 + (i as u64 - 20) * 5000)));
        let run = run_with(&fast, 70_000);
        assert_eq!(run.rate(15_000), 10_000);
    }

    #[test]
    fn the_rate_falls_when_bytes_stop() {
        let samples: Vec<(i64, u64)> = (0..=10).map(|i| (i * 500, i as u64 * 1000)).collect();
        let run = run_with(&samples, 10_000);
        let moving = run.rate(5_000);
        let later = run.rate(7_000);
        let much_later = run.rate(60_000);
        assert!(moving > later, "{moving} then {later}");
        assert!(later > much_later, "{later} then {much_later}");
        assert_eq!(much_later, 0);
    }

    #[test]
    fn a_new_run_does_not_show_its_first_chunk_as_a_burst() {
        let run = LiveRun::new();
        let start = run.samples.lock()[0].0;
        run.moved_bytes.store(4096, Ordering::Relaxed);
        assert_eq!(run.rate(start + 10), 4096, "spread over at least a second");
    }

    #[test]
    fn old_samples_are_forgotten() {
        let run = LiveRun::new();
        for i in 1..=100 {
            run.sample(i * 500, i as u64);
        }
        let kept = run.samples.lock().len() as i64;
        assert!(kept <= RATE_WINDOW_MS / 500 + 2, "{kept} samples kept");
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
