//! The peer protocol: HTTP/1.1 over mutual TLS 1.3 on the peer port.
//!
//! - `POST /v1/lookup` with a JSON [`LookupRequest`] (at most 16 KiB): `200` with a
//!   [`LookupAnswer`] when the node's cache holds the content, `404` otherwise. By
//!   SHA-256 when the asker knows it; else by origin URL, validator and length, all three
//!   matching exactly.
//! - `GET /v1/content/ID` or `GET /v1/sha256/HEX` (with or without `Range: bytes=A-B`):
//!   the cached content, `206` with `Content-Range` for a range. Issue 14's swarm can ask
//!   any range of any entry; nothing here assumes a whole-file transfer.
//! - `GET /v1/ping`: `200` with the node's name and fleet id (the directory's check).
//! - `POST /v1/have` with a [`LookupRequest`] (the swarm): `200` with a [`HaveAnswer`] —
//!   the ranges of the content this node serves now, from a download under way or whole
//!   from its cache — or `404`. Matched by SHA-256 when both sides know it, else by URL,
//!   validator and length.
//! - `GET /v1/partial/ID` with `Range: bytes=A-B`: bytes of a download under way, only
//!   inside the ranges its last [`HaveAnswer`] could have listed (`416` otherwise).
//!
//! Anything else gets a short error (`400`, `404`, `405`, `416`, `503` when the node
//! serves as many peers as it may) and nothing more. No path from the network reaches the
//! file system: ids and hashes are checked to be hex of their exact length and looked up
//! in the cache's index.

use serde::{Deserialize, Serialize};

pub const LOOKUP: &str = "/v1/lookup";
pub const CONTENT: &str = "/v1/content/";
pub const BY_SHA256: &str = "/v1/sha256/";
pub const PING: &str = "/v1/ping";
pub const HAVE: &str = "/v1/have";
pub const PARTIAL: &str = "/v1/partial/";

/// The most ranges a [`HaveAnswer`] lists (a client ignores an answer with more).
pub const MAX_RANGES: usize = 4096;

/// The largest lookup body accepted.
pub const MAX_LOOKUP_BODY: usize = 16 << 10;

/// Who has this content?
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// I have it, under this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupAnswer {
    pub id: String,
    pub length: u64,
    pub sha256: String,
}

/// What a node holds of a content now (the swarm's poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveAnswer {
    /// The node's name.
    pub node: String,
    /// A cache entry's id (`complete`) or a download's id: where to fetch
    /// (`/v1/content/ID` or `/v1/partial/ID`).
    pub id: String,
    pub length: u64,
    /// The whole content, from the cache (or a download that matched its SHA-256).
    pub complete: bool,
    /// In a cache entry: served by `/v1/content/ID`.
    pub cached: bool,
    /// Ranges served, `[start, end)`, sorted.
    pub ranges: Vec<[u64; 2]>,
    /// Ranges the node fetches from the origin now.
    #[serde(default)]
    pub pending: Vec<[u64; 2]>,
}

/// The ping answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub node: String,
    pub fleet: String,
}

/// `n` lower-case hex digits exactly.
pub fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A cache entry's id: 32 lower-case hex digits.
pub fn is_id(s: &str) -> bool {
    is_hex(s, 32)
}

/// A SHA-256: 64 lower-case hex digits.
pub fn is_sha256(s: &str) -> bool {
    is_hex(s, 64)
}

/// A `Range` header that cannot be served (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses `Range: bytes=A-B` / `bytes=A-` against a length; `Ok(None)` without a range,
/// [`Unsatisfiable`] for one that cannot be served (416).
pub fn parse_range(header: Option<&str>, length: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(h) = header else {
        return Ok(None);
    };
    let spec = h.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') {
        return Err(Unsatisfiable);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        (length.saturating_sub(n), length)
    } else {
        let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let end = if b.is_empty() {
            length
        } else {
            b.parse::<u64>()
                .map_err(|_| Unsatisfiable)?
                .saturating_add(1)
                .min(length)
        };
        (start, end)
    };
    if start >= end || start >= length {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ranges_are_checked() {
        assert!(is_id(&"a".repeat(32)));
        assert!(!is_id("../../etc/passwd"));
        assert!(!is_id(&"A".repeat(32)));
        assert!(is_sha256(&"0".repeat(64)));
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Ok(Some((2, 5))));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Ok(Some((2, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 10))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "items=1-2",
            "bytes=1-2,4-5",
            "bytes=x-",
        ] {
            assert_eq!(parse_range(Some(bad), 10), Err(Unsatisfiable), "{bad}");
        }
    }

    #[test]
    fn lookups_refuse_unknown_fields() {
        assert!(serde_json::from_str::<LookupRequest>(r#"{"path":"/etc/passwd"}"#).is_err());
        let r: LookupRequest = serde_json::from_str(r#"{"sha256":"ab"}"#).unwrap();
        assert_eq!(r.sha256.as_deref(), Some("ab"));
    }
}
