//! Following the network: whether the machine has a usable default route now, and the
//! periods it had none. `watcher.rs` listens to the kernel's link, address and route
//! changes over rtnetlink and updates a [`Connectivity`]; the service asks it how long the
//! network was down between two times (that time does not count toward a job's
//! no-progress timeout) and is told of each change (jobs stop with "network unreachable"
//! when the route goes, and retry at once when it returns).
//!
//! May use: `model` (the clock); `daemon.rs` tells it what to call on a change.

mod watcher;

use std::collections::VecDeque;

use parking_lot::Mutex;

pub use watcher::{default_route_present, watch};

/// How many past offline periods are remembered (older ones are merged into one).
const KEEP_PERIODS: usize = 1024;

/// A change of connectivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The last usable default route went away.
    Lost,
    /// A usable default route appeared after a time without one.
    Returned,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Since when (monotonic ms, `model::mono_ms`) there has been no route, if there is none now.
    offline_since: Option<i64>,
    /// Past periods without a route, `[start, end)` in monotonic ms, oldest first.
    past: VecDeque<(i64, i64)>,
}

/// Whether the network is up, and when it was not. Starts online: until the watcher has
/// looked, nothing is held back.
#[derive(Debug, Default)]
pub struct Connectivity {
    ledger: Mutex<Ledger>,
}

impl Connectivity {
    pub fn new() -> Connectivity {
        Connectivity::default()
    }

    /// True while a usable default route exists (or before the watcher has looked).
    pub fn is_online(&self) -> bool {
        self.ledger.lock().offline_since.is_none()
    }

    /// Records what the watcher saw at `now_ms` (monotonic); returns the change, if any.
    pub fn observe(&self, online: bool, now_ms: i64) -> Option<Change> {
        let mut l = self.ledger.lock();
        match (l.offline_since, online) {
            (None, false) => {
                l.offline_since = Some(now_ms);
                Some(Change::Lost)
            }
            (Some(since), true) => {
                l.offline_since = None;
                l.past.push_back((since, now_ms.max(since)));
                if l.past.len() > KEEP_PERIODS {
                    // Merge the two oldest: the span between them counts as offline, a
                    // small error on periods long gone.
                    let (a, _) = l.past.pop_front().expect("non-empty");
                    if let Some(first) = l.past.front_mut() {
                        first.0 = a;
                    }
                }
                Some(Change::Returned)
            }
            _ => None,
        }
    }

    /// How many ms of `[from_ms, to_ms)` the machine spent without a route (the current
    /// offline period counts up to `to_ms`).
    pub fn offline_ms_between(&self, from_ms: i64, to_ms: i64) -> i64 {
        let l = self.ledger.lock();
        let overlap = |(a, b): (i64, i64)| (b.min(to_ms) - a.max(from_ms)).max(0);
        let past: i64 = l
            .past
            .iter()
            .rev()
            .take_while(|(_, end)| *end > from_ms)
            .map(|p| overlap(*p))
            .sum();
        past + l.offline_since.map_or(0, |since| overlap((since, to_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_reported_once() {
        let c = Connectivity::new();
        assert!(c.is_online());
        assert_eq!(c.observe(true, 0), None);
        assert_eq!(c.observe(false, 1_000), Some(Change::Lost));
        assert_eq!(c.observe(false, 2_000), None);
        assert!(!c.is_online());
        assert_eq!(c.observe(true, 5_000), Some(Change::Returned));
        assert!(c.is_online());
    }

    #[test]
    fn offline_time_is_measured_over_a_window() {
        let c = Connectivity::new();
        c.observe(false, 1_000);
        c.observe(true, 5_000);
        c.observe(false, 10_000);
        // A window over the first period, partly.
        assert_eq!(c.offline_ms_between(0, 3_000), 2_000);
        assert_eq!(c.offline_ms_between(2_000, 9_000), 3_000);
        // The current period counts up to the window's end.
        assert_eq!(c.offline_ms_between(0, 12_000), 4_000 + 2_000);
        assert_eq!(c.offline_ms_between(6_000, 8_000), 0);
    }
}
