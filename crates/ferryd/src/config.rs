//! Daemon settings, with their defaults: the per-user daemon's ([`Config::default`]) and
//! the system-wide daemon's ([`Config::system`]), which differ in the limits only.
//!
//! May use: nothing of the daemon (`ferry-common` for rates).

mod peers;
mod system;
pub use system::SystemConfig;

use std::time::Duration;

mod schedule;
pub use schedule::{local_now, Schedule};

/// Which daemon this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One user's daemon, serving that user only (the default).
    #[default]
    User,
    /// The machine's daemon, serving every user; it runs as root and does each job's
    /// work as the job's owner.
    System,
}

/// Settings of one daemon; every field has a default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Per-user or system-wide.
    pub mode: Mode,
    /// The group whose members (with root) see and manage every user's jobs (system mode).
    pub admin_group: String,
    /// Jobs (not yet acknowledged or cancelled) all users together may have; root and
    /// administrators are not counted against it.
    pub max_jobs_per_machine: usize,
    /// The file the settings were read from (named in refusals that a setting causes).
    pub source: std::path::PathBuf,
    /// Background jobs transferring at once (foreground jobs are not counted).
    pub max_concurrent_jobs: usize,
    /// Final jobs (`acknowledged`, `cancelled`) stay queryable this long.
    pub retention: Duration,
    /// A job nobody completes or cancels for this long is cancelled.
    pub job_inactivity_timeout: Duration,
    /// Jobs (not yet acknowledged or cancelled) one user may have.
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
    /// `[[bandwidth.schedule]]`: limits in force at some times for some priorities.
    pub schedules: Vec<Schedule>,
    /// Peer caching (`[peers]`).
    pub peers: PeersConfig,
    /// The system-wide daemon's processes (`[system]`).
    pub system: SystemConfig,
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
            schedules: Vec::new(),
            peers: PeersConfig::default(),
            system: SystemConfig::default(),
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
pub use peers::{CacheSize, Discovery, PeersConfig};

/// Parses a rate such as `1MiB/s`, `500k`, `2 MB/s` or a plain number of bytes per second.
pub use ferry_common::units::parse_rate;

/// `ferryd.toml`: every key optional; see `Config` for the defaults.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mode: Option<String>,
    admin_group: Option<String>,
    max_jobs_per_machine: Option<usize>,
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
    bandwidth: Option<BandwidthFile>,
    peers: Option<peers::FilePeers>,
    system: Option<SystemConfig>,
}

/// The `[bandwidth]` table.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct BandwidthFile {
    #[serde(default)]
    schedule: Vec<schedule::ScheduleFile>,
}

/// `$FERRY_CONFIG`, else `$XDG_CONFIG_HOME/ferry/ferryd.toml`, else
/// `~/.config/ferry/ferryd.toml` (ferry-common's rule).
pub use ferry_common::paths::config_path as default_config_path;

pub(crate) fn duration(key: &str, v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{key} = '{v}': {e} (e.g. 30s, 15m, 7d)"))
}

/// Every key `ferryd.toml` accepts.
pub fn keys() -> Vec<String> {
    match serde_json::to_value(FileConfig::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Config {
    /// The defaults, overridden by the file at `path` if it exists. The file's `mode`
    /// (default `user`) picks the defaults it overrides. A malformed file is an error
    /// naming the key.
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        Config::load_as(path, None)
    }

    /// [`Config::load`], with the mode given by the command line (`ferryd --system`) when
    /// `mode` is set: a file that says otherwise is an error.
    pub fn load_as(path: &std::path::Path, mode: Option<Mode>) -> Result<Config, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut c = Config::defaults(mode.unwrap_or_default());
                c.source = path.to_owned();
                c.peers = PeersConfig::default().resolved(path.parent());
                return Ok(c);
            }
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let f: FileConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_mode = match f.mode.as_deref() {
            None => None,
            Some("user") => Some(Mode::User),
            Some("system") => Some(Mode::System),
            Some(other) => {
                return Err(format!(
                    "{}: mode = '{other}': give \"user\" or \"system\"",
                    path.display()
                ))
            }
        };
        let mode = match (mode, file_mode) {
            (Some(Mode::System), Some(Mode::User)) => {
                return Err(format!(
                    "{} says mode = \"user\" but ferryd was started with --system: \
                     use the system-wide configuration ({}) or remove the line",
                    path.display(),
                    ferry_common::paths::SYSTEM_CONFIG
                ))
            }
            (Some(m), _) => m,
            (None, m) => m.unwrap_or_default(),
        };
        let mut c = Config::defaults(mode);
        c.source = path.to_owned();
        if let Some(v) = f.admin_group {
            if v.is_empty() || v.contains([':', '\n', '\0']) {
                return Err(format!(
                    "{}: admin_group = '{v}' is not a group name",
                    path.display()
                ));
            }
            c.admin_group = v;
        }
        if let Some(v) = f.max_jobs_per_machine {
            c.max_jobs_per_machine = v;
        }
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
        if let Some(b) = f.bandwidth {
            c.schedules = b
                .schedule
                .into_iter()
                .enumerate()
                .map(|(i, s)| s.parse(i + 1))
                .collect::<Result<_, _>>()?;
        }
        if let Some(p) = f.peers {
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            c.peers = p.into_config(base)?;
        } else {
            c.peers = PeersConfig::default().resolved(path.parent());
        }
        if let Some(s) = f.system {
            s.check().map_err(|e| format!("{}: {e}", path.display()))?;
            c.system = s;
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

    fn dist(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../dist")
            .join(name)
    }

    /// The keys a shipped file sets, sorted.
    fn keys_of(path: &std::path::Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn all_keys() -> Vec<String> {
        let mut k = keys();
        k.sort();
        assert!(k.len() >= 14, "{k:?}");
        k
    }

    #[test]
    fn dist_ferryd_toml_is_valid_and_holds_the_defaults() {
        let path = dist("ferryd.toml");
        assert_eq!(
            keys_of(&path),
            all_keys(),
            "{} lists every key",
            path.display()
        );
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c,
            Config {
                peers: PeersConfig::default().resolved(path.parent()),
                source: path,
                ..Config::default()
            }
        );
    }

    #[test]
    fn dist_system_ferryd_toml_is_valid_and_holds_the_system_defaults() {
        let path = dist("system/ferryd.toml");
        assert_eq!(
            keys_of(&path),
            all_keys(),
            "{} lists every key",
            path.display()
        );
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c,
            Config {
                source: path.clone(),
                peers: PeersConfig::default().resolved(path.parent()),
                ..Config::system()
            }
        );
        // The same file with --system.
        assert_eq!(Config::load_as(&path, Some(Mode::System)).unwrap(), c);
    }

    #[test]
    fn the_mode_picks_the_defaults_and_system_refuses_a_user_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ferryd.toml");
        let missing = Config::load_as(&p, Some(Mode::System)).unwrap();
        assert_eq!(missing.mode, Mode::System);
        assert_eq!(missing.max_jobs_per_user, 60);
        assert_eq!(Config::load(&p).unwrap().max_jobs_per_user, 100_000);
        std::fs::write(&p, "mode = \"system\"\nmax_jobs_per_user = 5\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            (c.mode, c.max_jobs_per_user, c.max_files_per_job),
            (Mode::System, 5, 200)
        );
        std::fs::write(&p, "mode = \"user\"\n").unwrap();
        let e = Config::load_as(&p, Some(Mode::System)).unwrap_err();
        assert!(e.contains("--system"), "{e}");
        std::fs::write(&p, "mode = \"machine\"\n").unwrap();
        assert!(Config::load(&p).unwrap_err().contains("'machine'"));
    }

    #[test]
    fn dist_ferryd_toml_lists_every_peers_key() {
        for name in ["ferryd.toml", "system/ferryd.toml"] {
            let path = dist(name);
            let table: toml::Table =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let peers = table["peers"].as_table().expect("a [peers] section");
            let mut listed: Vec<&str> = peers.keys().map(String::as_str).collect();
            listed.sort();
            let mut known = peers::KEYS.to_vec();
            known.sort();
            assert_eq!(listed, known, "{} lists every [peers] key", path.display());
            let system = table["system"].as_table().expect("a [system] section");
            let mut listed: Vec<&str> = system.keys().map(String::as_str).collect();
            listed.sort();
            let mut known = system::KEYS.to_vec();
            known.sort();
            assert_eq!(listed, known, "{} lists every [system] key", path.display());
        }
    }
}
