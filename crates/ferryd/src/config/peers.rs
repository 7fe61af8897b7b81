//! The `[peers]` section of `ferryd.toml`: peer caching, off by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration;
use ferry_common::PeerMode;

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// DNS-SD over multicast DNS (`_ferry-peer._tcp`) on the local links.
    Mdns,
    /// The `static_peers` list only.
    Static,
    /// Both.
    Both,
}

/// The cache's size limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheSize {
    /// A share of the file system holding the cache, in percent (BITS: 1 %).
    Percent(f64),
    /// A number of bytes.
    Bytes(u64),
}

/// Settings of peer caching.
#[derive(Debug, Clone, PartialEq)]
pub struct PeersConfig {
    /// Whether this daemon takes part in a fleet at all.
    pub enabled: bool,
    /// Address the peer port listens on.
    pub listen_address: String,
    /// The peer port.
    pub port: u16,
    /// How peers are found.
    pub discovery: Discovery,
    /// Peers always asked, `host:port` each.
    pub static_peers: Vec<String>,
    /// The fleet CA's certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate, signed by the fleet CA (PEM).
    pub node_cert: PathBuf,
    /// This node's private key (PEM).
    pub node_key: PathBuf,
    /// The cache's size limit.
    pub cache_size: CacheSize,
    /// Content not looked up or served for this long leaves the cache.
    pub max_content_age: Duration,
    /// Bytes per second served to all peers together; 0 for no limit.
    pub max_upload_rate: u64,
    /// Peers (distinct certificates) served at once; more get 503.
    pub max_clients: usize,
    /// A job's peer mode when it sets none.
    pub default_job_peers: PeerMode,
    /// How long a job waits for the peers' answers before going to the origin.
    pub lookup_timeout: Duration,
    /// How often known peers are checked (a peer that fails twice is dropped).
    pub probe_interval: Duration,
    /// How long a peer that served bytes that failed a check is not asked.
    pub ban_duration: Duration,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            enabled: false,
            listen_address: "0.0.0.0".into(),
            port: 7380,
            discovery: Discovery::Both,
            static_peers: Vec::new(),
            ca_cert: PathBuf::from("fleet/ca.pem"),
            node_cert: PathBuf::from("fleet/node.pem"),
            node_key: PathBuf::from("fleet/node.key"),
            cache_size: CacheSize::Percent(1.0),
            max_content_age: Duration::from_secs(90 * 24 * 3600),
            // A fifth of a gigabit link: peers help each other without taking a
            // machine's uplink away from its own work.
            max_upload_rate: 25 << 20,
            // Today's LANs (1 Gbit/s and more) and disks serve a handful of readers at
            // once easily; BITS's 3 dates from 100 Mbit/s networks.
            max_clients: 8,
            default_job_peers: PeerMode::Both,
            lookup_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(15),
            ban_duration: Duration::from_secs(3600),
        }
    }
}

impl PeersConfig {
    /// The trust material's relative paths made relative to `base` (the folder of
    /// `ferryd.toml`).
    pub fn resolved(mut self, base: Option<&Path>) -> PeersConfig {
        if let Some(base) = base {
            for p in [&mut self.ca_cert, &mut self.node_cert, &mut self.node_key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        self
    }
}

/// Every key of `[peers]`.
#[cfg(test)]
pub(super) const KEYS: &[&str] = &[
    "enabled",
    "listen_address",
    "port",
    "discovery",
    "static_peers",
    "ca_cert",
    "node_cert",
    "node_key",
    "cache_size",
    "max_content_age",
    "max_upload_rate",
    "max_clients",
    "default_job_peers",
    "lookup_timeout",
    "probe_interval",
    "ban_duration",
];

/// `[peers]` as written; every key optional.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePeers {
    enabled: Option<bool>,
    listen_address: Option<String>,
    port: Option<u16>,
    discovery: Option<String>,
    static_peers: Option<Vec<String>>,
    ca_cert: Option<PathBuf>,
    node_cert: Option<PathBuf>,
    node_key: Option<PathBuf>,
    cache_size: Option<toml::Value>,
    max_content_age: Option<String>,
    max_upload_rate: Option<toml::Value>,
    max_clients: Option<usize>,
    default_job_peers: Option<String>,
    lookup_timeout: Option<String>,
    probe_interval: Option<String>,
    ban_duration: Option<String>,
}

fn cache_size(v: toml::Value) -> Result<CacheSize, String> {
    let bad = |v: &dyn std::fmt::Display| {
        format!("peers.cache_size = {v}: give a share of the disk (\"1%\") or a size (\"20GiB\")")
    };
    match v {
        toml::Value::Integer(n) if n >= 0 => Ok(CacheSize::Bytes(n as u64)),
        toml::Value::String(s) => match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(CacheSize::Percent(p)),
                _ => Err(bad(&s)),
            },
            None => ferry_common::units::parse_size(&s)
                .map(CacheSize::Bytes)
                .map_err(|_| bad(&s)),
        },
        other => Err(bad(&other)),
    }
}

fn rate(key: &str, v: toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if n >= 0 => Ok(n as u64),
        toml::Value::String(s) => ferry_common::units::parse_rate(&s),
        other => Err(format!(
            "{key} = {other}: give bytes per second or a rate like \"10MiB/s\""
        )),
    }
}

impl FilePeers {
    pub(super) fn into_config(self, base: &Path) -> Result<PeersConfig, String> {
        let mut c = PeersConfig::default();
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(v) = self.listen_address {
            v.parse::<std::net::IpAddr>().map_err(|_| {
                format!("peers.listen_address = '{v}': give an IP address (0.0.0.0 for all)")
            })?;
            c.listen_address = v;
        }
        if let Some(v) = self.port {
            c.port = v;
        }
        if let Some(v) = self.discovery {
            c.discovery = match v.to_ascii_lowercase().as_str() {
                "mdns" => Discovery::Mdns,
                "static" => Discovery::Static,
                "both" => Discovery::Both,
                _ => {
                    return Err(format!(
                        "peers.discovery = '{v}': expected mdns, static or both"
                    ))
                }
            };
        }
        if let Some(v) = self.static_peers {
            for p in &v {
                if p.rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(format!(
                        "peers.static_peers: '{p}' is not host:port (e.g. \"10.1.2.3:7380\")"
                    ));
                }
            }
            c.static_peers = v;
        }
        if let Some(v) = self.ca_cert {
            c.ca_cert = v;
        }
        if let Some(v) = self.node_cert {
            c.node_cert = v;
        }
        if let Some(v) = self.node_key {
            c.node_key = v;
        }
        if let Some(v) = self.cache_size {
            c.cache_size = cache_size(v)?;
        }
        if let Some(v) = self.max_content_age {
            c.max_content_age = duration("peers.max_content_age", &v)?;
        }
        if let Some(v) = self.max_upload_rate {
            c.max_upload_rate = rate("peers.max_upload_rate", v)?;
        }
        if let Some(v) = self.max_clients {
            c.max_clients = v.max(1);
        }
        if let Some(v) = self.default_job_peers {
            c.default_job_peers = v
                .parse()
                .map_err(|e: String| format!("peers.default_job_peers: {e}"))?;
        }
        if let Some(v) = self.lookup_timeout {
            c.lookup_timeout = duration("peers.lookup_timeout", &v)?;
        }
        if let Some(v) = self.probe_interval {
            c.probe_interval = duration("peers.probe_interval", &v)?;
        }
        if let Some(v) = self.ban_duration {
            c.ban_duration = duration("peers.ban_duration", &v)?;
        }
        Ok(c.resolved(Some(base)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_modes_parse() {
        assert_eq!(
            cache_size(toml::Value::String("1%".into())).unwrap(),
            CacheSize::Percent(1.0)
        );
        assert_eq!(
            cache_size(toml::Value::String("2MiB".into())).unwrap(),
            CacheSize::Bytes(2 << 20)
        );
        assert!(cache_size(toml::Value::String("150%".into())).is_err());
        assert_eq!(
            rate("r", toml::Value::String("1MiB/s".into())).unwrap(),
            1 << 20
        );
        let c = FilePeers {
            enabled: Some(true),
            discovery: Some("static".into()),
            static_peers: Some(vec!["127.0.0.1:7381".into()]),
            default_job_peers: Some("client".into()),
            ..Default::default()
        }
        .into_config(Path::new("/etc/ferry"))
        .unwrap();
        assert_eq!(c.discovery, Discovery::Static);
        assert_eq!(c.default_job_peers, PeerMode::Client);
        assert_eq!(c.ca_cert, Path::new("/etc/ferry/fleet/ca.pem"));
        let bad = FilePeers {
            static_peers: Some(vec!["nohost".into()]),
            ..Default::default()
        };
        assert!(bad
            .into_config(Path::new("/"))
            .unwrap_err()
            .contains("nohost"));
    }
}
