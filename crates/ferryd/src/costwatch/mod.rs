//! Whether the network costs money per byte (metered), and where that came from. The
//! watcher (`networkmanager.rs`) reads NetworkManager's `Metered` property over the system
//! D-Bus and follows it; where NetworkManager is absent the network is taken as unmetered.
//! The service is told of each change (background jobs pause on a metered network and
//! start again by themselves when it is unmetered) and shows the state in `Status`.
//!
//! May use: nothing of the daemon; `daemon.rs` tells it what to call on a change. The only
//! user of `zbus`.

mod networkmanager;

use parking_lot::Mutex;

pub use networkmanager::watch;

/// What is known of the network's cost now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostState {
    /// True when transfers on this network cost: background jobs wait.
    pub metered: bool,
    /// Where `metered` came from, for people: "NetworkManager (Metered: yes)", "no
    /// NetworkManager on the system bus: taken as unmetered", …
    pub source: String,
}

/// The network's cost, as the watcher last saw it. Starts unmetered: until the watcher has
/// looked, nothing is held back.
#[derive(Debug)]
pub struct NetworkCost {
    state: Mutex<CostState>,
}

impl Default for NetworkCost {
    fn default() -> Self {
        NetworkCost {
            state: Mutex::new(CostState {
                metered: false,
                source: "not looked at yet: taken as unmetered".into(),
            }),
        }
    }
}

impl NetworkCost {
    pub fn new() -> NetworkCost {
        NetworkCost::default()
    }

    /// The state now.
    pub fn state(&self) -> CostState {
        self.state.lock().clone()
    }

    /// Records what the watcher saw; returns the new `metered` when it changed.
    pub fn observe(&self, metered: bool, source: String) -> Option<bool> {
        let mut s = self.state.lock();
        let changed = s.metered != metered;
        *s = CostState { metered, source };
        changed.then_some(metered)
    }
}

/// NetworkManager's `NMMetered` values, as its `Metered` property holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmMetered {
    Unknown,
    Yes,
    No,
    GuessYes,
    GuessNo,
}

impl NmMetered {
    /// The value of the property; anything NetworkManager may add later counts as unknown.
    pub fn from_u32(v: u32) -> NmMetered {
        match v {
            1 => NmMetered::Yes,
            2 => NmMetered::No,
            3 => NmMetered::GuessYes,
            4 => NmMetered::GuessNo,
            _ => NmMetered::Unknown,
        }
    }

    /// Metered for ferry: NetworkManager says so, for sure or by its own guess (a mobile
    /// broadband or tethered connection). Unknown counts as unmetered.
    pub fn is_metered(self) -> bool {
        matches!(self, NmMetered::Yes | NmMetered::GuessYes)
    }

    /// How NetworkManager's own tools spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            NmMetered::Unknown => "unknown",
            NmMetered::Yes => "yes",
            NmMetered::No => "no",
            NmMetered::GuessYes => "yes (guessed)",
            NmMetered::GuessNo => "no (guessed)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metered_values_map_as_networkmanager_means_them() {
        let metered: Vec<bool> = (0..6)
            .map(|v| NmMetered::from_u32(v).is_metered())
            .collect();
        assert_eq!(metered, [false, true, false, true, false, false]);
    }

    #[test]
    fn only_changes_of_metered_are_reported() {
        let c = NetworkCost::new();
        assert!(!c.state().metered);
        assert_eq!(c.observe(false, "a".into()), None);
        assert_eq!(c.state().source, "a");
        assert_eq!(c.observe(true, "b".into()), Some(true));
        assert_eq!(c.observe(true, "c".into()), None);
        assert_eq!(c.observe(false, "d".into()), Some(false));
    }
}
