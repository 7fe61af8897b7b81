//! The peers this node knows (found by mDNS or unicast DNS-SD, or listed statically), their state, and the
//! client side of the peer protocol: asking them who has a content ([`PeerFinder`], the
//! engine's interface), checking them every `probe_interval`, and banning those whose
//! bytes failed a check. A discovered peer that fails two checks is dropped (discovery
//! finds it again when it answers or announces itself); a static one stays, unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::protocol::{self, HaveAnswer, LookupAnswer, LookupRequest, Ping};
use super::shares::Shares;
use crate::engine::swarm::{Holder, ShareGuard, SharedDownload};
use crate::engine::{ContentQuery, PeerFinder, PeerOffer};
use crate::model::now_ms;

/// How a peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Mdns,
    Static,
    /// Unicast DNS-SD: SRV/TXT records in the site's DNS (`dns_sd_domains`).
    DnsSd,
}

/// What this node makes of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Up,
    Unreachable,
    Banned,
}

/// One known peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Instance name (mDNS) or address (static).
    pub name: String,
    /// host:port.
    pub address: String,
    pub found: Found,
    pub state: PeerState,
    pub last_seen_ms: i64,
    pub banned_until_ms: i64,
    pub bytes_fetched: u64,
    pub failures: u32,
    pub last_error: String,
}

/// A discovered peer is dropped after this many failed checks in a row.
const DROP_AFTER: u32 = 2;
/// How long one check may take.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one swarm poll of a peer may take.
const HAVE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Directory {
    peers: Mutex<HashMap<String, PeerInfo>>,
    client: reqwest::Client,
    fleet: String,
    lookup_timeout: Duration,
    ban: Duration,
    /// This node's name.
    node: String,
    /// Downloads under way this node shares.
    shares: Arc<Shares>,
    /// Wakes the prober: a peer was found that has not been checked yet.
    found_new: tokio::sync::Notify,
}

impl Directory {
    pub fn new(
        client_tls: rustls::ClientConfig,
        fleet: String,
        lookup_timeout: Duration,
        ban: Duration,
        node: String,
        shares: Arc<Shares>,
    ) -> anyhow::Result<Arc<Directory>> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Arc::new(Directory {
            peers: Mutex::new(HashMap::new()),
            client,
            fleet,
            lookup_timeout,
            ban,
            node,
            shares,
            found_new: tokio::sync::Notify::new(),
        }))
    }

    /// Adds (or refreshes) a peer.
    pub fn add(&self, name: &str, address: &str, found: Found) {
        let mut peers = self.peers.lock();
        match peers.get_mut(address) {
            Some(p) => {
                if found != Found::Static {
                    p.name = name.to_string();
                }
            }
            None => {
                tracing::info!(peer = name, address, ?found, "peer found");
                peers.insert(
                    address.to_string(),
                    PeerInfo {
                        name: name.to_string(),
                        address: address.to_string(),
                        found,
                        state: PeerState::New,
                        last_seen_ms: 0,
                        banned_until_ms: 0,
                        bytes_fetched: 0,
                        failures: 0,
                        last_error: String::new(),
                    },
                );
                // Checked now, not at the next round of checks.
                self.found_new.notify_one();
            }
        }
    }

    /// Returns when a peer not checked yet was found since the last call.
    pub async fn found_new(&self) {
        self.found_new.notified().await
    }

    /// True while some peer has never answered (not checked yet, or down since this
    /// daemon started): the prober checks it again soon rather than at its interval.
    pub fn some_never_seen(&self) -> bool {
        self.peers
            .lock()
            .values()
            .any(|p| p.last_seen_ms == 0 && p.state != PeerState::Banned)
    }

    /// Forgets a discovered peer (its mDNS record went away).
    pub fn remove_named(&self, name: &str) {
        let mut peers = self.peers.lock();
        peers.retain(|_, p| {
            let keep = p.found == Found::Static || p.name != name;
            if !keep {
                tracing::info!(peer = name, "peer gone");
            }
            keep
        });
    }

    /// Every known peer, by address.
    pub fn list(&self) -> Vec<PeerInfo> {
        let now = now_ms();
        let mut v: Vec<PeerInfo> = self
            .peers
            .lock()
            .values()
            .cloned()
            .map(|mut p| {
                if p.state == PeerState::Banned && p.banned_until_ms <= now {
                    p.state = PeerState::New;
                }
                p
            })
            .collect();
        v.sort_by(|a, b| a.address.cmp(&b.address));
        v
    }

    fn usable(&self) -> Vec<String> {
        let now = now_ms();
        self.peers
            .lock()
            .values()
            .filter(|p| match p.state {
                PeerState::Banned => p.banned_until_ms <= now,
                PeerState::Unreachable => false,
                _ => true,
            })
            .map(|p| p.address.clone())
            .collect()
    }

    /// The fleet's client, to fetch from `address` if it is a peer this node knows
    /// (the system-wide daemon's gateway fetches for the workers).
    pub fn client_for(&self, address: &str) -> Option<reqwest::Client> {
        self.peers
            .lock()
            .contains_key(address)
            .then(|| self.client.clone())
    }

    fn url(address: &str, path: &str) -> String {
        format!("https://{address}{path}")
    }

    fn note(&self, address: &str, ok: bool, why: &str) {
        let mut peers = self.peers.lock();
        let Some(p) = peers.get_mut(address) else {
            return;
        };
        if ok {
            p.failures = 0;
            p.last_seen_ms = now_ms();
            if p.state != PeerState::Banned || p.banned_until_ms <= now_ms() {
                p.state = PeerState::Up;
            }
            p.last_error.clear();
            return;
        }
        p.failures += 1;
        p.last_error = why.to_string();
        if p.state != PeerState::Banned {
            p.state = PeerState::Unreachable;
        }
        if p.found != Found::Static && p.failures >= DROP_AFTER {
            tracing::info!(
                peer = p.name,
                address,
                "peer stopped answering; dropped: {why}"
            );
            peers.remove(address);
        }
    }

    /// Checks every peer once.
    pub async fn probe_all(&self) {
        let addresses: Vec<String> = self.peers.lock().keys().cloned().collect();
        let checks = addresses.into_iter().map(|address| async move {
            let r = tokio::time::timeout(
                PING_TIMEOUT,
                self.client.get(Self::url(&address, protocol::PING)).send(),
            )
            .await;
            let outcome = match r {
                Err(_) => Err("no answer".to_string()),
                Ok(Err(e)) => Err(error_chain(&e)),
                Ok(Ok(resp)) if resp.status().is_success() => match resp
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Ping>(&b).map_err(|e| e.to_string()))
                {
                    Ok(p) if p.fleet == self.fleet => Ok(()),
                    Ok(p) => Err(format!("it belongs to fleet {}", p.fleet)),
                    Err(e) => Err(format!("bad answer: {e}")),
                },
                Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
            };
            match outcome {
                Ok(()) => self.note(&address, true, ""),
                Err(why) => self.note(&address, false, &why),
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Asks one peer; its answer if it has the content.
    async fn ask(&self, address: &str, req: &LookupRequest) -> Option<LookupAnswer> {
        self.post_json::<LookupAnswer>(address, protocol::LOOKUP, req)
            .await
            .filter(|a| protocol::is_id(&a.id) && protocol::is_sha256(&a.sha256))
    }

    /// Asks one peer which ranges of a content it holds.
    async fn ask_have(&self, address: &str, req: &LookupRequest) -> Option<HaveAnswer> {
        let a = self
            .post_json::<HaveAnswer>(address, protocol::HAVE, req)
            .await?;
        let sane = |v: &[[u64; 2]]| {
            v.len() <= protocol::MAX_RANGES && v.iter().all(|[s, e]| s < e && *e <= a.length)
        };
        (protocol::is_id(&a.id) && sane(&a.ranges) && sane(&a.pending)).then_some(a)
    }

    /// POSTs `req` as JSON to `path` on one peer and reads a JSON answer of a `200`;
    /// notes whether the peer answered at all (any status) or could not be reached.
    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        req: &LookupRequest,
    ) -> Option<T> {
        let resp = self
            .client
            .post(Self::url(address, path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(req).unwrap_or_default())
            .send()
            .await;
        match resp {
            Err(e) => {
                self.note(address, false, &error_chain(&e));
                None
            }
            Ok(r) => {
                self.note(address, true, "");
                if r.status() != reqwest::StatusCode::OK {
                    return None;
                }
                serde_json::from_slice::<T>(&r.bytes().await.ok()?).ok()
            }
        }
    }
}

/// An error with its sources (a TLS refusal hides inside reqwest's "error sending
/// request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait::async_trait]
impl PeerFinder for Directory {
    async fn find(&self, query: &ContentQuery) -> Vec<PeerOffer> {
        let req = LookupRequest {
            sha256: query.sha256.clone(),
            url: query.sha256.is_none().then(|| query.url.clone()),
            validator: query
                .sha256
                .is_none()
                .then(|| query.validator.clone())
                .flatten(),
            length: query.sha256.is_none().then_some(query.length).flatten(),
        };
        let peers = self.usable();
        if peers.is_empty() {
            return Vec::new();
        }
        let asks = peers.iter().map(|address| {
            let req = &req;
            async move {
                let answer =
                    tokio::time::timeout(self.lookup_timeout, self.ask(address, req)).await;
                answer.ok().flatten().map(|a| PeerOffer {
                    peer: address.clone(),
                    content_url: Self::url(address, &format!("{}{}", protocol::CONTENT, a.id)),
                    length: a.length,
                    sha256: a.sha256,
                    client: self.client.clone(),
                })
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn fetched(&self, peer: &str, bytes: u64) {
        if let Some(p) = self.peers.lock().get_mut(peer) {
            p.bytes_fetched += bytes;
        }
    }

    fn failed(&self, peer: &str, why: &str) {
        self.note(peer, false, why);
    }

    fn node(&self) -> String {
        self.node.clone()
    }

    fn share(&self, download: SharedDownload) -> ShareGuard {
        self.shares.add(download)
    }

    async fn holders(&self, query: &ContentQuery) -> Vec<Holder> {
        let req = LookupRequest {
            sha256: query.sha256.clone(),
            url: Some(query.url.clone()),
            validator: query.validator.clone(),
            length: query.length,
        };
        let asks = self.usable().into_iter().map(|address| {
            let req = &req;
            async move {
                let a = tokio::time::timeout(HAVE_TIMEOUT, self.ask_have(&address, req))
                    .await
                    .ok()
                    .flatten()?;
                let path = if a.cached {
                    protocol::CONTENT
                } else {
                    protocol::PARTIAL
                };
                Some(Holder {
                    content_url: Self::url(&address, &format!("{path}{}", a.id)),
                    peer: address,
                    node: a.node,
                    length: a.length,
                    complete: a.complete,
                    ranges: a.ranges.iter().map(|&[s, e]| (s, e)).collect(),
                    pending: a.pending.iter().map(|&[s, e]| (s, e)).collect(),
                    client: self.client.clone(),
                })
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn ban(&self, peers: &[String], why: &str) {
        let until = now_ms() + self.ban.as_millis() as i64;
        let mut known = self.peers.lock();
        for address in peers {
            if let Some(p) = known.get_mut(address) {
                tracing::warn!(peer = p.name, address, "peer banned: {why}");
                p.state = PeerState::Banned;
                p.banned_until_ms = until;
                p.last_error = why.to_string();
            }
        }
    }
}
