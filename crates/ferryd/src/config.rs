//! Daemon settings, with their defaults.
//!
//! May use: nothing of the daemon (`ferry-common` for rates).

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
    /// Bytes per second for all transfers together; 0 for no limit.
    pub bandwidth_limit: u64,
    /// Connections per file for large downloads from servers that accept ranges (a job's
    /// own setting wins).
    pub connections_per_file: u32,
    /// Files of one download job transferring at once (over reused connections).
    pub files_in_parallel: usize,
    /// How long a callback may take before it counts as failed.
    pub callback_timeout: Duration,
    /// Notifications one user may have in flight at once (callback calls, notify
    /// commands, handler starts), as BITS's four.
    pub max_notifications_per_user: usize,
    /// Longest a notify command may run before it is killed (with its process group).
    pub notify_command_timeout: Duration,
    /// How often retention, inactivity and archiving are checked.
    pub housekeeping_interval: Duration,
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
            bandwidth_limit: 0,
            connections_per_file: 1,
            files_in_parallel: 8,
            callback_timeout: Duration::from_secs(120),
            max_notifications_per_user: 4,
            notify_command_timeout: Duration::from_secs(300),
            housekeeping_interval: Duration::from_secs(600),
            socket_path: std::path::PathBuf::new(),
        }
    }
}

/// Parses a rate such as `1MiB/s`, `500k`, `2 MB/s` or a plain number of bytes per second.
pub use ferry_common::units::parse_rate;

/// `ferryd.toml`: every key optional; see `Config` for the defaults.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    max_concurrent_jobs: Option<usize>,
    bandwidth_limit: Option<toml::Value>,
    connections_per_file: Option<u32>,
    files_in_parallel: Option<usize>,
    retention: Option<String>,
    job_inactivity_timeout: Option<String>,
    max_jobs_per_user: Option<usize>,
    max_files_per_job: Option<usize>,
    drain_timeout: Option<String>,
    activation_timeout: Option<String>,
    callback_timeout: Option<String>,
    max_notifications_per_user: Option<usize>,
    notify_command_timeout: Option<String>,
    housekeeping_interval: Option<String>,
}

/// `$FERRY_CONFIG`, else `$XDG_CONFIG_HOME/ferry/ferryd.toml`, else
/// `~/.config/ferry/ferryd.toml` (ferry-common's rule).
pub use ferry_common::paths::config_path as default_config_path;

fn duration(key: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{key} = '{v}': {e} (e.g. 30s, 15m, 7d)"))
}

impl Config {
    /// The defaults, overridden by the file at `path` if it exists. A malformed file is an
    /// error naming the key.
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let mut c = Config::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let f: FileConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(v) = f.max_concurrent_jobs {
            c.max_concurrent_jobs = v.max(1);
        }
        if let Some(v) = f.bandwidth_limit {
            c.bandwidth_limit = match v {
                toml::Value::Integer(n) if n >= 0 => n as u64,
                toml::Value::String(s) => parse_rate(&s)?,
                other => {
                    return Err(format!(
                    "bandwidth_limit = {other}: give bytes per second or a rate like \"10MiB/s\""
                ))
                }
            };
        }
        if let Some(v) = f.connections_per_file {
            c.connections_per_file = v.clamp(1, 16);
        }
        if let Some(v) = f.files_in_parallel {
            c.files_in_parallel = v.clamp(1, 64);
        }
        if let Some(v) = f.retention {
            c.retention = duration("retention", &v)?;
        }
        if let Some(v) = f.job_inactivity_timeout {
            c.job_inactivity_timeout = duration("job_inactivity_timeout", &v)?;
        }
        if let Some(v) = f.max_jobs_per_user {
            c.max_jobs_per_user = v;
        }
        if let Some(v) = f.max_files_per_job {
            c.max_files_per_job = v;
        }
        if let Some(v) = f.drain_timeout {
            c.drain_timeout = duration("drain_timeout", &v)?;
        }
        if let Some(v) = f.activation_timeout {
            c.activation_timeout = duration("activation_timeout", &v)?;
        }
        if let Some(v) = f.callback_timeout {
            c.callback_timeout = duration("callback_timeout", &v)?;
        }
        if let Some(v) = f.max_notifications_per_user {
            if v == 0 {
                return Err(
                    "max_notifications_per_user = 0: at least one notification must be able \
                     to run (the default is 4)"
                        .into(),
                );
            }
            c.max_notifications_per_user = v;
        }
        if let Some(v) = f.notify_command_timeout {
            c.notify_command_timeout = duration("notify_command_timeout", &v)?;
        }
        if let Some(v) = f.housekeeping_interval {
            c.housekeeping_interval = duration("housekeeping_interval", &v)?;
            if c.housekeeping_interval.is_zero() {
                return Err("housekeeping_interval = 0: give a duration such as 10m".into());
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1MiB/s").unwrap(), 1 << 20);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("2048").unwrap(), 2048);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("3 parsecs").is_err());
    }

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ferryd.toml");
        assert_eq!(Config::load(&p).unwrap().max_concurrent_jobs, 8);
        std::fs::write(
            &p,
            "max_concurrent_jobs = 3\nbandwidth_limit = \"1MiB/s\"\nretention = \"2d\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.max_concurrent_jobs, 3);
        assert_eq!(c.bandwidth_limit, 1 << 20);
        assert_eq!(c.retention, Duration::from_secs(2 * 86400));
        std::fs::write(&p, "max_concurent_jobs = 3\n").unwrap();
        assert!(Config::load(&p).unwrap_err().contains("max_concurent_jobs"));
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

    #[test]
    fn dist_ferryd_toml_is_valid_and_holds_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/ferryd.toml");
        let c = Config::load(&path).unwrap();
        let d = Config::default();
        assert_eq!(c.max_concurrent_jobs, d.max_concurrent_jobs);
        assert_eq!(c.bandwidth_limit, d.bandwidth_limit);
        assert_eq!(c.connections_per_file, d.connections_per_file);
        assert_eq!(c.files_in_parallel, d.files_in_parallel);
        assert_eq!(c.retention, d.retention);
        assert_eq!(c.job_inactivity_timeout, d.job_inactivity_timeout);
        assert_eq!(c.max_jobs_per_user, d.max_jobs_per_user);
        assert_eq!(c.max_files_per_job, d.max_files_per_job);
        assert_eq!(c.drain_timeout, d.drain_timeout);
        assert_eq!(c.activation_timeout, d.activation_timeout);
        assert_eq!(c.callback_timeout, d.callback_timeout);
        assert_eq!(c.max_notifications_per_user, d.max_notifications_per_user);
        assert_eq!(c.notify_command_timeout, d.notify_command_timeout);
        assert_eq!(c.housekeeping_interval, d.housekeeping_interval);
    }
}
