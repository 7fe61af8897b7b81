//! One file apt asks for (`600 URI Acquire`): the URI as apt knows it (answers name it
//! exactly so), the origin's URL ferry fetches, the destination, and the hashes apt
//! expects.
//!
//! May use: `message`.

use std::path::PathBuf;

use crate::message::Message;

/// The hashes and size apt expects of a file (from the index that lists it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `Expected-SHA256`, lower-case hex: ferry checks it and the fleet finds the file by it.
    pub sha256: Option<String>,
    /// `Expected-SHA512`, lower-case hex.
    pub sha512: Option<String>,
    /// `Expected-Checksum-FileSize`.
    pub size: Option<u64>,
}

/// A `600 URI Acquire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The URI exactly as apt sent it (`ferry+http://…`, or `http://…` when the method
    /// stands in for apt's http method).
    pub uri: String,
    /// The origin's URL: the URI without the `ferry+` prefix.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The host of the URL (for apt's per-host proxy settings).
    pub host: String,
    /// Where apt wants the file (`Filename`), usually in a `partial/` folder.
    pub dest: PathBuf,
    /// What apt expects of it.
    pub expected: Expected,
    /// `Maximum-Size`, for files apt has no hashes of (a `Release` file).
    pub maximum_size: Option<u64>,
}

/// A refused request: what to tell apt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// `http://…` for `ferry+http://…` (and `https` alike); a plain `http(s)://` URI is
/// taken as it is (the method standing in for apt's own through `Dir::Bin::Methods`).
/// Returns the URL and its scheme.
pub fn origin_url(uri: &str) -> Result<(String, String), Refused> {
    let url = uri.strip_prefix("ferry+").unwrap_or(uri);
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some(s @ ("http" | "https")) => Ok((url.to_string(), s.to_string())),
        _ => Err(Refused(format!(
            "ferry fetches http and https only: use ferry+http:// or ferry+https:// in the \
             source, not '{uri}'"
        ))),
    }
}

/// The host of an http(s) URL (after any user info, before the port or path).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    host_port.split(':').next().unwrap_or_default().to_string()
}

/// A hex hash field, lower-cased; anything that is not hex is ignored (ferry would refuse
/// it, and apt checks the file again anyway).
fn hex_field(m: &Message, name: &str, len: usize) -> Option<String> {
    m.get(name)
        .map(str::to_ascii_lowercase)
        .filter(|h| h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Request {
    /// Reads a `600 URI Acquire`.
    pub fn from_message(m: &Message) -> Result<Request, Refused> {
        let uri = m
            .get("URI")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Refused("600 URI Acquire without a URI".into()))?
            .to_string();
        let dest = m
            .get("Filename")
            .filter(|f| f.starts_with('/'))
            .ok_or_else(|| {
                Refused(format!(
                    "600 URI Acquire of {uri} without an absolute Filename"
                ))
            })?;
        let (url, scheme) = origin_url(&uri)?;
        let host = host_of(&url);
        Ok(Request {
            expected: Expected {
                sha256: hex_field(m, "Expected-SHA256", 64),
                sha512: hex_field(m, "Expected-SHA512", 128),
                size: m
                    .get("Expected-Checksum-FileSize")
                    .and_then(|s| s.parse().ok()),
            },
            maximum_size: m
                .get("Maximum-Size")
                .and_then(|s| s.parse().ok())
                .filter(|&s| s > 0),
            dest: PathBuf::from(dest),
            uri,
            url,
            scheme,
            host,
        })
    }

    /// A short name for people: the last part of the URL's path.
    pub fn short_name(&self) -> &str {
        let path = self.url.split(['?', '#']).next().unwrap_or(&self.url);
        path.rsplit('/').find(|p| !p.is_empty()).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

    fn acquire(uri: &str) -> Message {
        Message::new(600, "URI Acquire")
            .with("URI", uri)
            .with(
                "Filename",
                "/var/cache/apt/archives/partial/hello_1.0_all.deb",
            )
            .with("Expected-SHA256", SHA)
            .with("Expected-SHA512", "ab".repeat(64))
            .with("Expected-MD5Sum", "00112233445566778899aabbccddeeff")
            .with("Expected-Checksum-FileSize", "4096")
    }

    #[test]
    fn a_ferry_uri_becomes_the_origins_url_with_apts_hashes() {
        let r = Request::from_message(&acquire(
            "ferry+http://deb.debian.org/debian/pool/main/h/hello/hello_1.0_all.deb",
        ))
        .unwrap();
        assert_eq!(
            r.uri,
            "ferry+http://deb.debian.org/debian/pool/main/h/hello/hello_1.0_all.deb"
        );
        assert_eq!(
            r.url,
            "http://deb.debian.org/debian/pool/main/h/hello/hello_1.0_all.deb"
        );
        assert_eq!(r.scheme, "http");
        assert_eq!(r.host, "deb.debian.org");
        assert_eq!(
            r.dest,
            PathBuf::from("/var/cache/apt/archives/partial/hello_1.0_all.deb")
        );
        assert_eq!(
            r.expected.sha256.as_deref(),
            Some(SHA.to_ascii_lowercase().as_str())
        );
        assert_eq!(r.expected.sha512, Some("ab".repeat(64)));
        assert_eq!(r.expected.size, Some(4096));
        assert_eq!(r.short_name(), "hello_1.0_all.deb");
    }

    #[test]
    fn https_and_plain_uris_are_taken_and_other_schemes_refused() {
        assert_eq!(
            origin_url("ferry+https://h:8443/x").unwrap(),
            ("https://h:8443/x".to_string(), "https".to_string())
        );
        assert_eq!(
            origin_url("http://h/x").unwrap(),
            ("http://h/x".to_string(), "http".to_string())
        );
        let e = origin_url("ferry+ftp://h/x").unwrap_err();
        assert!(e.0.contains("http and https only"), "{e}");
        assert!(origin_url("ferry+file:/srv/x").is_err());
    }

    #[test]
    fn hosts_are_found_behind_user_info_and_ports() {
        assert_eq!(host_of("http://u:p@h.example:8080/a"), "h.example");
        assert_eq!(host_of("http://[::1]:80/a"), "::1");
        assert_eq!(host_of("https://h"), "h");
    }

    #[test]
    fn a_release_file_comes_without_hashes_but_with_a_maximum_size() {
        let m = Message::new(600, "URI Acquire")
            .with("URI", "ferry+http://h/debian/dists/stable/InRelease")
            .with(
                "Filename",
                "/var/lib/apt/lists/partial/h_debian_dists_stable_InRelease",
            )
            .with("Index-File", "true")
            .with("Maximum-Size", "10000000");
        let r = Request::from_message(&m).unwrap();
        assert_eq!(r.expected, Expected::default());
        assert_eq!(r.maximum_size, Some(10_000_000));
        assert_eq!(r.short_name(), "InRelease");
    }

    #[test]
    fn malformed_hashes_are_ignored_and_missing_fields_refused() {
        let m = Message::new(600, "URI Acquire")
            .with("URI", "ferry+http://h/a")
            .with("Filename", "/p/a")
            .with("Expected-SHA256", "not-hex");
        assert_eq!(Request::from_message(&m).unwrap().expected.sha256, None);
        let no_file = Message::new(600, "URI Acquire").with("URI", "ferry+http://h/a");
        assert!(Request::from_message(&no_file)
            .unwrap_err()
            .0
            .contains("without an absolute Filename"));
        let relative = no_file.clone().with("Filename", "partial/a");
        assert!(Request::from_message(&relative).is_err());
        assert!(Request::from_message(&Message::new(600, "URI Acquire"))
            .unwrap_err()
            .0
            .contains("without a URI"));
    }
}
