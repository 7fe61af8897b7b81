//! What a network costs and which of its costs a job transfers in: BITS's cost states
//! (`BITS_COST_STATE_*`) and a job's transfer policy over them
//! (`BITS_JOB_PROPERTY_ID_COST_FLAGS`), with the same bit values, so a number taken from a
//! BITS program means the same here.
//!
//! What Linux can tell of these states (see docs/architecture/network.md): NetworkManager's
//! `Metered` (yes or no, each maybe a guess) and ModemManager's registration (roaming or
//! not). So ferryd reports only three of them: [`CostFlags::UNRESTRICTED`] (not metered,
//! or unknown: BITS's meaning of that state too), [`CostFlags::CAPPED_USAGE_UNKNOWN`]
//! (metered: NetworkManager knows neither a cap nor the usage) and [`CostFlags::ROAMING`].
//! A policy may name every state; the ones never reported simply never match.

use crate::Priority;

bitflags::bitflags! {
    /// A set of BITS cost states: as a job's policy (BITS: `BITS_JOB_PROPERTY_ID_COST_FLAGS`),
    /// the states of the network the job may transfer in; as the network's state, one bit.
    /// Serialized as BITS's number (in JSON too, as WQL's `cost_flags` shows it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct CostFlags: u32 {
        /// BITS_COST_STATE_UNRESTRICTED: no usage charges or limits, or unknown.
        const UNRESTRICTED = 0x1;
        /// BITS_COST_STATE_CAPPED_USAGE_UNKNOWN: a data limit, usage against it unknown.
        const CAPPED_USAGE_UNKNOWN = 0x2;
        /// BITS_COST_STATE_BELOW_CAP: under 80 % of the data limit (never reported on Linux).
        const BELOW_CAP = 0x4;
        /// BITS_COST_STATE_NEAR_CAP: 80–100 % of the data limit (never reported on Linux).
        const NEAR_CAP = 0x8;
        /// BITS_COST_STATE_OVERCAP_CHARGED: over the limit, charged (never reported on Linux).
        const OVERCAP_CHARGED = 0x10;
        /// BITS_COST_STATE_OVERCAP_THROTTLED: over the limit, slowed (never reported on Linux).
        const OVERCAP_THROTTLED = 0x20;
        /// BITS_COST_STATE_USAGE_BASED: charged per byte (never reported on Linux: a
        /// metered network is reported as `CAPPED_USAGE_UNKNOWN`).
        const USAGE_BASED = 0x40;
        /// BITS_COST_STATE_ROAMING: a mobile connection outside its home network.
        const ROAMING = 0x80;
    }
}

/// BITS_COST_OPTION_IGNORE_CONGESTION, the top bit of BITS's DWORD. BITS's presets all
/// carry it; in ferry it is the separate `ignore_congestion` property (the job does not
/// yield to other traffic), so a cost-flags number given with it keeps only its state bits
/// (see [`CostFlags::from_dword`]).
pub const IGNORE_CONGESTION_BIT: u32 = 0x8000_0000;

impl serde::Serialize for CostFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.bits())
    }
}

impl<'de> serde::Deserialize<'de> for CostFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CostFlags, D::Error> {
        <u32 as serde::Deserialize>::deserialize(d).map(CostFlags::from_bits_retain)
    }
}

impl CostFlags {
    /// BITS_COST_STATE_TRANSFER_ALWAYS: every state.
    pub const TRANSFER_ALWAYS: CostFlags = CostFlags::all();
    /// BITS_COST_STATE_TRANSFER_NOT_ROAMING: every state but roaming.
    pub const TRANSFER_NOT_ROAMING: CostFlags =
        CostFlags::TRANSFER_ALWAYS.difference(CostFlags::ROAMING);
    /// BITS_COST_STATE_TRANSFER_NO_SURCHARGE: not roaming, not charged over the cap.
    pub const TRANSFER_NO_SURCHARGE: CostFlags =
        CostFlags::TRANSFER_NOT_ROAMING.difference(CostFlags::OVERCAP_CHARGED);
    /// BITS_COST_STATE_TRANSFER_STANDARD: not roaming, not near or over the cap (but
    /// throttled over it).
    pub const TRANSFER_STANDARD: CostFlags =
        CostFlags::TRANSFER_NO_SURCHARGE.difference(CostFlags::NEAR_CAP);
    /// BITS_COST_STATE_TRANSFER_UNRESTRICTED: no cost at all (or throttled over the cap).
    pub const TRANSFER_UNRESTRICTED: CostFlags =
        CostFlags::UNRESTRICTED.union(CostFlags::OVERCAP_THROTTLED);

    /// Each state with its name (BITS's without the `BITS_COST_STATE_` prefix, lower case).
    pub const NAMES: [(CostFlags, &'static str); 8] = [
        (CostFlags::UNRESTRICTED, "unrestricted"),
        (CostFlags::CAPPED_USAGE_UNKNOWN, "capped_usage_unknown"),
        (CostFlags::BELOW_CAP, "below_cap"),
        (CostFlags::NEAR_CAP, "near_cap"),
        (CostFlags::OVERCAP_CHARGED, "overcap_charged"),
        (CostFlags::OVERCAP_THROTTLED, "overcap_throttled"),
        (CostFlags::USAGE_BASED, "usage_based"),
        (CostFlags::ROAMING, "roaming"),
    ];

    /// BITS's presets with their names (`BITS_COST_STATE_TRANSFER_*`, lower case, as
    /// `ferry set --cost-flags` takes them).
    pub const PRESETS: [(CostFlags, &'static str); 5] = [
        (CostFlags::TRANSFER_ALWAYS, "transfer_always"),
        (CostFlags::TRANSFER_NOT_ROAMING, "transfer_not_roaming"),
        (CostFlags::TRANSFER_NO_SURCHARGE, "transfer_no_surcharge"),
        (CostFlags::TRANSFER_STANDARD, "transfer_standard"),
        (CostFlags::TRANSFER_UNRESTRICTED, "transfer_unrestricted"),
    ];

    /// The policy of a job at `priority` that has none of its own (neither cost flags nor
    /// `on_metered`): `foreground` transfers always (someone waits for it); `high`
    /// everywhere but roaming (BITS's usual default, NOT_ROAMING); `normal` and `low` only
    /// on an unrestricted network (they wait while it is metered or roaming, as ferry's
    /// background jobs always have).
    pub fn default_for(priority: Priority) -> CostFlags {
        match priority {
            Priority::Foreground => CostFlags::TRANSFER_ALWAYS,
            Priority::High => CostFlags::TRANSFER_NOT_ROAMING,
            Priority::Normal | Priority::Low => CostFlags::TRANSFER_UNRESTRICTED,
        }
    }

    /// A policy from BITS's DWORD: the IGNORE_CONGESTION bit is dropped (it is a property
    /// of its own in ferry); an error names any other bit that is no cost state (BITS's
    /// reserved 0x40000000 included), and a policy with no state at all, under which the
    /// job could never transfer.
    pub fn from_dword(bits: u32) -> Result<CostFlags, String> {
        let bits = bits & !IGNORE_CONGESTION_BIT;
        let unknown = bits & !CostFlags::all().bits();
        if unknown != 0 {
            return Err(format!(
                "cost flags {bits:#x} have bits that are no BITS cost state ({unknown:#x}): \
                 use BITS_COST_STATE_* bits (0x1 to 0x80) or a preset such as \
                 transfer_not_roaming"
            ));
        }
        if bits == 0 {
            return Err(
                "cost flags name no cost state: the job could never transfer (give at least \
                 one, e.g. unrestricted, or a preset such as transfer_standard)"
                    .into(),
            );
        }
        Ok(CostFlags::from_bits_retain(bits))
    }

    /// Parses a policy as people write it: a preset (`transfer_standard`, or without the
    /// `transfer_` prefix), state names joined by `,` or `|` (`unrestricted|roaming`), or a
    /// number (`0x8000007f`, BITS's DWORD; see [`CostFlags::from_dword`]).
    pub fn parse(text: &str) -> Result<CostFlags, String> {
        let t = text.trim().to_ascii_lowercase();
        let number = if let Some(hex) = t.strip_prefix("0x") {
            Some(u32::from_str_radix(hex, 16).ok())
        } else if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            Some(t.parse::<u32>().ok())
        } else {
            None
        };
        if let Some(n) = number {
            let n = n.ok_or_else(|| format!("cost flags '{text}': not a 32-bit number"))?;
            return CostFlags::from_dword(n);
        }
        let t = t
            .strip_prefix("bits_cost_state_")
            .map(str::to_string)
            .unwrap_or(t);
        let preset = |name: &str| {
            CostFlags::PRESETS
                .iter()
                .find(|(_, p)| *p == name || p.strip_prefix("transfer_") == Some(name))
                .map(|(f, _)| *f)
        };
        // "unrestricted" is both a state and (without the prefix) a preset: the state wins,
        // as BITS spells the preset TRANSFER_UNRESTRICTED.
        let mut flags = CostFlags::empty();
        for part in t.split([',', '|']).map(str::trim).filter(|p| !p.is_empty()) {
            let part = part.strip_prefix("bits_cost_state_").unwrap_or(part);
            if let Some((f, _)) = CostFlags::NAMES.iter().find(|(_, n)| *n == part) {
                flags |= *f;
            } else if let Some(f) = preset(part) {
                flags |= f;
            } else {
                let states: Vec<&str> = CostFlags::NAMES.iter().map(|(_, n)| *n).collect();
                let presets: Vec<&str> = CostFlags::PRESETS.iter().map(|(_, n)| *n).collect();
                return Err(format!(
                    "unknown cost state or preset '{part}' (expected a preset: {}; states \
                     joined by '|': {}; or a number such as 0x7f)",
                    presets.join(", "),
                    states.join(", ")
                ));
            }
        }
        CostFlags::from_dword(flags.bits())
    }

    /// The preset's name when the flags are one, else the states' names joined by `|`.
    pub fn describe(self) -> String {
        if let Some((_, name)) = CostFlags::PRESETS.iter().find(|(f, _)| *f == self) {
            return (*name).to_string();
        }
        let names: Vec<&str> = CostFlags::NAMES
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join("|")
        }
    }

    /// The name of a network state (one bit), e.g. "roaming".
    pub fn state_name(self) -> &'static str {
        CostFlags::NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("unknown", |(_, n)| n)
    }
}

impl crate::MeteredPolicy {
    /// The cost flags this shorthand stands for: `pause` transfers only on an unrestricted
    /// network (BITS's TRANSFER_UNRESTRICTED), `continue` everywhere but roaming
    /// (TRANSFER_NOT_ROAMING: a metered network is fine, a roaming surcharge is not).
    pub fn cost_flags(self) -> CostFlags {
        match self {
            crate::MeteredPolicy::Pause => CostFlags::TRANSFER_UNRESTRICTED,
            crate::MeteredPolicy::Continue => CostFlags::TRANSFER_NOT_ROAMING,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_cost_flags_serialize_as_numbers() {
        let json = serde_json::to_string(&CostFlags::TRANSFER_STANDARD).unwrap();
        assert_eq!(json, "103");
        let back: CostFlags = serde_json::from_str(&json).unwrap();
        assert_eq!(back, CostFlags::TRANSFER_STANDARD);
    }

    #[test]
    fn parity_cost_presets_have_bits_values() {
        // BITS_COST_STATE_TRANSFER_* less BITS_COST_OPTION_IGNORE_CONGESTION.
        assert_eq!(
            CostFlags::TRANSFER_ALWAYS.bits(),
            0x800000ff & !IGNORE_CONGESTION_BIT
        );
        assert_eq!(CostFlags::TRANSFER_NOT_ROAMING.bits(), 0x7f);
        assert_eq!(CostFlags::TRANSFER_NO_SURCHARGE.bits(), 0x6f);
        assert_eq!(CostFlags::TRANSFER_STANDARD.bits(), 0x67);
        assert_eq!(CostFlags::TRANSFER_UNRESTRICTED.bits(), 0x21);
    }

    #[test]
    fn parity_cost_flags_parse_presets_names_and_bits_numbers() {
        assert_eq!(
            CostFlags::parse("transfer_standard"),
            Ok(CostFlags::TRANSFER_STANDARD)
        );
        assert_eq!(
            CostFlags::parse("not_roaming"),
            Ok(CostFlags::TRANSFER_NOT_ROAMING)
        );
        assert_eq!(
            CostFlags::parse("BITS_COST_STATE_TRANSFER_NO_SURCHARGE"),
            Ok(CostFlags::TRANSFER_NO_SURCHARGE)
        );
        assert_eq!(
            CostFlags::parse("unrestricted"),
            Ok(CostFlags::UNRESTRICTED)
        );
        assert_eq!(
            CostFlags::parse("unrestricted|roaming"),
            Ok(CostFlags::UNRESTRICTED | CostFlags::ROAMING)
        );
        assert_eq!(
            CostFlags::parse("0x8000007f"),
            Ok(CostFlags::TRANSFER_NOT_ROAMING)
        );
        assert_eq!(CostFlags::parse("33"), Ok(CostFlags::TRANSFER_UNRESTRICTED));
        let e = CostFlags::parse("0x40000001").unwrap_err();
        assert!(e.contains("0x40000000"), "{e}");
        let e = CostFlags::parse("0x80000000").unwrap_err();
        assert!(e.contains("never transfer"), "{e}");
        let e = CostFlags::parse("cheap").unwrap_err();
        assert!(
            e.contains("'cheap'") && e.contains("transfer_standard"),
            "{e}"
        );
    }

    #[test]
    fn parity_cost_flags_describe_presets_by_name_and_others_by_states() {
        assert_eq!(
            CostFlags::TRANSFER_NOT_ROAMING.describe(),
            "transfer_not_roaming"
        );
        assert_eq!(
            (CostFlags::UNRESTRICTED | CostFlags::ROAMING).describe(),
            "unrestricted|roaming"
        );
        assert_eq!(CostFlags::ROAMING.state_name(), "roaming");
    }

    #[test]
    fn parity_cost_defaults_keep_background_jobs_off_metered_networks() {
        let metered = CostFlags::CAPPED_USAGE_UNKNOWN;
        for (p, on_metered, on_roaming) in [
            (Priority::Foreground, true, true),
            (Priority::High, true, false),
            (Priority::Normal, false, false),
            (Priority::Low, false, false),
        ] {
            let f = CostFlags::default_for(p);
            assert_eq!(f.intersects(metered), on_metered, "{p:?}");
            assert_eq!(f.intersects(CostFlags::ROAMING), on_roaming, "{p:?}");
            assert!(f.intersects(CostFlags::UNRESTRICTED), "{p:?}");
        }
        assert!(!crate::MeteredPolicy::Pause.cost_flags().intersects(metered));
        assert!(crate::MeteredPolicy::Continue
            .cost_flags()
            .intersects(metered));
    }
}
