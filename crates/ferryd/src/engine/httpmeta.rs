//! What an HTTP answer's headers say about the content: the validator to resume under, the
//! `Content-Range` of a 206, whether the origin forbids caching it (`Cache-Control:
//! no-store` or `private`), whether it serves byte ranges, the length it announces, and
//! how long it asks a client to wait (`Retry-After`). Pure functions of a header map,
//! shared by every strategy.
//!
//! May use: the engine's error type.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::error::{self, TransferError};

/// The validator to resume under: a strong ETag, else Last-Modified.
pub fn validator(headers: &HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !etag.starts_with("W/") {
            return Some(etag.to_string());
        }
    }
    headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A parsed `Content-Range: bytes START-END/TOTAL` (END inclusive, TOTAL maybe `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

/// Parses `Content-Range: bytes START-END/TOTAL`; `None` when absent or malformed
/// (END before START, or END not inside TOTAL).
pub fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let total = if total.trim() == "*" {
        None
    } else {
        Some(total.trim().parse().ok()?)
    };
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

/// The `Content-Range` header as sent, for messages.
pub fn content_range_text(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_RANGE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// True when the origin marks the content `Cache-Control: private` or `no-store`: it is
/// never cached for peers.
pub fn no_store(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.trim()
                .split('=')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .any(|d| d == "private" || d == "no-store")
}

/// True when the server says it serves byte ranges (`Accept-Ranges: bytes`).
pub fn accepts_ranges(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
}

/// The `Content-Length` header itself (reqwest reports a `HEAD` answer's empty body
/// length instead).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// How long the server asks to wait before the next attempt (`Retry-After`).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(error::parse_retry_after)
}

/// The failure an unexpected status of `label` stands for, with the wait it asks for.
/// A `401` whose Digest challenge says the nonce went stale keeps the new challenge and
/// is retried (the next attempt answers it).
pub fn status_error(status: StatusCode, headers: &HeaderMap, label: &str) -> TransferError {
    let mut e = error::from_status(status.as_u16(), label, retry_after(headers));
    let stale = url::Url::parse(label)
        .ok()
        .and_then(|u| super::digest::remember(&u, status, headers));
    if stale == Some(true) {
        e.transient = true;
        e.message
            .push_str("; its Digest nonce expired, ferry retries with the new one");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), value.parse().unwrap());
        }
        h
    }

    #[test]
    fn parses_content_range() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/1000".parse().unwrap());
        assert_eq!(
            content_range(&h),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(1000)
            })
        );
        h.insert(header::CONTENT_RANGE, "bytes 5-9/*".parse().unwrap());
        assert_eq!(
            content_range(&h),
            Some(ContentRange {
                start: 5,
                end: 9,
                total: None
            })
        );
        for bad in [
            "garbage",
            "bytes 9-5/100",
            "bytes 5-100/100",
            "bytes 5-/100",
        ] {
            h.insert(header::CONTENT_RANGE, bad.parse().unwrap());
            assert_eq!(content_range(&h), None, "{bad}");
        }
    }

    #[test]
    fn prefers_strong_etag() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, "W/\"weak\"".parse().unwrap());
        h.insert(
            header::LAST_MODIFIED,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            validator(&h).as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        h.insert(header::ETAG, "\"strong\"".parse().unwrap());
        assert_eq!(validator(&h).as_deref(), Some("\"strong\""));
        assert_eq!(validator(&HeaderMap::new()), None);
    }

    #[test]
    fn no_store_or_private_in_any_cache_control() {
        let cc = header::CACHE_CONTROL;
        assert!(no_store(&headers(&[(cc.clone(), "max-age=60, no-store")])));
        assert!(no_store(&headers(&[(cc.clone(), "Private=\"x\"")])));
        assert!(no_store(&headers(&[
            (cc.clone(), "max-age=60"),
            (cc.clone(), "private"),
        ])));
        assert!(!no_store(&headers(&[(cc.clone(), "public, max-age=60")])));
        assert!(!no_store(&headers(&[(cc, "no-cache")])));
        assert!(!no_store(&HeaderMap::new()));
    }

    #[test]
    fn ranges_length_and_retry_after() {
        assert!(accepts_ranges(&headers(&[(
            header::ACCEPT_RANGES,
            "Bytes"
        )])));
        assert!(!accepts_ranges(&headers(&[(
            header::ACCEPT_RANGES,
            "none"
        )])));
        assert!(!accepts_ranges(&HeaderMap::new()));
        assert_eq!(
            content_length(&headers(&[(header::CONTENT_LENGTH, " 42 ")])),
            Some(42)
        );
        assert_eq!(content_length(&HeaderMap::new()), None);
        let h = headers(&[(header::RETRY_AFTER, "120")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let e = status_error(StatusCode::SERVICE_UNAVAILABLE, &h, "u");
        assert_eq!(e.retry_after, Some(Duration::from_secs(120)));
        assert!(e.transient);
    }
}
