//! The daemon's numbers at one moment, as the metrics endpoint serves them: made by the
//! facade (`Service::metrics_snapshot`), carried from a system-wide daemon's workers to
//! its broker (postcard), added up there, written as OpenMetrics text by `metrics/`.

use serde::{Deserialize, Serialize};

use super::JobState;

/// The most error codes a snapshot from another process keeps ([`MetricsSnapshot::trimmed`]).
pub const MAX_ERROR_CODES: usize = 512;

/// The numbers of one daemon (or of every worker of the machine, added up).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Jobs stored, in every state (0s included).
    pub jobs_by_state: Vec<(JobState, u64)>,
    /// Jobs whose run the yielding controller paces now.
    pub jobs_yielding: u64,
    /// Jobs with a run now.
    pub active_transfers: u64,
    /// Bytes received since the start from origins and from peers (caches and swarm).
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    /// Files and jobs that reached their end since the start.
    pub files_transferred: u64,
    pub jobs_transferred: u64,
    /// Failures recorded on jobs since the start, by error code (sorted by code).
    pub errors: Vec<(String, u64)>,
    /// Peer caching, when it is on.
    pub peers: Option<PeerCounts>,
}

/// Peer caching's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// Known peers by state.
    pub new: u64,
    pub up: u64,
    pub unreachable: u64,
    pub banned: u64,
    pub cache_bytes: u64,
    pub cache_limit: u64,
    pub cache_entries: u64,
    /// Bytes served to peers since the start.
    pub bytes_served: u64,
    /// Peers' lookups the cache answered, and those it could not, since the start.
    pub lookup_hits: u64,
    pub lookup_misses: u64,
}

impl MetricsSnapshot {
    /// Adds `other`'s numbers to these (the machine's sum of its workers). Peer caching
    /// is one per machine (the cache process), so its numbers are taken, not added.
    pub fn add(&mut self, other: &MetricsSnapshot) {
        for (state, n) in &other.jobs_by_state {
            match self.jobs_by_state.iter_mut().find(|(s, _)| s == state) {
                Some((_, m)) => *m += n,
                None => self.jobs_by_state.push((*state, *n)),
            }
        }
        self.jobs_yielding += other.jobs_yielding;
        self.active_transfers += other.active_transfers;
        self.bytes_from_origin += other.bytes_from_origin;
        self.bytes_from_peers += other.bytes_from_peers;
        self.files_transferred += other.files_transferred;
        self.jobs_transferred += other.jobs_transferred;
        for (code, n) in &other.errors {
            match self.errors.iter_mut().find(|(c, _)| c == code) {
                Some((_, m)) => *m += n,
                None => self.errors.push((code.clone(), *n)),
            }
        }
        self.errors.sort();
        if other.peers.is_some() {
            self.peers = other.peers;
        }
    }

    /// These numbers as another process sent them (a worker, which is its user's), made
    /// safe to keep and serve: one entry per job state, at most [`MAX_ERROR_CODES`]
    /// error codes, each a code as ferry writes them (lower-case letters, digits and
    /// `_`, 64 at most).
    pub fn trimmed(mut self) -> MetricsSnapshot {
        let mut seen = Vec::new();
        self.jobs_by_state.retain(|(s, _)| {
            let new = !seen.contains(s);
            seen.push(*s);
            new
        });
        self.errors.retain(|(code, _)| {
            !code.is_empty()
                && code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        self.errors.truncate(MAX_ERROR_CODES);
        self
    }

    /// No job in any state, nothing counted: what a machine without workers serves.
    pub fn empty() -> MetricsSnapshot {
        MetricsSnapshot {
            jobs_by_state: JobState::ALL.iter().map(|s| (*s, 0)).collect(),
            ..MetricsSnapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_add_up() {
        let a = MetricsSnapshot {
            jobs_by_state: vec![(JobState::Queued, 2), (JobState::Error, 1)],
            bytes_from_origin: 10,
            errors: vec![("timeout".into(), 1)],
            ..MetricsSnapshot::default()
        };
        let b = MetricsSnapshot {
            jobs_by_state: vec![(JobState::Queued, 1), (JobState::Error, 0)],
            bytes_from_origin: 5,
            bytes_from_peers: 7,
            errors: vec![("http_404".into(), 2), ("timeout".into(), 3)],
            peers: Some(PeerCounts {
                up: 2,
                ..PeerCounts::default()
            }),
            ..MetricsSnapshot::default()
        };
        let mut sum = MetricsSnapshot::empty();
        sum.add(&a);
        sum.add(&b);
        let queued = sum
            .jobs_by_state
            .iter()
            .find(|(s, _)| *s == JobState::Queued);
        assert_eq!(queued, Some(&(JobState::Queued, 3)));
        assert_eq!(sum.jobs_by_state.len(), JobState::ALL.len());
        assert_eq!((sum.bytes_from_origin, sum.bytes_from_peers), (15, 7));
        assert_eq!(
            sum.errors,
            vec![("http_404".into(), 2), ("timeout".into(), 4)]
        );
        assert_eq!(sum.peers.map(|p| p.up), Some(2));
    }

    #[test]
    fn what_a_worker_sends_is_trimmed_before_it_is_kept() {
        let sent = MetricsSnapshot {
            jobs_by_state: vec![(JobState::Queued, 1); 1000],
            errors: (0..2000)
                .map(|i| (format!("code_{i}"), 1))
                .chain([("bad\"} 1\n".into(), 1), ("x".repeat(65), 1)])
                .collect(),
            ..MetricsSnapshot::default()
        }
        .trimmed();
        assert_eq!(sent.jobs_by_state, vec![(JobState::Queued, 1)]);
        assert_eq!(sent.errors.len(), MAX_ERROR_CODES);
        assert!(sent.errors.iter().all(|(c, _)| c.starts_with("code_")));
    }
}
