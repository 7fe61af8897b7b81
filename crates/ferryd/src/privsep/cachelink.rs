//! A worker's side of peer caching in the system-wide daemon: the machine's cache
//! process holds the fleet's identity, the cache and the peer port (`cache.rs`), so a
//! worker's [`CacheLink`] is its service's `PeerCache` and its engine's `PeerFinder`,
//! asking the cache process on its local socket and fetching ranges through its gateway.
//! Files and shared downloads go over as descriptors the worker opened as its user.
//! While the cache process is away (restarting), a worker finds no peers and offers
//! nothing: its downloads go to the origins.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::cache_protocol::{Answer, Ask, Query};
use super::ipc;
use super::protocol::{Refusal, RefusalKind};
use crate::engine::swarm::{Holder, ShareGuard, SharedDownload};
use crate::engine::{ContentQuery, PeerFinder, PeerOffer};
use crate::model::CacheEntry;
use crate::peers::{Found, Incoming, PeerInfo, PeerState, PeersStatus};
use crate::service::{PeerCache, ServiceError};

/// How long a request to the cache process may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a shared download's ranges are sent to the cache process.
const SHARE_EVERY: Duration = Duration::from_millis(200);

/// A worker's link to the machine's cache process.
pub struct CacheLink {
    socket: PathBuf,
    /// Requests to peers, through the gateway's Unix socket.
    gateway: reqwest::Client,
    conn: tokio::sync::Mutex<Option<ipc::Sender>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    next: AtomicU64,
    node: Mutex<String>,
    this: std::sync::Weak<CacheLink>,
}

impl CacheLink {
    /// A link to the cache process on `socket`, fetching through the gateway on
    /// `gateway`; it connects when first needed (and again after the cache process
    /// restarted).
    pub async fn start(socket: PathBuf, gateway: PathBuf) -> anyhow::Result<Arc<CacheLink>> {
        let client = reqwest::Client::builder()
            .unix_socket(gateway)
            .no_proxy()
            .build()?;
        let link = Arc::new_cyclic(|this| CacheLink {
            socket,
            gateway: client,
            conn: tokio::sync::Mutex::new(None),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next: AtomicU64::new(1),
            node: Mutex::new(String::new()),
            this: this.clone(),
        });
        // The node's name (the swarm's rendezvous key), once the cache process answers.
        let request = link.next.fetch_add(1, Ordering::Relaxed);
        if let Some(Answer::Node { node, .. }) =
            link.ask(request, Ask::Node { request }, None).await
        {
            *link.node.lock() = node;
        }
        Ok(link)
    }

    /// The current connection, made if needed.
    async fn sender(&self) -> Option<ipc::Sender> {
        let mut conn = self.conn.lock().await;
        if let Some(tx) = conn.as_ref() {
            return Some(tx.clone());
        }
        let stream = match std::os::unix::net::UnixStream::connect(&self.socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("the cache process is not reachable: {e}");
                return None;
            }
        };
        let (tx, mut rx) = ipc::link(stream).ok()?;
        let pending = self.pending.clone();
        let this = self.this.clone();
        tokio::spawn(async move {
            while let Ok(Some((answer, _))) = rx.recv::<Answer>().await {
                if let Some(waiter) = pending.lock().remove(&answer.request()) {
                    let _ = waiter.send(answer);
                }
            }
            // The cache process went away: the next request connects again.
            if let Some(link) = this.upgrade() {
                *link.conn.lock().await = None;
            }
            pending.lock().clear();
        });
        *conn = Some(tx.clone());
        Some(tx)
    }

    fn request_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `ask` (numbered `request`) with `file` attached; the answer, if one came.
    async fn ask(&self, request: u64, ask: Ask, file: Option<&std::fs::File>) -> Option<Answer> {
        let tx = self.sender().await?;
        let (done, answer) = oneshot::channel();
        self.pending.lock().insert(request, done);
        let fds: Vec<_> = file.iter().map(|f| f.as_fd()).collect();
        if tx.send(&ask, &fds).await.is_err() {
            self.pending.lock().remove(&request);
            return None;
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(a)) => Some(a),
            _ => {
                self.pending.lock().remove(&request);
                None
            }
        }
    }

    /// Sends `ask`, expecting no answer, without waiting.
    fn tell(&self, ask: Ask) {
        let Some(link) = self.this.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Some(tx) = link.sender().await {
                let _ = tx.send(&ask, &[]).await;
            }
        });
    }

    fn unavailable() -> ServiceError {
        ServiceError::Unavailable(
            "the machine's cache process does not answer (it may be restarting): try again".into(),
        )
    }
}

fn wire(q: &ContentQuery) -> Query {
    Query {
        url: q.url.clone(),
        validator: q.validator.clone(),
        length: q.length,
        sha256: q.sha256.clone(),
    }
}

fn refusal(r: Refusal) -> ServiceError {
    match r.kind {
        RefusalKind::PermissionDenied => ServiceError::PermissionDenied(r.message),
        RefusalKind::ResourceExhausted => ServiceError::ResourceExhausted(r.message),
        RefusalKind::Unavailable => ServiceError::Unavailable(r.message),
    }
}

/// A peer's URL as a worker fetches it: plain HTTP to the gateway, which speaks the
/// fleet's TLS to the peer.
fn through_gateway(url: String) -> String {
    match url.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => url,
    }
}

#[async_trait::async_trait]
impl PeerFinder for CacheLink {
    async fn find(&self, query: &ContentQuery) -> Vec<PeerOffer> {
        let request = self.request_id();
        let ask = Ask::Find {
            request,
            query: wire(query),
        };
        match self.ask(request, ask, None).await {
            Some(Answer::Found { offers, .. }) => offers
                .into_iter()
                .map(|o| PeerOffer {
                    peer: o.peer,
                    content_url: through_gateway(o.content_url),
                    length: o.length,
                    sha256: o.sha256,
                    client: self.gateway.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn fetched(&self, peer: &str, bytes: u64) {
        self.tell(Ask::Fetched {
            peer: peer.into(),
            bytes,
        });
    }

    fn failed(&self, peer: &str, why: &str) {
        self.tell(Ask::Failed {
            peer: peer.into(),
            why: why.into(),
        });
    }

    fn ban(&self, peers: &[String], why: &str) {
        self.tell(Ask::Ban {
            peers: peers.to_vec(),
            why: why.into(),
        });
    }

    fn node(&self) -> String {
        self.node.lock().clone()
    }

    fn share(&self, download: SharedDownload) -> ShareGuard {
        let share = self.request_id();
        let stop = CancellationToken::new();
        if let Some(link) = self.this.upgrade() {
            let stop = stop.clone();
            tokio::spawn(async move {
                let Some(tx) = link.sender().await else {
                    return;
                };
                let ask = Ask::Share {
                    share,
                    query: wire(&download.query),
                    length: download.length,
                };
                if tx.send(&ask, &[download.file.as_fd()]).await.is_err() {
                    return;
                }
                let mut last = None;
                loop {
                    let now = (download.ranges.durable(), download.ranges.pending());
                    if last.as_ref() != Some(&now) {
                        let (durable, pending) = now.clone();
                        let ask = Ask::ShareRanges {
                            share,
                            durable,
                            pending,
                        };
                        if tx.send(&ask, &[]).await.is_err() {
                            return;
                        }
                        last = Some(now);
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(SHARE_EVERY) => {}
                    }
                }
                let _ = tx.send(&Ask::Unshare { share }, &[]).await;
            });
        }
        Box::new(stop.drop_guard())
    }

    async fn holders(&self, query: &ContentQuery) -> Vec<Holder> {
        let request = self.request_id();
        let ask = Ask::Holders {
            request,
            query: wire(query),
        };
        match self.ask(request, ask, None).await {
            Some(Answer::Holders { holders, .. }) => holders
                .into_iter()
                .map(|h| Holder {
                    peer: h.peer,
                    node: h.node,
                    content_url: through_gateway(h.content_url),
                    length: h.length,
                    complete: h.complete,
                    ranges: h.ranges,
                    pending: h.pending,
                    client: self.gateway.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl PeerCache for CacheLink {
    fn finder(&self) -> Arc<dyn PeerFinder> {
        self.this.upgrade().expect("alive while called")
    }

    async fn offer(&self, file: std::fs::File, what: Incoming) {
        let request = self.request_id();
        let url = what.url.clone();
        let ask = Ask::Offer {
            request,
            url: what.url,
            validator: what.validator,
            sha256: what.sha256,
        };
        match self.ask(request, ask, Some(&file)).await {
            Some(Answer::Done { result: Ok(_), .. }) => {}
            Some(Answer::Done { result: Err(r), .. }) => {
                tracing::warn!(url, "the cache process refused a file: {}", r.message)
            }
            _ => tracing::info!(
                url,
                "not offered to peers: the cache process does not answer"
            ),
        }
    }

    async fn holds(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> bool {
        let request = self.request_id();
        let query = Query {
            url: url.into(),
            validator: validator.map(Into::into),
            length: None,
            sha256: sha256.map(Into::into),
        };
        matches!(
            self.ask(request, Ask::Holds { request, query }, None).await,
            Some(Answer::Done { result: Ok(1), .. })
        )
    }

    async fn evict(&self, url: &str, validator: Option<&str>, sha256: Option<&str>) -> usize {
        let request = self.request_id();
        let query = Query {
            url: url.into(),
            validator: validator.map(Into::into),
            length: None,
            sha256: sha256.map(Into::into),
        };
        match self.ask(request, Ask::Evict { request, query }, None).await {
            Some(Answer::Done { result: Ok(n), .. }) => n as usize,
            _ => 0,
        }
    }

    fn ban(&self, peers: &[String], why: &str) {
        PeerFinder::ban(self, peers, why)
    }

    async fn entries(&self) -> Result<Vec<CacheEntry>, ServiceError> {
        let request = self.request_id();
        match self.ask(request, Ask::Entries { request }, None).await {
            Some(Answer::Entries { result, .. }) => result
                .map(|v| v.into_iter().map(CacheEntry::from).collect())
                .map_err(refusal),
            _ => Err(Self::unavailable()),
        }
    }

    async fn clear(&self) -> Result<(u64, u64), ServiceError> {
        let before = self.status().await.map(|s| s.cache_bytes).unwrap_or(0);
        let request = self.request_id();
        match self.ask(request, Ask::Clear { request }, None).await {
            Some(Answer::Done { result, .. }) => result.map(|n| (n, before)).map_err(refusal),
            _ => Err(Self::unavailable()),
        }
    }

    async fn status(&self) -> Result<PeersStatus, ServiceError> {
        let request = self.request_id();
        let s = match self.ask(request, Ask::Status { request }, None).await {
            Some(Answer::Status { result, .. }) => result.map_err(refusal)?,
            _ => return Err(Self::unavailable()),
        };
        Ok(PeersStatus {
            fleet_id: s.fleet_id,
            node_name: s.node_name,
            listen_address: s.listen_address,
            discovery: s.discovery,
            peers: s
                .peers
                .into_iter()
                .map(|p| PeerInfo {
                    name: p.name,
                    address: p.address,
                    found: match p.found.as_str() {
                        "mdns" => Found::Mdns,
                        "dnssd" => Found::DnsSd,
                        _ => Found::Static,
                    },
                    state: match p.state.as_str() {
                        "up" => PeerState::Up,
                        "unreachable" => PeerState::Unreachable,
                        "banned" => PeerState::Banned,
                        _ => PeerState::New,
                    },
                    last_seen_ms: p.last_seen_ms,
                    banned_until_ms: p.banned_until_ms,
                    bytes_fetched: p.bytes_fetched,
                    failures: p.failures,
                    last_error: p.last_error,
                })
                .collect(),
            cache_entries: s.cache_entries,
            cache_bytes: s.cache_bytes,
            cache_limit: s.cache_limit,
            bytes_served: s.bytes_served,
            lookup_hits: s.lookup_hits,
            lookup_misses: s.lookup_misses,
            cert_expires_ms: s.cert_expires_ms,
        })
    }

    fn shutdown(&self) {}
}
