//! What the facade counts for the metrics endpoint, and the snapshot it reads at a
//! scrape: jobs by state (kept by `Inner`), bytes by source (the engine's), and here the
//! counters nothing else keeps: files and jobs transferred, failures by error code. They
//! count from the daemon's start (a Prometheus counter's reset is the restart).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{PeerState, PeersStatus, Service};
use crate::model::{ErrorKind, MetricsSnapshot, PeerCounts};

/// Counters of the daemon's life.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    files_transferred: AtomicU64,
    jobs_transferred: AtomicU64,
    /// Failures recorded on jobs (transient ones too), by error code.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub(crate) fn file_transferred(&self) {
        self.files_transferred.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_transferred(&self) {
        self.jobs_transferred.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, kind: ErrorKind) {
        *self
            .errors
            .lock()
            .entry(kind.code().into_owned())
            .or_default() += 1;
    }
}

impl Service {
    /// The numbers the metrics endpoint serves, gathered now: the lock is taken once,
    /// for counts kept as jobs change and a pass over the live jobs' runs.
    pub async fn metrics_snapshot(&self) -> MetricsSnapshot {
        let (jobs_by_state, jobs_yielding) = {
            let inner = self.lock();
            let yielding = inner
                .jobs
                .values()
                .filter(|e| e.run.as_ref().is_some_and(|(_, live)| live.yielding()))
                .count();
            let by_state = inner
                .jobs_by_state()
                .into_iter()
                .map(|(s, n)| (s, n as u64))
                .collect();
            (by_state, yielding as u64)
        };
        let (bytes_from_origin, bytes_from_peers) = self.engine.received();
        let peers = match self.peers_status().await {
            Ok(p) => p.as_ref().map(peer_counts),
            Err(e) => {
                tracing::debug!("peer caching's status for the metrics: {e}");
                None
            }
        };
        MetricsSnapshot {
            jobs_by_state,
            jobs_yielding,
            active_transfers: self.active_transfers() as u64,
            bytes_from_origin,
            bytes_from_peers,
            files_transferred: self.counters.files_transferred.load(Ordering::Relaxed),
            jobs_transferred: self.counters.jobs_transferred.load(Ordering::Relaxed),
            errors: self
                .counters
                .errors
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            peers,
        }
    }
}

/// What the metrics serve of peer caching's status.
fn peer_counts(p: &PeersStatus) -> PeerCounts {
    let count = |state: PeerState| p.peers.iter().filter(|i| i.state == state).count() as u64;
    PeerCounts {
        new: count(PeerState::New),
        up: count(PeerState::Up),
        unreachable: count(PeerState::Unreachable),
        banned: count(PeerState::Banned),
        cache_bytes: p.cache_bytes,
        cache_limit: p.cache_limit,
        cache_entries: p.cache_entries,
        bytes_served: p.bytes_served,
        lookup_hits: p.lookup_hits,
        lookup_misses: p.lookup_misses,
    }
}
