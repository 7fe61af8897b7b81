//! What the network costs, and where that came from: NetworkManager's `Metered` property
//! (`networkmanager.rs`) says whether it is metered, ModemManager's modems
//! (`modemmanager.rs`) whether a mobile connection is roaming; both are read over the
//! system D-Bus and followed. Where either is absent, its part is taken as the cheap
//! answer (unmetered, not roaming). The network's state is one of BITS's cost states
//! ([`CostFlags`]): `roaming`, else `capped_usage_unknown` (metered), else `unrestricted`.
//! The service is told of each change (jobs whose cost flags do not allow the new state
//! wait, queued, and start by themselves when it allows them again) and shows the state in
//! `Status`.
//!
//! May use: nothing of the daemon (the cost flags come from `ferry_common`): `daemon.rs` tells it what
//! to call on a change. The only user of `zbus`.

mod modemmanager;
mod networkmanager;

use parking_lot::Mutex;

use ferry_common::CostFlags;

pub use modemmanager::watch as watch_roaming;
pub use networkmanager::watch;

/// What is known of the network's cost now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostState {
    /// True when NetworkManager says the network is metered (for sure or by its guess).
    pub metered: bool,
    /// Where `metered` came from, for people: "NetworkManager (Metered: yes)", "no
    /// NetworkManager on the system bus: taken as unmetered", …
    pub source: String,
    /// True when ModemManager says a connected modem is registered roaming.
    pub roaming: bool,
    /// Where `roaming` came from, for people: "ModemManager (no connected modem
    /// roaming)", "ModemManager is not running: taken as not roaming", …
    pub roaming_source: String,
}

impl CostState {
    /// The network's state as one BITS cost state: roaming, else capped with unknown
    /// usage (metered: Linux knows neither the cap nor the usage), else unrestricted.
    pub fn state(&self) -> CostFlags {
        if self.roaming {
            CostFlags::ROAMING
        } else if self.metered {
            CostFlags::CAPPED_USAGE_UNKNOWN
        } else {
            CostFlags::UNRESTRICTED
        }
    }
}

/// The network's cost, as the watchers last saw it. Starts unmetered and not roaming:
/// until the watchers have looked, nothing is held back.
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
                roaming: false,
                roaming_source: "not looked at yet: taken as not roaming".into(),
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

    /// Records what NetworkManager's watcher saw; true when the network's cost state
    /// changed.
    pub fn observe(&self, metered: bool, source: String) -> bool {
        let mut s = self.state.lock();
        let before = s.state();
        s.metered = metered;
        s.source = source;
        s.state() != before
    }

    /// Records what ModemManager's watcher saw; true when the network's cost state
    /// changed.
    pub fn observe_roaming(&self, roaming: bool, source: String) -> bool {
        let mut s = self.state.lock();
        let before = s.state();
        s.roaming = roaming;
        s.roaming_source = source;
        s.state() != before
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
    fn parity_cost_only_changes_of_the_cost_state_are_reported() {
        let c = NetworkCost::new();
        assert!(!c.state().metered);
        assert_eq!(c.state().state(), CostFlags::UNRESTRICTED);
        assert!(!c.observe(false, "a".into()));
        assert_eq!(c.state().source, "a");
        assert!(c.observe(true, "b".into()));
        assert_eq!(c.state().state(), CostFlags::CAPPED_USAGE_UNKNOWN);
        assert!(!c.observe(true, "c".into()));
        assert!(
            c.observe_roaming(true, "r".into()),
            "roaming outranks metered"
        );
        assert_eq!(c.state().state(), CostFlags::ROAMING);
        assert!(!c.observe(false, "d".into()), "still roaming");
        assert!(c.observe_roaming(false, "h".into()));
        assert_eq!(c.state().state(), CostFlags::UNRESTRICTED);
        assert_eq!(c.state().roaming_source, "h");
    }
}
