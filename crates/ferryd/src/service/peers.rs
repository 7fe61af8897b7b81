//! The service side of peer caching: which files qualify for the cache (their job offers
//! its files, sends no credentials or private headers, and the origin did not mark them
//! private), handing them to the cache as their owner opened them, what a rejected file
//! from peers does, and the status and cache commands.

use std::sync::Arc;

use uuid::Uuid;

use super::{Service, ServiceError};
use crate::engine::PeerFinder;
use crate::model::{CacheEntry, FileRecord, JobRecord, JobType};
use crate::peers::Peers;
pub use crate::peers::{Found, Incoming, PeerInfo, PeerState, PeersStatus};

/// Peer caching as the service uses it (the port this module owns): the peers module
/// itself in the per-user daemon; in a worker of the system-wide daemon, the machine's
/// cache process, which holds the fleet's identity, the cache and the peer port
/// (`privsep/`).
#[async_trait::async_trait]
pub trait PeerCache: Send + Sync + 'static {
    /// The engine's view of the fleet.
    fn finder(&self) -> Arc<dyn PeerFinder>;
    /// Copies a file that qualifies into the cache (`file` opened by its owner).
    async fn offer(&self, file: std::fs::File, what: Incoming);
    /// True when the cache already holds this content.
    async fn holds(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> bool;
    /// Drops the cache's entries of this content.
    async fn evict(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize;
    /// Bans peers whose bytes were rejected.
    fn ban(&self, peers: &[String], why: &str);
    /// Every cache entry.
    async fn entries(&self) -> Result<Vec<CacheEntry>, ServiceError>;
    /// Empties the cache: entries and bytes removed.
    async fn clear(&self) -> Result<(u64, u64), ServiceError>;
    /// The fleet, the peers and the cache now.
    async fn status(&self) -> Result<PeersStatus, ServiceError>;
    /// Stops (shutdown).
    fn shutdown(&self);
}

#[async_trait::async_trait]
impl PeerCache for Peers {
    fn finder(&self) -> Arc<dyn PeerFinder> {
        Peers::finder(self)
    }

    async fn offer(&self, file: std::fs::File, what: Incoming) {
        Peers::offer(self, file, what).await
    }

    async fn holds(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> bool {
        Peers::holds(self, url, validator, sha256)
    }

    async fn evict(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize {
        Peers::evict(self, url, validator, sha256)
    }

    fn ban(&self, peers: &[String], why: &str) {
        Peers::ban(self, peers, why)
    }

    async fn entries(&self) -> Result<Vec<CacheEntry>, ServiceError> {
        Ok(Peers::entries(self))
    }

    async fn clear(&self) -> Result<(u64, u64), ServiceError> {
        Ok(Peers::clear(self))
    }

    async fn status(&self) -> Result<PeersStatus, ServiceError> {
        Ok(Peers::status(self))
    }

    fn shutdown(&self) {
        Peers::shutdown(self)
    }
}

impl Service {
    /// Turns peer caching on (once, at start-up): the engine asks these peers, and files
    /// that qualify enter their cache.
    pub fn attach_peers(&self, peers: Arc<dyn PeerCache>) {
        self.engine.attach_peers(peers.finder());
        let _ = self.peers.set(peers);
    }

    /// The fleet, the peers and the cache; `None` when peer caching is off.
    pub async fn peers_status(&self) -> Result<Option<PeersStatus>, ServiceError> {
        match self.peers.get() {
            Some(p) => p.status().await.map(Some),
            None => Ok(None),
        }
    }

    fn peers_on(&self) -> Result<&Arc<dyn PeerCache>, ServiceError> {
        self.peers.get().ok_or_else(|| {
            ServiceError::FailedPrecondition(
                "peer caching is off: set `enabled = true` in the [peers] section of \
                 ferryd.toml and restart ferryd"
                    .into(),
            )
        })
    }

    /// Every entry of the peer cache.
    pub async fn cache_entries(&self) -> Result<Vec<CacheEntry>, ServiceError> {
        self.peers_on()?.entries().await
    }

    /// Empties the peer cache: entries and bytes removed.
    pub async fn clear_cache(&self) -> Result<(u64, u64), ServiceError> {
        self.peers_on()?.clear().await
    }

    /// True when `file` of `job` may enter the peer cache.
    fn qualifies(&self, job: &JobRecord, file: &FileRecord) -> bool {
        self.peers.get().is_some()
            && job.job_type == JobType::Download
            && job
                .options
                .peers
                .unwrap_or(self.config.peers.default_job_peers)
                .is_server()
            && !crate::model::request_is_private(
                &job.options,
                &file.remote_url,
                &self.config.peers.public_origins,
            )
            && !file.peer.no_peer_cache
            && file.ranges.is_whole()
            && file.remote_url.starts_with("http")
    }

    /// Copies file `index` of `job` into the peer cache if it qualifies and is not there
    /// yet; returns once it is there (or failed, which is only logged).
    pub(crate) async fn offer_to_peers(&self, job: &JobRecord, file: &FileRecord) {
        let Some(peers) = self.peers.get().cloned() else {
            return;
        };
        if !self.qualifies(job, file)
            || peers
                .holds(
                    &file.remote_url,
                    file.validator.as_deref(),
                    file.expected_sha256.as_deref(),
                )
                .await
        {
            return;
        }
        let part = file.temporary_path();
        match self.owners.of(job.owner_uid).open_read(part.clone()).await {
            Ok(f) => {
                peers
                    .offer(
                        f,
                        Incoming {
                            url: file.remote_url.clone(),
                            validator: file.validator.clone(),
                            sha256: file.expected_sha256.clone(),
                        },
                    )
                    .await
            }
            Err(e) => tracing::info!(part = %part.display(), "not offered to peers: {e}"),
        }
    }

    /// The job and record of file `index` of job `id`, when it qualifies for the cache.
    fn qualifying(&self, id: Uuid, index: u32) -> Option<(JobRecord, FileRecord)> {
        let found = {
            let inner = self.lock();
            inner.jobs.get(&id).and_then(|e| {
                e.files
                    .get(index as usize)
                    .map(|f| (e.job.clone(), f.clone()))
            })
        };
        found.filter(|(j, f)| self.qualifies(j, f))
    }

    /// Offers file `index` of job `id` in the background.
    pub(crate) fn offer_in_background(&self, id: Uuid, index: u32) {
        if let Some((job, file)) = self.qualifying(id, index) {
            let Some(svc) = self.this.upgrade() else {
                return;
            };
            tokio::spawn(async move { svc.offer_to_peers(&job, &file).await });
        }
    }

    /// Offers file `index` of job `id` and returns once the cache holds it (or the offer
    /// failed, which is only logged): the application's validation makes it the fleet's
    /// before its call returns.
    pub(crate) async fn offer_now(&self, id: Uuid, index: u32) {
        if let Some((job, file)) = self.qualifying(id, index) {
            self.offer_to_peers(&job, &file).await;
        }
    }

    /// A rejected file leaves the fleet's view: its content leaves this node's cache and
    /// any download of it this node shares with the swarm; returns once it has.
    pub(crate) async fn withdraw_from_peers(&self, file: &FileRecord) {
        let Some(peers) = self.peers.get().cloned() else {
            return;
        };
        let evicted = peers
            .evict(
                &file.remote_url,
                file.validator.as_deref(),
                file.expected_sha256.as_deref(),
            )
            .await;
        if evicted > 0 {
            tracing::info!(
                url = file.remote_url,
                evicted,
                "a rejected file left the peer cache"
            );
        }
    }

    /// The application rejected a file that came (partly) from peers (BITS): the peers
    /// that sent it are banned, and the file is to be fetched again from the origin alone
    /// (its content leaves this node's cache: [`Service::withdraw_from_peers`]).
    pub(crate) fn peers_rejected(&self, file: &FileRecord, sent_by: &[String]) {
        let Some(peers) = self.peers.get().cloned() else {
            return;
        };
        peers.ban(
            sent_by,
            &format!("the application rejected {} that it sent", file.remote_url),
        );
        tracing::info!(
            url = file.remote_url,
            "a file from peers was rejected; fetching it again from the origin"
        );
    }
}
