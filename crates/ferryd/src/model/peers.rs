//! What peer caching records: per file, where its bytes came from and what the cache may
//! do with it; per cache entry, what the fleet is offered.

/// Peer-caching facts of one file (BITS's `GetPeerDownloadStats`, and two flags).
/// Serialized (for the store's compact form of final jobs) as an option, `None` for the
/// defaults: one byte for the files of a fleet-less machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Option<PeerInfoRepr>", into = "Option<PeerInfoRepr>")]
pub struct FilePeerInfo {
    /// Bytes of the file as it stands that came from the origin.
    pub from_origin: u64,
    /// Bytes of the file as it stands that came from peers.
    pub from_peers: u64,
    /// The origin marked the content `Cache-Control: private` or `no-store`: it is never
    /// cached or served.
    pub no_peer_cache: bool,
    /// Peers' bytes of this file were rejected (a checksum mismatch, or the application
    /// marked the file invalid): it is fetched from the origin only.
    pub origin_only: bool,
}

/// [`FilePeerInfo`]'s fields in order.
type PeerInfoRepr = (u64, u64, bool, bool);

impl From<Option<PeerInfoRepr>> for FilePeerInfo {
    fn from(r: Option<PeerInfoRepr>) -> Self {
        r.map(
            |(from_origin, from_peers, no_peer_cache, origin_only)| FilePeerInfo {
                from_origin,
                from_peers,
                no_peer_cache,
                origin_only,
            },
        )
        .unwrap_or_default()
    }
}

impl From<FilePeerInfo> for Option<PeerInfoRepr> {
    fn from(i: FilePeerInfo) -> Self {
        (i != FilePeerInfo::default()).then_some((
            i.from_origin,
            i.from_peers,
            i.no_peer_cache,
            i.origin_only,
        ))
    }
}

/// One file in the peer cache: the daemon's own copy, offered to the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// 32 hex digits, random: the name peers ask for and the file's name in the cache.
    pub id: String,
    /// The origin URL the content was fetched from (the job's remote URL).
    pub url: String,
    /// The origin's strong ETag or Last-Modified, when it sent one: lookups by URL match
    /// it exactly (no validator: found by SHA-256 only).
    pub validator: Option<String>,
    /// Its length in bytes.
    pub length: u64,
    /// Its SHA-256, lower-case hex (computed by the cache as it copies the file in).
    pub sha256: String,
    /// When it entered the cache (ms since the epoch).
    pub created_ms: i64,
    /// When it was last looked up or served (ms); the age limit counts from here.
    pub last_access_ms: i64,
    /// Bytes of it served to peers.
    pub bytes_served: u64,
}
