//! The `[system]` section of `ferryd.toml`: how the system-wide daemon's processes are
//! run (the root broker, one worker per user, the cache process). The per-user daemon
//! ignores it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the system-wide daemon's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// A worker with no client and nothing to do leaves after this long (it is started
    /// again by the next connection of its user).
    #[serde(with = "humantime_serde")]
    pub worker_idle_timeout: Duration,
    /// The most descriptors one worker may hold (its `RLIMIT_NOFILE`): one user's
    /// connections and transfers cannot take the machine's.
    pub worker_max_files: u64,
    /// The system user the cache process (peer cache and peer port) runs as.
    pub cache_user: String,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            worker_idle_timeout: Duration::from_secs(120),
            worker_max_files: 4096,
            cache_user: "_ferry".into(),
        }
    }
}

impl SystemConfig {
    /// Refuses values out of range, naming the key.
    pub(super) fn check(&self) -> Result<(), String> {
        if !(64..=1 << 20).contains(&self.worker_max_files) {
            return Err(format!(
                "[system] worker_max_files = {}: give 64 to 1048576 (the default is 4096)",
                self.worker_max_files
            ));
        }
        if self.worker_idle_timeout < Duration::from_secs(1) {
            return Err(
                "[system] worker_idle_timeout: give at least 1s (the default is 2m)".into(),
            );
        }
        if self.cache_user.is_empty() || self.cache_user.contains([':', '\n', '\0', '/']) {
            return Err(format!(
                "[system] cache_user = '{}' is not a user name",
                self.cache_user
            ));
        }
        Ok(())
    }
}

/// Every key of `[system]`.
#[cfg(test)]
pub(super) const KEYS: &[&str] = &["worker_idle_timeout", "worker_max_files", "cache_user"];

/// `humantime` durations for serde (`"2m"`, `"30s"`).
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("'{text}': {e} (e.g. 30s, 15m, 7d)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ranges_and_unknown_keys() {
        let c: SystemConfig = toml::from_str("").unwrap();
        assert_eq!(c, SystemConfig::default());
        let c: SystemConfig =
            toml::from_str("worker_idle_timeout = \"5s\"\nworker_max_files = 256\n").unwrap();
        assert_eq!(c.worker_idle_timeout, Duration::from_secs(5));
        c.check().unwrap();
        let c: SystemConfig = toml::from_str("worker_max_files = 10\n").unwrap();
        assert!(c.check().unwrap_err().contains("worker_max_files"));
        assert!(toml::from_str::<SystemConfig>("worker_idle = \"5s\"\n").is_err());
        let e = toml::from_str::<SystemConfig>("worker_idle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
