//! The `[peers]` section of `ferryd.toml`: peer caching, off by default.
//!
//! May use: nothing of the daemon (`ferry-common` for peer modes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_common::PeerMode;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::value::{
    by_name, name_of, text, Bounded, Count, Kind, Rate, Share, Size, Span, Written, ANY, SECOND,
};

/// How peers are found.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::VariantNames, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
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

/// Settings of peer caching: `[peers]` in `ferryd.toml`. Ranges are in the `with`
/// attributes ([`Bounded`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a table of peer caching's keys")]
pub struct PeersConfig {
    /// Whether this daemon takes part in a fleet at all.
    pub enabled: bool,
    /// Address the peer port listens on.
    #[serde(deserialize_with = "ip_address")]
    pub listen_address: String,
    /// The peer port.
    #[serde(with = "Bounded::<Count<u16>, 1, 65535>")]
    pub port: u16,
    /// How peers are found.
    #[serde(deserialize_with = "by_name", serialize_with = "name_of")]
    pub discovery: Discovery,
    /// Peers always asked, `host:port` each.
    #[serde(deserialize_with = "host_ports")]
    pub static_peers: Vec<String>,
    /// Browse domains of unicast DNS-SD (RFC 6763): the peers whose SRV/TXT records
    /// are published under `_ferry-peer._tcp.<domain>` in the site's DNS, read through
    /// the system's resolver. Empty (the default): off. Runs next to whatever
    /// `discovery` says.
    #[serde(deserialize_with = "domains")]
    pub dns_sd_domains: Vec<String>,
    /// How often the DNS-SD records are read again.
    #[serde(with = "Bounded::<Span, SECOND, ANY>")]
    pub dns_sd_interval: Duration,
    /// The fleet CA's certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate, signed by the fleet CA (PEM).
    pub node_cert: PathBuf,
    /// This node's private key (PEM).
    pub node_key: PathBuf,
    /// The fleet's revocation list (PEM, from `ferry peers cert revoke`): machines whose
    /// certificates it lists are refused both ways. No file there: none is revoked.
    pub crl: PathBuf,
    /// The cache's size limit.
    pub cache_size: CacheSize,
    /// Content not looked up or served for this long leaves the cache.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub max_content_age: Duration,
    /// Bytes per second served to all peers together; 0 for no limit.
    #[serde(with = "Bounded::<Rate, 0, ANY>")]
    pub max_upload_rate: u64,
    /// Peers (distinct certificates) served at once; more get 503.
    #[serde(with = "Bounded::<Count<usize>, 1, ANY>")]
    pub max_clients: usize,
    /// A job's peer mode when it sets none.
    #[serde(deserialize_with = "by_name", serialize_with = "name_of")]
    pub default_job_peers: PeerMode,
    /// How long a job waits for the peers' answers before going to the origin.
    #[serde(with = "Bounded::<Span, 1, ANY>")]
    pub lookup_timeout: Duration,
    /// How often known peers are checked (a peer that fails twice is dropped); the
    /// prober never checks more often than every 200 ms.
    #[serde(with = "Bounded::<Span, { SECOND / 5 }, ANY>")]
    pub probe_interval: Duration,
    /// How long a peer that served bytes that failed a check is not asked.
    #[serde(with = "Bounded::<Span, 0, ANY>")]
    pub ban_duration: Duration,
    /// Origins (`scheme://host[:port]`) whose URLs with a query string are public: only
    /// their query strings do not make a request private (a signed URL's do).
    #[serde(deserialize_with = "origins")]
    pub public_origins: Vec<String>,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            enabled: false,
            listen_address: "0.0.0.0".into(),
            port: 7380,
            discovery: Discovery::Both,
            static_peers: Vec::new(),
            dns_sd_domains: Vec::new(),
            dns_sd_interval: Duration::from_secs(60),
            ca_cert: PathBuf::from("fleet/ca.pem"),
            node_cert: PathBuf::from("fleet/node.pem"),
            node_key: PathBuf::from("fleet/node.key"),
            crl: PathBuf::from("fleet/crl.pem"),
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
            public_origins: Vec::new(),
        }
    }
}

/// A list of origins, `scheme://host[:port]` each, kept as URL parsing writes them.
fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.into_iter()
        .map(|o| {
            url::Url::parse(&o)
                .ok()
                .filter(|u| u.has_host() && matches!(u.path(), "" | "/") && u.query().is_none())
                .map(|u| u.origin().ascii_serialization())
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "'{o}' is not an origin such as https://deb.debian.org"
                    ))
                })
        })
        .collect()
}

fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, "an IP address (0.0.0.0 for all)", |s| {
        s.parse::<std::net::IpAddr>().ok().map(|_| s.to_string())
    })
}

/// `host:port`, checked.
struct HostPort(String);

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d, "host:port such as \"10.1.2.3:7380\"", |s| {
            let (host, port) = s.rsplit_once(':')?;
            (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| HostPort(s.to_string()))
        })
    }
}

/// A DNS domain name, checked (letters, digits, `-`, `_`, dots between labels of at most
/// 63 bytes, 253 in all) and kept without a final dot, in lower case.
struct Domain(String);

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d, "a DNS domain such as \"site.example\"", |s| {
            let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok))
                .then_some(Domain(name))
        })
    }
}

fn domains<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<Domain>::deserialize(d)?;
    Ok(list.into_iter().map(|p| p.0).collect())
}

fn host_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let peers = Vec::<HostPort>::deserialize(d)?;
    Ok(peers.into_iter().map(|p| p.0).collect())
}

/// "1%" ([`Share`], at most 100 %) or a size ([`Size`]).
impl<'de> Deserialize<'de> for CacheSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;

        impl Visitor<'_> for Either {
            type Value = CacheSize;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a share of the disk up to 100% (\"1%\") or a size (\"20GiB\")")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<CacheSize, E> {
                Bounded::<Size, 0, ANY>::check(Written::Integer(n), Unexpected::Signed(n))
                    .map(CacheSize::Bytes)
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<CacheSize, E> {
                let written = Written::Text(s);
                if s.trim().ends_with('%') {
                    Bounded::<Share, 0, { 100 * 100 }>::check(written, Unexpected::Str(s))
                        .map(CacheSize::Percent)
                } else if Size::parse(written).is_some() {
                    Bounded::<Size, 0, ANY>::check(written, Unexpected::Str(s))
                        .map(CacheSize::Bytes)
                } else {
                    Err(E::invalid_value(Unexpected::Str(s), &self))
                }
            }
        }

        d.deserialize_any(Either)
    }
}

impl Serialize for CacheSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CacheSize::Percent(p) => Share::write(p, s),
            CacheSize::Bytes(b) => Size::write(b, s),
        }
    }
}

impl PeersConfig {
    /// The trust material's relative paths made relative to `base` (the folder of
    /// `ferryd.toml`).
    pub fn resolved(mut self, base: Option<&Path>) -> PeersConfig {
        if let Some(base) = base {
            for p in [
                &mut self.ca_cert,
                &mut self.node_cert,
                &mut self.node_key,
                &mut self.crl,
            ] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(text: &str) -> Result<PeersConfig, String> {
        let mut table = toml::Table::try_from(PeersConfig::default()).unwrap();
        table.extend(text.parse::<toml::Table>().unwrap());
        table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())
    }

    #[test]
    fn sizes_rates_and_modes_parse() {
        let c = peers(
            "enabled = true\ndiscovery = \"Static\"\nstatic_peers = [\"127.0.0.1:7381\"]\n\
             default_job_peers = \"client\"\ncache_size = \"2MiB\"\nmax_upload_rate = \"1MiB/s\"\n",
        )
        .unwrap();
        assert_eq!(c.discovery, Discovery::Static);
        assert_eq!(c.default_job_peers, PeerMode::Client);
        assert_eq!(c.cache_size, CacheSize::Bytes(2 << 20));
        assert_eq!(c.max_upload_rate, 1 << 20);
        assert!(c.dns_sd_domains.is_empty(), "DNS-SD is off by default");
        let c2 = peers("dns_sd_domains = [\"Site.Example.\"]\ndns_sd_interval = \"5m\"\n").unwrap();
        assert_eq!(c2.dns_sd_domains, ["site.example"]);
        assert_eq!(c2.dns_sd_interval, Duration::from_secs(300));
        assert_eq!(
            peers("cache_size = \"0.5%\"").unwrap().cache_size,
            CacheSize::Percent(0.5)
        );
        assert_eq!(
            peers("cache_size = 4096").unwrap().cache_size,
            CacheSize::Bytes(4096)
        );
        let c = c.resolved(Some(Path::new("/etc/ferry")));
        assert_eq!(c.ca_cert, Path::new("/etc/ferry/fleet/ca.pem"));
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let e = peers("static_peers = [\"nohost\"]").unwrap_err();
        assert!(e.contains("nohost") && e.contains("host:port"), "{e}");
        let e = peers("cache_size = \"150%\"").unwrap_err();
        assert!(e.contains("up to 100%"), "{e}");
        let e = peers("cache_size = \"-1%\"").unwrap_err();
        assert!(e.contains("up to 100%"), "{e}");
        let e = peers("cache_size = \"lots\"").unwrap_err();
        assert!(
            e.contains("a share of the disk") && e.contains("a size"),
            "{e}"
        );
        let e = peers("discovery = \"carrier pigeon\"").unwrap_err();
        assert!(e.contains("one of mdns, static, both"), "{e}");
        let e = peers("dns_sd_domains = [\"site..example\"]").unwrap_err();
        assert!(
            e.contains("site..example") && e.contains("a DNS domain"),
            "{e}"
        );
        let e = peers("dns_sd_domains = [\"bad domain\"]").unwrap_err();
        assert!(e.contains("a DNS domain"), "{e}");
        let e = peers("dns_sd_interval = \"0s\"").unwrap_err();
        assert!(
            e.contains("dns_sd_interval") || e.contains("at least"),
            "{e}"
        );
        let e = peers("listen_address = \"everywhere\"").unwrap_err();
        assert!(e.contains("an IP address"), "{e}");
    }

    #[test]
    fn cache_size_written_back_reads_the_same() {
        for size in [
            CacheSize::Percent(1.0),
            CacheSize::Percent(0.25),
            CacheSize::Bytes(7 << 30),
        ] {
            let c = PeersConfig {
                cache_size: size,
                ..PeersConfig::default()
            };
            let text = toml::to_string(&c).unwrap();
            assert_eq!(peers(&text).unwrap(), c, "{text}");
        }
    }
}
