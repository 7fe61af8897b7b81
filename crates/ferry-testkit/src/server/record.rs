//! The record of what the server received: every request head, kept per path
//! in order of arrival, and the bodies of complete `PUT`s and `POST`s.

use super::range::parse_range;
use super::request::Head;
use super::state::{key_of, State};
use super::TestServer;

/// One request received by the [`TestServer`], recorded when its head was read
/// (before its body, and before it is answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, including any query string.
    pub path: String,
    /// All headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// `N` from a `Range: bytes=N-` or `Range: bytes=N-M` header.
    pub range_start: Option<u64>,
}

impl RecordedRequest {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl State {
    /// Records a request whose head was just read, under `key`.
    pub(super) fn record(&mut self, key: &str, head: &Head) {
        let range_start = head
            .header("range")
            .and_then(parse_range)
            .and_then(|r| r.start());
        self.requests
            .entry(key.to_string())
            .or_default()
            .push(RecordedRequest {
                method: head.method.clone(),
                path: head.target.clone(),
                headers: head.headers.clone(),
                range_start,
            });
    }
}

impl TestServer {
    /// Every request received for `path`, in order of arrival.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .get(&key_of(path))
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests were received for `path`.
    pub fn request_count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .get(&key_of(path))
            .map_or(0, Vec::len)
    }

    /// The body of the last complete `PUT` or `POST` to `path`, if any.
    pub fn uploaded(&self, path: &str) -> Option<Vec<u8>> {
        self.shared.lock().uploads.get(&key_of(path)).cloned()
    }
}
