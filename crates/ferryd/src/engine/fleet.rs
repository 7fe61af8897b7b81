//! The engine's port to the fleet's peers: what it asks of them ([`PeerFinder`]) and the
//! types that cross it. The engine owns this interface; the peer-caching module implements
//! it and the daemon hands it to the engine at start-up, so the engine never names that
//! module. Re-exported where they were first defined: `engine::{ContentQuery, PeerFinder,
//! PeerOffer}` and `engine::swarm::{Holder, ShareGuard, SharedDownload, SharedRanges}`.
//!
//! May use: nothing of the engine (the strategies that reach the fleet use this).

use std::sync::Arc;

/// What a file's content is known by, to ask peers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentQuery {
    /// The origin URL (the job's remote URL).
    pub url: String,
    /// The origin's strong validator (ETag or Last-Modified) from a `HEAD`.
    pub validator: Option<String>,
    /// The length the origin announced.
    pub length: Option<u64>,
    /// The SHA-256 the file must have, lower-case hex, when known: then peers are asked
    /// by it alone.
    pub sha256: Option<String>,
}

/// A peer that has the content.
#[derive(Clone)]
pub struct PeerOffer {
    /// The peer's name (for its statistics, failures and bans).
    pub peer: String,
    /// Where to ask it for ranges of the content.
    pub content_url: String,
    /// The content's length there.
    pub length: u64,
    /// The content's SHA-256 there.
    pub sha256: String,
    /// A client that speaks the fleet's mutual TLS.
    pub client: reqwest::Client,
}

/// The fleet's peers, as the engine sees them.
#[async_trait::async_trait]
pub trait PeerFinder: Send + Sync + 'static {
    /// Asks every usable peer, in parallel and within the lookup timeout, who has the
    /// content; the ones that have it.
    async fn find(&self, query: &ContentQuery) -> Vec<PeerOffer>;
    /// `bytes` were fetched from `peer`.
    fn fetched(&self, peer: &str, bytes: u64);
    /// `peer` failed while serving (an error, a stall, an answer that was not asked for).
    fn failed(&self, peer: &str, why: &str);
    /// Bytes of these peers failed a check: they are not asked for a while.
    fn ban(&self, peers: &[String], why: &str);
    /// This node's name in the fleet (the swarm's rendezvous key).
    fn node(&self) -> String;
    /// Shares a download under way with the fleet until the guard is dropped.
    fn share(&self, download: SharedDownload) -> ShareGuard;
    /// Asks every usable peer, in parallel and briefly, which ranges of the content it
    /// holds (downloading it, or whole in its cache); the ones that hold some or fetch it.
    async fn holders(&self, query: &ContentQuery) -> Vec<Holder>;
}

/// The ranges of a download under way that may be served to the fleet.
pub trait SharedRanges: Send + Sync {
    /// Ranges on disk that may be served, sorted, `[start, end)`.
    fn durable(&self) -> Vec<(u64, u64)>;
    /// Ranges being fetched from the origin now (so others wait for them).
    fn pending(&self) -> Vec<(u64, u64)>;
}

/// A download the fleet may fetch from while it runs.
pub struct SharedDownload {
    /// The content: URL, validator, length, and SHA-256 when known.
    pub query: ContentQuery,
    pub length: u64,
    /// The part file, read at the offsets `ranges` allows.
    pub file: std::fs::File,
    pub ranges: Arc<dyn SharedRanges>,
}

/// Stops sharing when dropped.
pub type ShareGuard = Box<dyn Send + Sync>;

/// A peer that answered for the content.
#[derive(Clone)]
pub struct Holder {
    /// Its address (the directory's key: failures and bans).
    pub peer: String,
    /// Its node name (the rendezvous key).
    pub node: String,
    /// Where to ask it for ranges.
    pub content_url: String,
    pub length: u64,
    /// It holds all of it.
    pub complete: bool,
    pub ranges: Vec<(u64, u64)>,
    pub pending: Vec<(u64, u64)>,
    /// A client that speaks the fleet's mutual TLS.
    pub client: reqwest::Client,
}
