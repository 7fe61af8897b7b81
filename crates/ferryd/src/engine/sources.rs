//! Where a file's bytes come from: its origin, and the peers of a fleet that hold the
//! same content (found through the fleet port, `fleet`), and how many bytes came from
//! each.
//!
//! A [`Source`] is one place to fetch byte ranges from; `multisource` runs connections to
//! several sources over one segment table.
//!
//! May use: the engine's request decoration and fleet port; `model`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::JobOptions;

use super::fleet::PeerOffer;

/// Bytes every run of the engine received since the daemon started, by where they came
/// from (the metrics' counters: they only grow, whatever becomes of the bytes).
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes from origins (`file://` sources included).
    pub origin: AtomicU64,
    /// Bytes from the fleet's peers: their caches and the swarm.
    pub peers: AtomicU64,
}

/// Where the bytes of one file came from, as they arrive.
#[derive(Debug, Default)]
pub struct SourceBytes {
    /// Bytes from the origin.
    pub origin: AtomicU64,
    /// Bytes from peers.
    pub peers: AtomicU64,
    /// The peers that sent some.
    used: Mutex<Vec<String>>,
    /// The SHA-256 the peers said the content has.
    claimed: Mutex<Option<String>>,
    /// The engine's totals, which every byte counted here is added to as well.
    received: Arc<Received>,
}

impl SourceBytes {
    /// Counters starting where the file's record left them; what arrives is added to
    /// `received` too.
    pub fn starting_at(origin: u64, peers: u64, received: Arc<Received>) -> Arc<SourceBytes> {
        Arc::new(SourceBytes {
            origin: AtomicU64::new(origin),
            peers: AtomicU64::new(peers),
            used: Mutex::new(Vec::new()),
            claimed: Mutex::new(None),
            received,
        })
    }

    /// Counts `n` bytes from `source`.
    pub(super) fn add(&self, source: &SourceKind, n: u64) {
        match source {
            SourceKind::Origin => self.add_origin(n),
            SourceKind::Peer(name) => {
                let mut used = self.used.lock();
                if !used.iter().any(|p| p == name) {
                    used.push(name.clone());
                }
                self.peers.fetch_add(n, Ordering::Relaxed);
                self.received.peers.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Counts `n` bytes from the origin.
    pub(super) fn add_origin(&self, n: u64) {
        self.origin.fetch_add(n, Ordering::Relaxed);
        self.received.origin.fetch_add(n, Ordering::Relaxed);
    }

    /// The file starts over: nothing of it came from anywhere yet.
    pub fn reset(&self) {
        self.origin.store(0, Ordering::Relaxed);
        self.peers.store(0, Ordering::Relaxed);
        self.used.lock().clear();
        *self.claimed.lock() = None;
    }

    /// The peers say the content has this SHA-256: the file is checked against it.
    pub fn claim_sha256(&self, sha256: &str) {
        *self.claimed.lock() = Some(sha256.to_string());
    }

    /// The SHA-256 the peers claimed, if the file came (partly) from peers.
    pub fn claimed_sha256(&self) -> Option<String> {
        self.claimed.lock().clone()
    }

    /// The peers that sent bytes of the file.
    pub fn peers_used(&self) -> Vec<String> {
        self.used.lock().clone()
    }
}

/// What kind of place a source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// The file's own URL.
    Origin,
    /// A fleet peer, by name.
    Peer(String),
}

/// One place to fetch ranges of a file from.
#[derive(Clone)]
pub struct Source {
    pub kind: SourceKind,
    pub client: reqwest::Client,
    pub url: String,
    /// The origin's job options (headers, credentials); none for a peer.
    pub options: Option<JobOptions>,
    /// `If-Range` for the origin, when its validator is known.
    pub validator: Option<String>,
}

impl Source {
    /// The origin of a file.
    pub fn origin(
        client: reqwest::Client,
        url: String,
        options: JobOptions,
        validator: Option<String>,
    ) -> Source {
        Source {
            kind: SourceKind::Origin,
            client,
            url,
            options: Some(options),
            validator,
        }
    }

    /// A peer's offer.
    pub fn peer(offer: &PeerOffer) -> Source {
        Source {
            kind: SourceKind::Peer(offer.peer.clone()),
            client: offer.client.clone(),
            url: offer.content_url.clone(),
            options: None,
            validator: None,
        }
    }

    /// True for the origin.
    pub fn is_origin(&self) -> bool {
        self.kind == SourceKind::Origin
    }

    /// A request for bytes `[from, to)`.
    pub(super) fn range_request(&self, from: u64, to: u64) -> reqwest::RequestBuilder {
        let mut req = match &self.options {
            Some(options) => super::netclient::for_download(self.client.get(&self.url), options),
            None => self.client.get(&self.url),
        }
        .header(reqwest::header::RANGE, format!("bytes={from}-{}", to - 1));
        if let Some(v) = &self.validator {
            req = req.header(reqwest::header::IF_RANGE, v.as_str());
        }
        req
    }

    /// The job's credentials, for the origin (a peer gets none).
    pub fn credentials(&self) -> Option<&crate::model::Credentials> {
        self.options.as_ref().and_then(|o| o.credentials.as_ref())
    }

    /// How it is named in messages.
    pub fn label(&self) -> String {
        match &self.kind {
            SourceKind::Origin => self.url.clone(),
            SourceKind::Peer(name) => format!("peer {name}"),
        }
    }
}
