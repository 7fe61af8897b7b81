//! What the method takes from apt's configuration (the `601 Configuration` message): its
//! own keys under `Acquire::ferry::`, the sandbox user, and the proxies apt's http method
//! would use. apt's configuration keys ignore case; so does this.
//!
//! May use: `message`, ferry-common.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ferry_common::Priority;

use crate::message::{dequote, Message};

/// The method's settings for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `Acquire::ferry::Socket`: the ferryd to use; `None`: the system-wide one
    /// (`$FERRY_SOCKET`, else `/run/ferry/ferryd.sock`).
    pub socket: Option<PathBuf>,
    /// `Acquire::ferry::Priority` (default `foreground`: apt's user waits for the files;
    /// an unattended run may say `low` and let the downloads yield to other traffic).
    pub priority: Priority,
    /// `Acquire::ferry::Timeout`: how long a file may go without a byte moving before
    /// the method gives it up (the job's `no_progress_timeout`; default 120 s).
    pub timeout: Duration,
    /// `Acquire::ferry::Retry-Delay`: the job's `minimum_retry_delay` (default 5 s).
    pub retry_delay: Duration,
    /// `Acquire::ferry::Reconnect-Timeout`: how long to wait for a ferryd that went away
    /// (a restart, a crash) to come back (default 120 s).
    pub reconnect_timeout: Duration,
    /// `APT::Sandbox::User`: whom a method started as root becomes (apt's own methods
    /// do the same); empty or `root`: stay root.
    pub sandbox_user: Option<String>,
    /// `Debug::NoDropPrivs`: stay root.
    pub no_drop_privs: bool,
    /// `Debug::Acquire::ferry`: log each job to apt's debug output (`101 Log`).
    pub debug: bool,
    /// Every configuration item, names in lower case (for the proxies).
    items: HashMap<String, String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            socket: None,
            priority: Priority::Foreground,
            timeout: Duration::from_secs(120),
            retry_delay: Duration::from_secs(5),
            reconnect_timeout: Duration::from_secs(120),
            sandbox_user: None,
            no_drop_privs: false,
            debug: false,
            items: HashMap::new(),
        }
    }
}

/// Reads a number of seconds for `key`.
fn seconds(key: &str, value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            format!("{key} '{value}' is not a number of seconds; fix it in /etc/apt/apt.conf.d/")
        })
}

/// apt's yes/no values.
fn boolean(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "with" | "enable"
    )
}

impl Settings {
    /// The settings a `601 Configuration` message gives; an unusable value of one of the
    /// method's own keys is an error naming the key.
    pub fn from_configuration(message: &Message) -> Result<Settings, String> {
        let mut s = Settings::default();
        for item in message.all("Config-Item") {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            s.items
                .insert(dequote(name).to_ascii_lowercase(), dequote(value));
        }
        let items = s.items.clone();
        let get = |key: &str| items.get(&key.to_ascii_lowercase()).map(String::as_str);
        if let Some(v) = get("Acquire::ferry::Socket").filter(|v| !v.is_empty()) {
            s.socket = Some(PathBuf::from(v));
        }
        if let Some(v) = get("Acquire::ferry::Priority") {
            s.priority = v
                .parse()
                .map_err(|e| format!("Acquire::ferry::Priority: {e}"))?;
        }
        if let Some(v) = get("Acquire::ferry::Timeout") {
            s.timeout = seconds("Acquire::ferry::Timeout", v)?;
        }
        if let Some(v) = get("Acquire::ferry::Retry-Delay") {
            s.retry_delay = seconds("Acquire::ferry::Retry-Delay", v)?;
        }
        if let Some(v) = get("Acquire::ferry::Reconnect-Timeout") {
            s.reconnect_timeout = seconds("Acquire::ferry::Reconnect-Timeout", v)?;
        }
        s.sandbox_user = get("APT::Sandbox::User")
            .filter(|u| !u.is_empty() && *u != "root")
            .map(str::to_string);
        s.no_drop_privs = get("Debug::NoDropPrivs").is_some_and(boolean);
        s.debug = get("Debug::Acquire::ferry").is_some_and(boolean);
        Ok(s)
    }

    /// The proxy for a request to `host` over `scheme` (`http`, `https`) as apt's http
    /// method picks it: `Acquire::SCHEME::Proxy::HOST`, else `Acquire::SCHEME::Proxy`;
    /// `DIRECT` is no proxy (`none` for ferry). `None`: nothing configured, the job keeps
    /// ferry's default.
    pub fn proxy_for(&self, scheme: &str, host: &str) -> Option<String> {
        let get = |key: String| self.items.get(&key.to_ascii_lowercase()).cloned();
        let value = get(format!("Acquire::{scheme}::Proxy::{host}"))
            .or_else(|| get(format!("Acquire::{scheme}::Proxy")))
            .filter(|v| !v.is_empty())?;
        Some(if value.eq_ignore_ascii_case("DIRECT") {
            "none".to_string()
        } else {
            value
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(items: &[&str]) -> Message {
        items
            .iter()
            .fold(Message::new(601, "Configuration"), |m, i| {
                m.with("Config-Item", i)
            })
    }

    #[test]
    fn without_keys_the_defaults_hold() {
        let s = Settings::from_configuration(&config(&["APT::Architecture=amd64"])).unwrap();
        assert_eq!(
            s,
            Settings {
                items: s.items.clone(),
                ..Settings::default()
            }
        );
        assert_eq!(s.priority, Priority::Foreground);
        assert_eq!(s.socket, None);
    }

    #[test]
    fn the_methods_keys_are_read_whatever_their_case() {
        let s = Settings::from_configuration(&config(&[
            "acquire::FERRY::socket=/run/user/1000/ferry/ferryd.sock",
            "Acquire::ferry::Priority=low",
            "Acquire::ferry::Timeout=30",
            "Acquire::ferry::Retry-Delay=2",
            "Acquire::ferry::Reconnect-Timeout=300",
            "APT::Sandbox::User=_apt",
            "Debug::Acquire::ferry=true",
        ]))
        .unwrap();
        assert_eq!(
            s.socket,
            Some(PathBuf::from("/run/user/1000/ferry/ferryd.sock"))
        );
        assert_eq!(s.priority, Priority::Low);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.retry_delay, Duration::from_secs(2));
        assert_eq!(s.reconnect_timeout, Duration::from_secs(300));
        assert_eq!(s.sandbox_user.as_deref(), Some("_apt"));
        assert!(s.debug);
        assert!(!s.no_drop_privs);
    }

    #[test]
    fn root_or_an_empty_sandbox_user_means_staying_root() {
        for v in ["APT::Sandbox::User=root", "APT::Sandbox::User="] {
            let s = Settings::from_configuration(&config(&[v])).unwrap();
            assert_eq!(s.sandbox_user, None, "{v}");
        }
        let s = Settings::from_configuration(&config(&["Debug::NoDropPrivs=1"])).unwrap();
        assert!(s.no_drop_privs);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Settings::from_configuration(&config(&["Acquire::ferry::Priority=urgent"]))
            .unwrap_err();
        assert!(e.contains("Acquire::ferry::Priority"), "{e}");
        assert!(e.contains("foreground"), "{e}");
        let e =
            Settings::from_configuration(&config(&["Acquire::ferry::Timeout=soon"])).unwrap_err();
        assert!(e.contains("Acquire::ferry::Timeout 'soon'"), "{e}");
    }

    #[test]
    fn quoted_items_are_unquoted() {
        let s = Settings::from_configuration(&config(&["Acquire::ferry::Socket=/tmp/a%20b.sock"]))
            .unwrap();
        assert_eq!(s.socket, Some(PathBuf::from("/tmp/a b.sock")));
    }

    #[test]
    fn proxies_are_picked_as_apts_http_method_picks_them() {
        let s = Settings::from_configuration(&config(&[
            "Acquire::http::Proxy=http://cache:3142",
            "Acquire::http::Proxy::deb.example=DIRECT",
            "Acquire::https::Proxy::secure.example=http://other:8080",
        ]))
        .unwrap();
        assert_eq!(
            s.proxy_for("http", "a.example").as_deref(),
            Some("http://cache:3142")
        );
        assert_eq!(s.proxy_for("http", "deb.example").as_deref(), Some("none"));
        assert_eq!(
            s.proxy_for("https", "secure.example").as_deref(),
            Some("http://other:8080")
        );
        assert_eq!(s.proxy_for("https", "a.example"), None);
    }
}
