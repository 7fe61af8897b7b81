//! What a worker and the cache process say to each other on the cache process's local
//! socket (`ipc.rs` frames), and what the broker gives the cache process when it starts
//! it. The cache process holds the fleet's identity (its key), the peer cache and the
//! peer port; a worker asks it to find content among the peers, hands it the files that
//! qualify for the cache and the downloads it shares as open descriptors, and fetches
//! ranges from peers through its HTTP gateway. Everything a worker says is a user's: the
//! cache process never opens a path from it, and answers administrators' requests (the
//! whole cache, the fleet's status) only to root or the admin group's members.

use serde::{Deserialize, Serialize};

use super::protocol::Refusal;
use crate::model::CacheEntry;

/// Broker → cache process, once, with the peer port's listener, the local socket's
/// listener and the gateway's listener attached (in that order).
#[derive(Debug, Serialize, Deserialize)]
pub struct Start {
    /// The fleet CA's certificate, this node's certificate and its key (PEM), which the
    /// broker read as root: the cache process needs no access to the files.
    pub ca_cert: Vec<u8>,
    pub node_cert: Vec<u8>,
    pub node_key: Vec<u8>,
    /// The fleet's revocation list (PEM); empty when there is none.
    pub crl: Vec<u8>,
}

/// What a file's content is known by (the engine's `ContentQuery`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Query {
    pub url: String,
    pub validator: Option<String>,
    pub length: Option<u64>,
    pub sha256: Option<String>,
}

/// A peer that has the content (the engine's `PeerOffer`, without its client: a worker
/// fetches through the gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    pub peer: String,
    pub content_url: String,
    pub length: u64,
    pub sha256: String,
}

/// A peer that holds or fetches some of the content (the engine's `Holder`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HolderWire {
    pub peer: String,
    pub node: String,
    pub content_url: String,
    pub length: u64,
    pub complete: bool,
    pub ranges: Vec<(u64, u64)>,
    pub pending: Vec<(u64, u64)>,
}

/// One known peer (`ferry peers status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerWire {
    pub name: String,
    pub address: String,
    /// `mdns` or `static`.
    pub found: String,
    /// `up`, `unreachable` or `banned`.
    pub state: String,
    pub last_seen_ms: i64,
    pub banned_until_ms: i64,
    pub bytes_fetched: u64,
    pub failures: u32,
    pub last_error: String,
}

/// The fleet, the peers and the cache now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusWire {
    pub fleet_id: String,
    pub node_name: String,
    pub listen_address: String,
    pub discovery: String,
    pub peers: Vec<PeerWire>,
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_limit: u64,
    pub bytes_served: u64,
    pub lookup_hits: u64,
    pub lookup_misses: u64,
    pub cert_expires_ms: i64,
}

/// Worker → cache process. A request with a `request` number gets one [`Answer`] with it.
#[derive(Debug, Serialize, Deserialize)]
pub enum Ask {
    /// This node's name in the fleet.
    Node {
        request: u64,
    },
    Find {
        request: u64,
        query: Query,
    },
    Holders {
        request: u64,
        query: Query,
    },
    Fetched {
        peer: String,
        bytes: u64,
    },
    Failed {
        peer: String,
        why: String,
    },
    Ban {
        peers: Vec<String>,
        why: String,
    },
    /// A file that qualifies for the cache, opened by its owner (one descriptor).
    Offer {
        request: u64,
        url: String,
        validator: Option<String>,
        sha256: Option<String>,
    },
    Holds {
        request: u64,
        query: Query,
    },
    Evict {
        request: u64,
        query: Query,
    },
    /// A download under way shared with the swarm (its part file, one descriptor opened
    /// for reading), known by the worker's `share` number until `Unshare`.
    Share {
        share: u64,
        query: Query,
        length: u64,
    },
    /// The ranges of share `share` that may be served now, and those being fetched.
    ShareRanges {
        share: u64,
        durable: Vec<(u64, u64)>,
        pending: Vec<(u64, u64)>,
    },
    Unshare {
        share: u64,
    },
    /// Administrators only (root, the admin group).
    Entries {
        request: u64,
    },
    Clear {
        request: u64,
    },
    Status {
        request: u64,
    },
}

/// Cache process → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Node {
        request: u64,
        node: String,
    },
    Found {
        request: u64,
        offers: Vec<Offer>,
    },
    Holders {
        request: u64,
        holders: Vec<HolderWire>,
    },
    Done {
        request: u64,
        result: Result<u64, Refusal>,
    },
    Entries {
        request: u64,
        result: Result<Vec<EntryWire>, Refusal>,
    },
    Status {
        request: u64,
        result: Result<StatusWire, Refusal>,
    },
}

impl Answer {
    /// The request it answers.
    pub fn request(&self) -> u64 {
        match self {
            Answer::Node { request, .. }
            | Answer::Found { request, .. }
            | Answer::Holders { request, .. }
            | Answer::Done { request, .. }
            | Answer::Entries { request, .. }
            | Answer::Status { request, .. } => *request,
        }
    }
}

/// A cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryWire {
    pub id: String,
    pub url: String,
    pub validator: Option<String>,
    pub length: u64,
    pub sha256: String,
    pub created_ms: i64,
    pub last_access_ms: i64,
    pub bytes_served: u64,
}

impl From<&CacheEntry> for EntryWire {
    fn from(e: &CacheEntry) -> EntryWire {
        EntryWire {
            id: e.id.clone(),
            url: e.url.clone(),
            validator: e.validator.clone(),
            length: e.length,
            sha256: e.sha256.clone(),
            created_ms: e.created_ms,
            last_access_ms: e.last_access_ms,
            bytes_served: e.bytes_served,
        }
    }
}

impl From<EntryWire> for CacheEntry {
    fn from(e: EntryWire) -> CacheEntry {
        CacheEntry {
            id: e.id,
            url: e.url,
            validator: e.validator,
            length: e.length,
            sha256: e.sha256,
            created_ms: e.created_ms,
            last_access_ms: e.last_access_ms,
            bytes_served: e.bytes_served,
        }
    }
}
