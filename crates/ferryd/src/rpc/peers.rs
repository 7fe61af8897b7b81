//! `ferry.v1.Peers`: peer caching's status (fleet, peers, cache), the cache's entries,
//! clearing it.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::model::mask_url;
use crate::service::{CacheEntry, Found, PeerInfo, PeerState, Service};

/// The `Peers` service.
pub struct PeersApi {
    pub svc: Arc<Service>,
}

fn peer(p: &PeerInfo) -> pb::Peer {
    pb::Peer {
        name: p.name.clone(),
        address: p.address.clone(),
        origin: match p.found {
            Found::Mdns => pb::PeerOrigin::Mdns,
            Found::Static => pb::PeerOrigin::Static,
            Found::DnsSd => pb::PeerOrigin::DnsSd,
        } as i32,
        state: match p.state {
            PeerState::New => pb::PeerState::New,
            PeerState::Up => pb::PeerState::Up,
            PeerState::Unreachable => pb::PeerState::Unreachable,
            PeerState::Banned => pb::PeerState::Banned,
        } as i32,
        last_seen_unix_ms: p.last_seen_ms,
        banned_until_unix_ms: p.banned_until_ms,
        bytes_fetched: p.bytes_fetched,
        last_error: p.last_error.clone(),
    }
}

fn entry(e: &CacheEntry) -> pb::CacheEntry {
    pb::CacheEntry {
        id: e.id.clone(),
        // A URL's userinfo is write-only here too (model/secrets.rs).
        url: mask_url(&e.url).into_owned(),
        validator: e.validator.clone().unwrap_or_default(),
        length: e.length,
        sha256: e.sha256.clone(),
        created_unix_ms: e.created_ms,
        last_access_unix_ms: e.last_access_ms,
        bytes_served: e.bytes_served,
    }
}

#[tonic::async_trait]
impl pb::peers_server::Peers for PeersApi {
    async fn get_peers_status(
        &self,
        req: Request<pb::GetPeersStatusRequest>,
    ) -> Result<Response<pb::GetPeersStatusResponse>, Status> {
        caller(&req)?;
        let Some(s) = self.svc.peers_status().await? else {
            return Ok(Response::new(pb::GetPeersStatusResponse::default()));
        };
        Ok(Response::new(pb::GetPeersStatusResponse {
            enabled: true,
            fleet_id: s.fleet_id,
            node_name: s.node_name,
            listen_address: s.listen_address,
            discovery: s.discovery,
            peers: s.peers.iter().map(peer).collect(),
            cache_entries: s.cache_entries,
            cache_bytes: s.cache_bytes,
            cache_limit_bytes: s.cache_limit,
            bytes_served: s.bytes_served,
            node_cert_expires_unix_ms: s.cert_expires_ms,
        }))
    }

    async fn list_cache_entries(
        &self,
        req: Request<pb::ListCacheEntriesRequest>,
    ) -> Result<Response<pb::ListCacheEntriesResponse>, Status> {
        caller(&req)?;
        let entries = self.svc.cache_entries().await?;
        Ok(Response::new(pb::ListCacheEntriesResponse {
            entries: entries.iter().map(entry).collect(),
        }))
    }

    async fn clear_cache(
        &self,
        req: Request<pb::ClearCacheRequest>,
    ) -> Result<Response<pb::ClearCacheResponse>, Status> {
        caller(&req)?;
        let (entries_removed, bytes_removed) = self.svc.clear_cache().await?;
        Ok(Response::new(pb::ClearCacheResponse {
            entries_removed,
            bytes_removed,
        }))
    }
}
