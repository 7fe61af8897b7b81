//! Daemon settings, with the defaults of DESIGN §4–§6.

use std::time::Duration;

/// Settings of one daemon; every field has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Background jobs transferring at once (foreground jobs are not counted).
    pub max_concurrent_jobs: usize,
    /// Final jobs (`acknowledged`, `cancelled`) stay queryable this long.
    pub retention: Duration,
    /// A job nobody completes or cancels for this long is cancelled.
    pub job_inactivity_timeout: Duration,
    /// Jobs one user may have.
    pub max_jobs_per_user: usize,
    /// Files one job may have.
    pub max_files_per_job: usize,
    /// How long shutdown waits for workers to checkpoint.
    pub drain_timeout: Duration,
    /// How long a started handler has to register its class object.
    pub activation_timeout: Duration,
    /// How long a callback may take before it counts as failed.
    pub callback_timeout: Duration,
    /// The socket handlers are told to connect to (`FERRY_SOCKET` in their environment).
    pub socket_path: std::path::PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_concurrent_jobs: 8,
            retention: Duration::from_secs(7 * 24 * 3600),
            job_inactivity_timeout: Duration::from_secs(90 * 24 * 3600),
            max_jobs_per_user: 100_000,
            max_files_per_job: 100_000,
            drain_timeout: Duration::from_secs(10),
            activation_timeout: Duration::from_secs(30),
            callback_timeout: Duration::from_secs(120),
            socket_path: std::path::PathBuf::new(),
        }
    }
}
