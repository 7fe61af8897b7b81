//! The `[system]` section of `ferryd.toml`: how the system-wide daemon's processes are
//! run (the root broker, one worker per user, the cache process). The per-user daemon
//! ignores it.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::value::{text, Bounded, Count, Span, ANY};

/// Settings of the system-wide daemon's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of the system-wide daemon's keys"
)]
pub struct SystemConfig {
    /// A worker with no client and nothing to do leaves after this long (it is started
    /// again by the next connection of its user). At least 1 s.
    #[serde(with = "Bounded::<Span, 1000, ANY>")]
    pub worker_idle_timeout: Duration,
    /// The most descriptors one worker may hold (its `RLIMIT_NOFILE`): one user's
    /// connections and transfers cannot take the machine's. 64 to 1048576.
    #[serde(with = "Bounded::<Count<u64>, 64, 1_048_576>")]
    pub worker_max_files: u64,
    /// The system user the cache process (peer cache and peer port) runs as.
    #[serde(deserialize_with = "user_name")]
    pub cache_user: String,
    /// Client connections one user may have open at once (the broker closes more, so
    /// that no user holds the machine's descriptors). At least 1.
    #[serde(with = "Bounded::<Count<usize>, 1, ANY>")]
    pub max_connections_per_user: usize,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            worker_idle_timeout: Duration::from_secs(120),
            worker_max_files: 4096,
            cache_user: "_ferry".into(),
            max_connections_per_user: 256,
        }
    }
}

/// A user's name: not empty, without `:`, `/`, a line break or NUL.
fn user_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, "a user name (no ':', '/', line break or NUL)", |s| {
        (!s.is_empty() && !s.contains([':', '/', '\n', '\0'])).then(|| s.to_string())
    })
}
