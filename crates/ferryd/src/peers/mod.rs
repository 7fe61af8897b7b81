//! Peer caching (BITS's peer caching, for a fleet of Linux machines): the cache of files
//! this node offers (`cache`), the fleet's trust (`tls`), the peer port (`server`) and its
//! protocol (`protocol`), finding peers (`discovery`: mDNS and the static list; `dnssd`: unicast DNS-SD) and the
//! client side (`directory`: asking peers, checking them, banning), the downloads under
//! way shared with the fleet (`shares`, the swarm), and refused handshakes logged once per
//! address (`refusals`).
//!
//! The service tells [`Peers`] when a file qualifies for the cache (validated, completed,
//! or SHA-256 matched) and hands it the file opened as its owner; the engine asks the
//! peers for content through its own `PeerFinder` interface, which [`Directory`]
//! implements. The cache folder is the daemon's own (private, under the state folder),
//! which is why this module touches the file system itself.
//!
//! May use: `engine` (the interface it implements, the rate limiter), `store` (the
//! cache's index), `model`, `config`. Not `service`, `rpc`, `notify`, `query` or `owner`.

pub mod cache;
pub mod directory;
pub mod discovery;
pub mod dnssd;
pub mod protocol;
pub mod refusals;
pub mod server;
pub mod shares;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use cache::{Cache, Incoming};
pub use directory::{Directory, Found, PeerInfo, PeerState};

use crate::config::{Discovery, PeersConfig};
use crate::engine::PeerFinder;
use crate::model::{now_ms, CacheEntry};
use crate::store::Store;

/// How often a peer that has not answered yet is checked, for [`EAGER_FOR`] after the
/// start or after a peer was found (instead of every `probe_interval`).
const EAGER_PROBE: Duration = Duration::from_secs(1);
/// How long after the start (or a peer found) unanswered peers are checked eagerly.
const EAGER_FOR: Duration = Duration::from_secs(60);

/// How often entries past the maximum content age are dropped (at most).
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

/// How long before its expiry a node certificate is warned about.
pub const CERT_WARN_AHEAD: Duration = Duration::from_secs(30 * 86_400);

/// Days left before `expires_ms` at `now_ms` (negative once expired); `None` when more
/// than [`CERT_WARN_AHEAD`] are left (or the expiry is unknown).
pub fn cert_days_left(expires_ms: i64, now_ms: i64) -> Option<i64> {
    let left = expires_ms - now_ms;
    (expires_ms > 0 && left < CERT_WARN_AHEAD.as_millis() as i64)
        .then(|| left.div_euclid(86_400_000))
}

/// Logs a warning at start when this node's certificate expires within 30 days.
fn warn_if_expiring(node: &str, expires_ms: i64, now_ms: i64) {
    match cert_days_left(expires_ms, now_ms) {
        Some(d) if d < 0 => tracing::warn!(
            node,
            "this node's fleet certificate has expired: no peer accepts it; renew it with \
             `ferry peers cert renew` on the machine holding the fleet CA"
        ),
        Some(d) => tracing::warn!(
            node,
            days_left = d,
            "this node's fleet certificate expires in {d} days: renew it with \
             `ferry peers cert renew` on the machine holding the fleet CA"
        ),
        None => {}
    }
}

/// What `ferry peers status` shows.
#[derive(Debug, Clone)]
pub struct PeersStatus {
    pub fleet_id: String,
    pub node_name: String,
    pub listen_address: String,
    pub discovery: String,
    pub peers: Vec<PeerInfo>,
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_limit: u64,
    pub bytes_served: u64,
    /// Peers' lookups this node's cache answered, and those it did not have.
    pub lookup_hits: u64,
    pub lookup_misses: u64,
    /// When this node's certificate expires, ms since the Unix epoch.
    pub cert_expires_ms: i64,
}

/// Peer caching, running.
pub struct Peers {
    config: PeersConfig,
    fleet_id: String,
    node_name: String,
    cert_expires_ms: i64,
    listen: SocketAddr,
    cache: Arc<Cache>,
    directory: Arc<Directory>,
    server: Arc<server::ServerState>,
    shares: Arc<shares::Shares>,
    mdns: Option<discovery::Mdns>,
    stop: CancellationToken,
}

impl Peers {
    /// Loads the fleet's trust material, opens the cache, binds the peer port and starts
    /// discovery. Fails with a message naming what is missing or wrong.
    pub async fn start(
        config: &PeersConfig,
        state_dir: &Path,
        store: Arc<Store>,
    ) -> anyhow::Result<Arc<Peers>> {
        let fleet = tls::load(config)?;
        let listener = Self::bind(config)?;
        Self::start_with(config, state_dir, store, fleet, listener).await
    }

    /// Binds the peer port the configuration names.
    pub fn bind(config: &PeersConfig) -> anyhow::Result<std::net::TcpListener> {
        let addr: SocketAddr = format!("{}:{}", config.listen_address, config.port)
            .parse()
            .with_context(|| format!("the peer port's address {}", config.listen_address))?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding the peer port {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// [`Peers::start`] with the fleet's TLS and the peer port already at hand (the
    /// system-wide daemon's cache process gets both from the broker).
    pub async fn start_with(
        config: &PeersConfig,
        state_dir: &Path,
        store: Arc<Store>,
        fleet: tls::FleetTls,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Arc<Peers>> {
        let cache =
            Arc::new(Cache::open(state_dir, store, config).context("opening the peer cache")?);
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let listen = listener.local_addr()?;
        let stop = CancellationToken::new();
        let shares = shares::Shares::new();
        let state = server::ServerState::new(
            cache.clone(),
            shares.clone(),
            fleet.node_name.clone(),
            fleet.fleet_id.clone(),
            config.max_upload_rate,
            config.max_clients,
        );
        tokio::spawn(server::serve(
            listener,
            fleet.server.clone(),
            state.clone(),
            stop.clone(),
        ));
        let directory = Directory::new(
            fleet.client.clone(),
            fleet.fleet_id.clone(),
            config.lookup_timeout,
            config.ban_duration,
            fleet.node_name.clone(),
            shares.clone(),
        )?;
        if config.discovery != Discovery::Mdns {
            discovery::add_static(&directory, &config.static_peers);
        }
        let mdns = if config.discovery != Discovery::Static {
            Some(
                discovery::Mdns::start(
                    directory.clone(),
                    &fleet.node_name,
                    &fleet.fleet_id,
                    listen.port(),
                    stop.clone(),
                )
                .context("starting mDNS discovery")?,
            )
        } else {
            None
        };
        // Unicast DNS-SD runs next to whatever `discovery` says, when it has domains.
        if !config.dns_sd_domains.is_empty() {
            dnssd::start(
                directory.clone(),
                config.dns_sd_domains.clone(),
                fleet.fleet_id.clone(),
                fleet.node_name.clone(),
                config.dns_sd_interval,
                stop.clone(),
            )
            .context("starting DNS-SD browsing")?;
        }
        {
            let directory = directory.clone();
            let cache = cache.clone();
            let stop = stop.clone();
            let every = config.probe_interval.max(Duration::from_millis(200));
            // Short maximum ages (tests, small caches) are enforced within a quarter of them.
            let expire_every = EXPIRE_EVERY.min(config.max_content_age / 4);
            tokio::spawn(async move {
                let mut expired_at = tokio::time::Instant::now();
                // Peers are checked at once at start and when found; one that has not
                // answered yet (its daemon starting too) is checked again every second
                // for a while, so the fleet is used from the start, not an interval later.
                let mut eager_until = tokio::time::Instant::now() + EAGER_FOR;
                loop {
                    directory.probe_all().await;
                    if expired_at.elapsed() >= expire_every {
                        cache.expire();
                        expired_at = tokio::time::Instant::now();
                    }
                    let pause = if tokio::time::Instant::now() < eager_until
                        && directory.some_never_seen()
                    {
                        every.min(EAGER_PROBE)
                    } else {
                        every
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = directory.found_new() => {
                            eager_until = tokio::time::Instant::now() + EAGER_FOR;
                        }
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        cache.expire();
        warn_if_expiring(&fleet.node_name, fleet.node_cert_expires_ms, now_ms());
        tracing::info!(
            fleet = fleet.fleet_id,
            node = fleet.node_name,
            %listen,
            "peer caching on"
        );
        Ok(Arc::new(Peers {
            config: config.clone(),
            fleet_id: fleet.fleet_id,
            node_name: fleet.node_name,
            cert_expires_ms: fleet.node_cert_expires_ms,
            listen,
            cache,
            directory,
            server: state,
            shares,
            mdns,
            stop,
        }))
    }

    /// The engine's view of the fleet.
    pub fn finder(&self) -> Arc<dyn PeerFinder> {
        self.directory.clone()
    }

    /// Copies a file that qualifies into the cache (`file` opened by its owner).
    pub async fn offer(&self, file: std::fs::File, what: Incoming) {
        let url = what.url.clone();
        match self.cache.add(file, what).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(url, "could not add a file to the peer cache: {e:#}"),
        }
    }

    /// True when the cache already holds this content.
    pub fn holds(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> bool {
        self.cache.holds(url, validator, sha256)
    }

    /// Drops the cache's entries of this content and stops sharing any download of it
    /// with the swarm: no peer is offered it any more. How many entries and shares.
    pub fn evict(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize {
        self.cache.evict(url, validator, sha256) + self.shares.withdraw(url, validator, sha256)
    }

    /// The fleet's client, to fetch from `address` if it is a known peer.
    pub fn peer_client(&self, address: &str) -> Option<reqwest::Client> {
        self.directory.client_for(address)
    }

    /// Bans peers whose bytes were rejected.
    pub fn ban(&self, peers: &[String], why: &str) {
        self.directory.ban(peers, why);
    }

    /// Every cache entry, oldest first.
    pub fn entries(&self) -> Vec<CacheEntry> {
        self.cache.entries()
    }

    /// Empties the cache.
    pub fn clear(&self) -> (u64, u64) {
        self.cache.clear()
    }

    /// The fleet, the peers and the cache now.
    pub fn status(&self) -> PeersStatus {
        let (entries, bytes) = self.cache.size();
        PeersStatus {
            fleet_id: self.fleet_id.clone(),
            node_name: self.node_name.clone(),
            listen_address: self.listen.to_string(),
            discovery: match self.config.discovery {
                Discovery::Mdns => "mdns",
                Discovery::Static => "static",
                Discovery::Both => "both",
            }
            .into(),
            peers: self.directory.list(),
            cache_entries: entries,
            cache_bytes: bytes,
            cache_limit: self.cache.limit(),
            bytes_served: self.server.bytes_served.load(Ordering::Relaxed),
            lookup_hits: self.server.lookup_hits.load(Ordering::Relaxed),
            lookup_misses: self.server.lookup_misses.load(Ordering::Relaxed),
            cert_expires_ms: self.cert_expires_ms,
        }
    }

    /// Stops serving, says goodbye on mDNS.
    pub fn shutdown(&self) {
        self.stop.cancel();
        if let Some(m) = &self.mdns {
            m.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cert_days_left;

    #[test]
    fn a_certificate_is_warned_about_thirty_days_ahead() {
        let day = 86_400_000;
        let now = 1_800_000_000_000;
        assert_eq!(cert_days_left(now + 400 * day, now), None);
        assert_eq!(cert_days_left(now + 30 * day, now), None);
        assert_eq!(cert_days_left(now + 30 * day - 1, now), Some(29));
        assert_eq!(cert_days_left(now - 1, now), Some(-1), "expired");
        assert_eq!(cert_days_left(0, now), None, "unknown");
    }
}
