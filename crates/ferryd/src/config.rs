//! Daemon settings, with their defaults: the per-user daemon's ([`Config::default`]) and
//! the system-wide daemon's ([`Config::system`]), which differ in the limits only.
//!
//! `ferryd.toml` is read through serde in one pass (`load.rs`): the file's keys laid over
//! the mode's defaults, deserialized with `deny_unknown_fields`. Each bounded key's range
//! is in its `with` attribute (`Bounded::<kind, min, max>`, `value.rs`, the one range
//! check); a refusal is a [`ConfigError`] naming the key, the value and what it takes.
//!
//! May use: nothing of the daemon (`ferry-common` for rates).

mod error;
mod load;
mod metrics;
mod peers;
mod schedule;
mod system;
mod value;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use value::{Bounded, Count, Rate, Size, Span, ANY};

pub use error::ConfigError;
pub use metrics::{MetricsConfig, MetricsListen};
pub use peers::{CacheSize, Discovery, PeersConfig};
pub use schedule::{local_now, Schedule};
pub use system::SystemConfig;

/// Which daemon this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One user's daemon, serving that user only (the default).
    #[default]
    User,
    /// The machine's daemon, serving every user; it runs as root and does each job's
    /// work as the job's owner.
    System,
}

/// Settings of one daemon; every field has a default. The keys of `ferryd.toml` are the
/// fields' names (`schedules` is `[[bandwidth.schedule]]`); counts and durations take
/// the ranges their `Bounded` attributes give (durations at most 100 years).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-user or system-wide.
    pub mode: Mode,
    /// The group whose members (with root) see and manage every user's jobs (system mode).
    #[serde(deserialize_with = "value::group_name")]
    pub admin_group: String,
    /// Jobs (not yet acknowledged or cancelled) all users together may have; root and
    /// administrators are not counted against it. 0 or more.
    #[serde(with = "Bounded::<Count<usize>, 0, ANY>")]
    pub max_jobs_per_machine: usize,
    /// The file the settings were read from (named in refusals that a setting causes).
    #[serde(skip)]
    pub source: std::path::PathBuf,
    /// Background jobs transferring at once (foreground jobs are not counted). 1 to 64.
    #[serde(with = "Bounded::<Count<usize>, 1, 64>")]
    pub max_concurrent_jobs: usize,
    /// Final jobs (`acknowledged`, `cancelled`) stay queryable this long. 0 or more.
    #[serde(with = "Bounded::<Span, 0, ANY>")]
    pub retention: Duration,
    /// A job nobody completes or cancels for this long is cancelled. More than 0.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub job_inactivity_timeout: Duration,
    /// Jobs (not yet acknowledged or cancelled) one user may have. 0 or more.
    #[serde(with = "Bounded::<Count<usize>, 0, ANY>")]
    pub max_jobs_per_user: usize,
    /// Files one job may have. 0 or more.
    #[serde(with = "Bounded::<Count<usize>, 0, ANY>")]
    pub max_files_per_job: usize,
    /// The custom headers of one job, names and values together, at most this many
    /// bytes. At least 1024.
    #[serde(with = "Bounded::<Count<u64>, 1024, ANY>")]
    pub max_header_bytes: u64,
    /// Handlers (notification classes) one user may register. 0 or more.
    #[serde(with = "Bounded::<Count<usize>, 0, ANY>")]
    pub max_handlers_per_user: usize,
    /// Final jobs (acknowledged, cancelled) one user keeps: past it, the oldest leave
    /// before their retention is over. 0: no limit.
    #[serde(with = "Bounded::<Count<usize>, 0, ANY>")]
    pub max_final_jobs_per_user: usize,
    /// Bytes one user's jobs may take in the store: past it, the oldest final jobs leave,
    /// and a change that needs room is refused if that is not enough. 0: no limit.
    #[serde(with = "Bounded::<Size, 0, ANY>")]
    pub max_store_bytes_per_user: u64,
    /// How long shutdown waits for workers to checkpoint. 0 or more.
    #[serde(with = "Bounded::<Span, 0, ANY>")]
    pub drain_timeout: Duration,
    /// How long a started handler has to register its class object. More than 0.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub activation_timeout: Duration,
    /// Bytes per second for all transfers together; 0 for no limit.
    #[serde(with = "Bounded::<Rate, 0, ANY>")]
    pub bandwidth_limit: u64,
    /// Connections per file for large downloads from servers that accept ranges (a job's
    /// own setting wins). 1 to 16, as a job's own.
    #[serde(with = "Bounded::<Count<u32>, 1, 16>")]
    pub connections_per_file: u32,
    /// Files of one download job transferring at once (over reused connections). 1 to 64.
    #[serde(with = "Bounded::<Count<usize>, 1, 64>")]
    pub files_in_parallel: usize,
    /// How long a callback may take before it counts as failed. More than 0.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub callback_timeout: Duration,
    /// Notifications one user may have in flight at once (callback calls, notify
    /// commands, handler starts), as BITS's four. At least 1.
    #[serde(with = "Bounded::<Count<usize>, 1, ANY>")]
    pub max_notifications_per_user: usize,
    /// Longest a notify command may run before it is killed (with its process group).
    /// More than 0.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub notify_command_timeout: Duration,
    /// The longest a job may take to transfer, from when it is first queued, for jobs
    /// that set no `max_transfer_time` of their own (BITS's MaxDownloadTime policy);
    /// past it the job fails. 0 (the default): no limit. At most 100 years.
    #[serde(with = "Bounded::<Span, 0, ANY>")]
    pub max_transfer_time: Duration,
    /// How often retention, inactivity and archiving are checked. More than 0.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub housekeeping_interval: Duration,
    /// The socket handlers are told to connect to (`FERRY_SOCKET` in their environment).
    #[serde(skip)]
    pub socket_path: std::path::PathBuf,
    /// `[[bandwidth.schedule]]`: limits in force at some times for some priorities.
    #[serde(rename = "bandwidth", with = "schedule::in_bandwidth_table")]
    pub schedules: Vec<Schedule>,
    /// Peer caching (`[peers]`).
    pub peers: PeersConfig,
    /// The system-wide daemon's processes (`[system]`).
    pub system: SystemConfig,
    /// The Prometheus/OpenMetrics endpoint (`[metrics]`), off by default.
    pub metrics: MetricsConfig,
}

impl Default for Config {
    /// The per-user daemon's defaults: limits high enough never to be in the way.
    fn default() -> Self {
        Config {
            mode: Mode::User,
            admin_group: "ferry-admin".into(),
            max_jobs_per_machine: 100_000,
            source: std::path::PathBuf::new(),
            max_concurrent_jobs: 8,
            retention: Duration::from_secs(7 * 24 * 3600),
            job_inactivity_timeout: Duration::from_secs(90 * 24 * 3600),
            max_jobs_per_user: 100_000,
            max_files_per_job: 100_000,
            max_header_bytes: 64 << 10,
            max_handlers_per_user: 100_000,
            max_final_jobs_per_user: 0,
            max_store_bytes_per_user: 0,
            drain_timeout: Duration::from_secs(10),
            activation_timeout: Duration::from_secs(30),
            bandwidth_limit: 0,
            connections_per_file: 1,
            files_in_parallel: 8,
            callback_timeout: Duration::from_secs(120),
            max_notifications_per_user: 4,
            notify_command_timeout: Duration::from_secs(300),
            max_transfer_time: Duration::ZERO,
            housekeeping_interval: Duration::from_secs(600),
            socket_path: std::path::PathBuf::new(),
            schedules: Vec::new(),
            peers: PeersConfig::default(),
            system: SystemConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Config {
    /// The system-wide daemon's defaults: BITS's limits (60 jobs per user, 300 per
    /// machine, 200 files per job), which root and administrators are exempt from.
    pub fn system() -> Config {
        Config {
            mode: Mode::System,
            max_jobs_per_user: 60,
            max_jobs_per_machine: 300,
            max_files_per_job: 200,
            max_handlers_per_user: 64,
            max_final_jobs_per_user: 1000,
            max_store_bytes_per_user: 256 << 20,
            ..Config::default()
        }
    }

    /// The defaults of `mode`.
    pub fn defaults(mode: Mode) -> Config {
        match mode {
            Mode::User => Config::default(),
            Mode::System => Config::system(),
        }
    }

    /// True for the system-wide daemon.
    pub fn is_system(&self) -> bool {
        self.mode == Mode::System
    }
}

/// Parses a rate such as `1MiB/s`, `500k`, `2 MB/s` or a plain number of bytes per second.
pub use ferry_common::units::parse_rate;

/// `$FERRY_CONFIG`, else `$XDG_CONFIG_HOME/ferry/ferryd.toml`, else
/// `~/.config/ferry/ferryd.toml` (ferry-common's rule).
pub use ferry_common::paths::config_path as default_config_path;

/// Every key `ferryd.toml` accepts at its top level (the tables `bandwidth` and `peers`
/// among them).
pub fn keys() -> Vec<String> {
    match toml::Table::try_from(Config::default()) {
        Ok(table) => table.keys().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

impl Config {
    /// The defaults, overridden by the file at `path` if it exists. The file's `mode`
    /// (default `user`) picks the defaults it overrides. A malformed file is an error
    /// naming the key.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        Config::load_as(path, None)
    }

    /// [`Config::load`], with the mode given by the command line (`ferryd --system`) when
    /// `mode` is set: a file that says otherwise is an error.
    pub fn load_as(path: &std::path::Path, mode: Option<Mode>) -> Result<Config, ConfigError> {
        load::load(path, mode)
    }
}

#[cfg(test)]
mod tests;
