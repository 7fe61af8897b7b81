//! Peer caching as the daemon reports it: the fleet, the peers it found, and the cache of
//! files it offers them (`ferry peers status`, `ferry peers cache list|clear`).

use ferry_proto::v1 as pb;
use serde::Serialize;

use crate::conn::Retry;
use crate::{Manager, Result};

/// How a peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerOrigin {
    /// DNS-SD over multicast DNS.
    Mdns,
    /// The static list of `ferryd.toml`.
    Static,
    /// Unicast DNS-SD: SRV/TXT records in the site's DNS (RFC 6763).
    DnsSd,
    /// A value this library does not know.
    Unknown,
}

/// What the daemon makes of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// It answered its last check.
    Up,
    /// Not checked yet.
    New,
    /// It failed its last check.
    Unreachable,
    /// Its bytes failed a check: not asked until `banned_until_unix_ms`.
    Banned,
    /// A value this library does not know.
    Unknown,
}

/// One peer of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// Its DNS-SD instance name, or its address for a static peer.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// How it was found.
    pub origin: PeerOrigin,
    /// Its state.
    pub state: PeerState,
    /// When it last answered (ms since the Unix epoch; 0: never).
    pub last_seen_unix_ms: i64,
    /// Until when it is banned (ms since the Unix epoch).
    pub banned_until_unix_ms: i64,
    /// Bytes fetched from it.
    pub bytes_fetched: u64,
    /// Why its last check failed, if it did.
    pub last_error: String,
}

/// Peer caching's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeersStatus {
    /// False when the daemon runs without peer caching (the rest is empty).
    pub enabled: bool,
    /// The fleet's id (a hash of its CA certificate).
    pub fleet_id: String,
    /// This node's name (its certificate's common name).
    pub node_name: String,
    /// The peer port, `host:port`.
    pub listen_address: String,
    /// `mdns`, `static` or `both`.
    pub discovery: String,
    /// The peers known now.
    pub peers: Vec<PeerInfo>,
    /// Entries in the cache.
    pub cache_entries: u64,
    /// Their bytes.
    pub cache_bytes: u64,
    /// The cache's size limit.
    pub cache_limit_bytes: u64,
    /// Bytes served to peers since the daemon started.
    pub bytes_served: u64,
    /// When this node's fleet certificate expires, ms since the Unix epoch (0 when peer
    /// caching is off).
    pub node_cert_expires_unix_ms: i64,
}

/// One file in the peer cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    /// Its id (32 hex digits), how peers ask for it.
    pub id: String,
    /// The origin URL.
    pub url: String,
    /// The origin's strong ETag or Last-Modified, if it sent one.
    pub validator: Option<String>,
    /// Its length in bytes.
    pub length: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// When it entered the cache (ms since the Unix epoch).
    pub created_unix_ms: i64,
    /// When it was last looked up or served (ms since the Unix epoch).
    pub last_access_unix_ms: i64,
    /// Bytes of it served to peers.
    pub bytes_served: u64,
}

fn peer(p: pb::Peer) -> PeerInfo {
    PeerInfo {
        origin: match pb::PeerOrigin::try_from(p.origin) {
            Ok(pb::PeerOrigin::Mdns) => PeerOrigin::Mdns,
            Ok(pb::PeerOrigin::Static) => PeerOrigin::Static,
            Ok(pb::PeerOrigin::DnsSd) => PeerOrigin::DnsSd,
            _ => PeerOrigin::Unknown,
        },
        state: match pb::PeerState::try_from(p.state) {
            Ok(pb::PeerState::Up) => PeerState::Up,
            Ok(pb::PeerState::New) => PeerState::New,
            Ok(pb::PeerState::Unreachable) => PeerState::Unreachable,
            Ok(pb::PeerState::Banned) => PeerState::Banned,
            _ => PeerState::Unknown,
        },
        name: p.name,
        address: p.address,
        last_seen_unix_ms: p.last_seen_unix_ms,
        banned_until_unix_ms: p.banned_until_unix_ms,
        bytes_fetched: p.bytes_fetched,
        last_error: p.last_error,
    }
}

impl Manager {
    /// Peer caching's status: the fleet, the peers, the cache.
    pub async fn peers_status(&self) -> Result<PeersStatus> {
        let r = self
            .conn
            .call(Retry::Always, |mut rpc| async move {
                rpc.peers
                    .get_peers_status(pb::GetPeersStatusRequest {})
                    .await
            })
            .await?;
        Ok(PeersStatus {
            enabled: r.enabled,
            fleet_id: r.fleet_id,
            node_name: r.node_name,
            listen_address: r.listen_address,
            discovery: r.discovery,
            peers: r.peers.into_iter().map(peer).collect(),
            cache_entries: r.cache_entries,
            cache_bytes: r.cache_bytes,
            cache_limit_bytes: r.cache_limit_bytes,
            bytes_served: r.bytes_served,
            node_cert_expires_unix_ms: r.node_cert_expires_unix_ms,
        })
    }

    /// Every entry of the peer cache, oldest first (`FAILED_PRECONDITION` when peer caching
    /// is off).
    pub async fn cache_entries(&self) -> Result<Vec<CacheEntry>> {
        let r = self
            .conn
            .call(Retry::Always, |mut rpc| async move {
                rpc.peers
                    .list_cache_entries(pb::ListCacheEntriesRequest {})
                    .await
            })
            .await?;
        Ok(r.entries
            .into_iter()
            .map(|e| CacheEntry {
                id: e.id,
                url: e.url,
                validator: Some(e.validator).filter(|v| !v.is_empty()),
                length: e.length,
                sha256: e.sha256,
                created_unix_ms: e.created_unix_ms,
                last_access_unix_ms: e.last_access_unix_ms,
                bytes_served: e.bytes_served,
            })
            .collect())
    }

    /// Empties the peer cache; returns the entries and bytes removed.
    pub async fn clear_cache(&self) -> Result<(u64, u64)> {
        let r = self
            .conn
            .call(Retry::Always, |mut rpc| async move {
                rpc.peers.clear_cache(pb::ClearCacheRequest {}).await
            })
            .await?;
        Ok((r.entries_removed, r.bytes_removed))
    }
}
