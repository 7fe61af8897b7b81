//! Downloads under way that this node shares with the fleet (issue 14's swarm): the
//! engine registers one through `PeerFinder::share` and keeps it while it runs; the peer
//! port's `/v1/have` finds it by content and `/v1/partial/ID` serves the ranges it says
//! are servable (on disk, and first-hand or verified: the engine decides).
//!
//! May use: `engine` (the shared download's types), `protocol`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::protocol::LookupRequest;
use crate::engine::swarm::{ShareGuard, SharedDownload, SharedRanges};
use crate::engine::ContentQuery;

/// One shared download.
pub struct Live {
    /// 32 lower-case hex digits, new for every download.
    pub id: String,
    pub query: ContentQuery,
    pub length: u64,
    pub file: std::fs::File,
    pub ranges: Arc<dyn SharedRanges>,
}

impl Live {
    /// True when `[start, end)` may be served now.
    pub fn servable(&self, start: u64, end: u64) -> bool {
        self.ranges
            .durable()
            .iter()
            .any(|&(a, b)| a <= start && end <= b)
    }

    fn matches(&self, req: &LookupRequest) -> bool {
        if let (Some(a), Some(b)) = (&req.sha256, &self.query.sha256) {
            return a.eq_ignore_ascii_case(b);
        }
        req.url.as_deref() == Some(self.query.url.as_str())
            && req.validator.is_some()
            && req.validator == self.query.validator
            && req.length == Some(self.length)
    }
}

/// The downloads this node shares now.
#[derive(Default)]
pub struct Shares {
    live: Mutex<HashMap<String, Arc<Live>>>,
}

/// Removes its download from the shares when dropped.
struct Guard {
    shares: Weak<Shares>,
    id: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(s) = self.shares.upgrade() {
            s.live.lock().remove(&self.id);
        }
    }
}

impl Shares {
    pub fn new() -> Arc<Shares> {
        Arc::new(Shares::default())
    }

    /// Shares `d` until the guard is dropped.
    pub fn add(self: &Arc<Self>, d: SharedDownload) -> ShareGuard {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.live.lock().insert(
            id.clone(),
            Arc::new(Live {
                id: id.clone(),
                query: d.query,
                length: d.length,
                file: d.file,
                ranges: d.ranges,
            }),
        );
        Box::new(Guard {
            shares: Arc::downgrade(self),
            id,
        })
    }

    /// A shared download of this content.
    pub fn find(&self, req: &LookupRequest) -> Option<Arc<Live>> {
        self.live.lock().values().find(|l| l.matches(req)).cloned()
    }

    /// Stops sharing every download of this content (by SHA-256, or by URL and
    /// validator: a download under way of the same URL with another validator is other
    /// content): a rejected file leaves the fleet's view at once. How many.
    pub fn withdraw(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize {
        let mut live = self.live.lock();
        let before = live.len();
        live.retain(|_, l| {
            let same_sha = matches!(
                (sha256, &l.query.sha256),
                (Some(a), Some(b)) if a.eq_ignore_ascii_case(b)
            );
            let same_url = validator.is_some()
                && l.query.url == url
                && l.query.validator.as_deref() == validator;
            !(same_sha || same_url)
        });
        before - live.len()
    }

    /// The shared download `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.live.lock().get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Whole(u64);

    impl SharedRanges for Whole {
        fn durable(&self) -> Vec<(u64, u64)> {
            vec![(0, self.0)]
        }
        fn pending(&self) -> Vec<(u64, u64)> {
            Vec::new()
        }
    }

    fn shared(url: &str, validator: &str, sha256: Option<&str>) -> SharedDownload {
        SharedDownload {
            query: ContentQuery {
                url: url.into(),
                validator: Some(validator.into()),
                length: Some(10),
                sha256: sha256.map(String::from),
            },
            length: 10,
            file: tempfile::tempfile().unwrap(),
            ranges: Arc::new(Whole(10)),
        }
    }

    fn by_url(url: &str, validator: &str) -> LookupRequest {
        LookupRequest {
            sha256: None,
            url: Some(url.into()),
            validator: Some(validator.into()),
            length: Some(10),
        }
    }

    #[test]
    fn a_withdrawn_content_is_no_longer_found_and_others_stay() {
        let shares = Shares::new();
        let sha = "ab".repeat(32);
        let _a = shares.add(shared("http://o/a", "\"1\"", None));
        let _b = shares.add(shared("http://o/a", "\"2\"", None));
        let _c = shares.add(shared("http://o/c", "\"1\"", Some(&sha)));
        assert!(shares.find(&by_url("http://o/a", "\"1\"")).is_some());

        assert_eq!(shares.withdraw("http://o/a", Some("\"1\""), None), 1);
        assert!(shares.find(&by_url("http://o/a", "\"1\"")).is_none());
        assert!(
            shares.find(&by_url("http://o/a", "\"2\"")).is_some(),
            "another validator is other content"
        );
        assert_eq!(
            shares.withdraw("http://o/a", None, None),
            0,
            "without a validator or a SHA-256 nothing says which download it was"
        );
        assert_eq!(shares.withdraw("http://elsewhere/", None, Some(&sha)), 1);
        assert!(shares.find(&by_url("http://o/c", "\"1\"")).is_none());
    }
}
