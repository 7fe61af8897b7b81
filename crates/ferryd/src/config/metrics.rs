//! The `[metrics]` section of `ferryd.toml`: the Prometheus/OpenMetrics endpoint, off by
//! default.
//!
//! May use: nothing of the daemon.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::text;

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsListen {
    /// No endpoint (the default; `listen = ""` or no `[metrics]` section).
    #[default]
    Off,
    /// A TCP address such as `127.0.0.1:9464`.
    Tcp(SocketAddr),
    /// A Unix socket, written `unix:/run/ferry/metrics.sock` (an absolute path).
    Unix(PathBuf),
}

impl MetricsListen {
    /// What `listen` says as written in the file, `None` when it is no address.
    fn parse(s: &str) -> Option<MetricsListen> {
        let s = s.trim();
        if s.is_empty() {
            return Some(MetricsListen::Off);
        }
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            return (path.is_absolute() && !path.as_os_str().as_encoded_bytes().contains(&0))
                .then_some(MetricsListen::Unix(path));
        }
        s.parse::<SocketAddr>().ok().map(MetricsListen::Tcp)
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => Ok(()),
            MetricsListen::Tcp(a) => write!(f, "{a}"),
            MetricsListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Serialize for MetricsListen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(
            d,
            "an address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\", \
             \"unix:\" and an absolute path such as \"unix:/run/ferry/metrics.sock\", \
             or \"\" for no endpoint",
            MetricsListen::parse,
        )
    }
}

/// Settings of the metrics endpoint: `[metrics]` in `ferryd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of the metrics endpoint's keys"
)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (OpenMetrics text); off when empty.
    pub listen: MetricsListen,
}

impl MetricsConfig {
    /// True when the endpoint is on.
    pub fn enabled(&self) -> bool {
        self.listen != MetricsListen::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(text: &str) -> Result<MetricsConfig, String> {
        let mut table = toml::Table::try_from(MetricsConfig::default()).unwrap();
        table.extend(text.parse::<toml::Table>().unwrap());
        table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())
    }

    #[test]
    fn off_by_default_and_when_empty() {
        assert!(!MetricsConfig::default().enabled());
        assert_eq!(metrics("").unwrap(), MetricsConfig::default());
        assert_eq!(metrics("listen = \"\"").unwrap().listen, MetricsListen::Off);
    }

    #[test]
    fn addresses_and_sockets_parse() {
        assert_eq!(
            metrics("listen = \"127.0.0.1:9464\"").unwrap().listen,
            MetricsListen::Tcp("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            metrics("listen = \"[::1]:9464\"").unwrap().listen,
            MetricsListen::Tcp("[::1]:9464".parse().unwrap())
        );
        assert_eq!(
            metrics("listen = \"unix:/run/ferry/metrics.sock\"")
                .unwrap()
                .listen,
            MetricsListen::Unix("/run/ferry/metrics.sock".into())
        );
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for bad in [
            "localhost",
            "127.0.0.1",
            "unix:relative.sock",
            "9464",
            "unix:",
        ] {
            let e = metrics(&format!("listen = \"{bad}\"")).unwrap_err();
            assert!(
                e.contains("127.0.0.1:9464") && e.contains("unix:"),
                "{bad}: {e}"
            );
        }
        let e = metrics("port = 9464").unwrap_err();
        assert!(e.contains("unknown field") && e.contains("listen"), "{e}");
    }

    #[test]
    fn written_back_reads_the_same() {
        for listen in [
            MetricsListen::Off,
            MetricsListen::Tcp("127.0.0.1:9464".parse().unwrap()),
            MetricsListen::Unix("/run/ferry/metrics.sock".into()),
        ] {
            let c = MetricsConfig { listen };
            let text = toml::to_string(&c).unwrap();
            assert_eq!(metrics(&text).unwrap(), c, "{text}");
        }
    }
}
