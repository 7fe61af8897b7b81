//! The peer port: HTTP/1.1 (hyper) over mutual TLS 1.3 (tokio-rustls). It answers
//! authenticated fleet members only — the TLS handshake refuses anyone without a
//! certificate from the fleet CA — with cache entries, addressed by id or SHA-256, and
//! the servable ranges of downloads under way (`shares`, the swarm) (`protocol`), at most
//! `max_upload_rate` bytes per second in all and to at most `max_clients` peers (distinct
//! certificates) at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use super::protocol::{self, HaveAnswer, LookupAnswer, LookupRequest, Ping};
use super::shares::{Live, Shares};
use crate::engine::ratelimit::{consume_all, RateLimiter};
use crate::model::CacheEntry;

type Body = BoxBody<Bytes, io::Error>;

/// Bytes read from a cache file per step.
const CHUNK: usize = 256 << 10;

/// What the server shares between connections.
pub struct ServerState {
    pub cache: Arc<Cache>,
    /// Downloads under way shared with the fleet (the swarm).
    pub shares: Arc<Shares>,
    pub node: String,
    pub fleet: String,
    pub limits: Vec<Arc<RateLimiter>>,
    pub max_clients: usize,
    /// Peers being served now: certificate hash → responses in flight.
    serving: Mutex<HashMap<[u8; 32], usize>>,
    /// Bytes served since start.
    pub bytes_served: AtomicU64,
    /// Peers' lookups answered from the cache, and not, since start.
    pub lookup_hits: AtomicU64,
    pub lookup_misses: AtomicU64,
    /// Refused handshakes, logged once per address per hour.
    refusals: super::refusals::Refusals,
}

impl ServerState {
    pub fn new(
        cache: Arc<Cache>,
        shares: Arc<Shares>,
        node: String,
        fleet: String,
        max_upload_rate: u64,
        max_clients: usize,
    ) -> Arc<ServerState> {
        let limits = if max_upload_rate > 0 {
            vec![Arc::new(RateLimiter::new(max_upload_rate))]
        } else {
            Vec::new()
        };
        Arc::new(ServerState {
            cache,
            shares,
            node,
            fleet,
            limits,
            max_clients,
            serving: Mutex::new(HashMap::new()),
            bytes_served: AtomicU64::new(0),
            lookup_hits: AtomicU64::new(0),
            lookup_misses: AtomicU64::new(0),
            refusals: super::refusals::Refusals::new(super::refusals::LOG_EVERY),
        })
    }
}

/// A peer being served; frees its slot when the response ends.
struct Slot {
    state: Arc<ServerState>,
    client: [u8; 32],
}

impl Slot {
    fn take(state: &Arc<ServerState>, client: [u8; 32]) -> Option<Slot> {
        let mut serving = state.serving.lock();
        if !serving.contains_key(&client) && serving.len() >= state.max_clients {
            return None;
        }
        *serving.entry(client).or_default() += 1;
        Some(Slot {
            state: state.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut serving = self.state.serving.lock();
        if let Some(n) = serving.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                serving.remove(&self.client);
            }
        }
    }
}

/// Serves the peer port on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ServerState>,
    stop: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("peer port: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    match state.refusals.refused(addr.ip(), std::time::Instant::now()) {
                        Some(unlogged) => tracing::warn!(
                            peer = %addr.ip(),
                            unlogged,
                            "peer port: refused a TLS handshake (a machine of another fleet, \
                             or without a certificate?): {e}; refusals from this address are \
                             logged once an hour"
                        ),
                        None => tracing::debug!(%addr, "peer port: refused a connection: {e}"),
                    }
                    return;
                }
                Err(_) => return,
            };
            let Some(client) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| <[u8; 32]>::from(Sha256::digest(c.as_ref())))
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, client, addr, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%addr, "peer connection ended: {e}");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(format!("{message}\n")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

fn json<T: serde::Serialize>(value: &T) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(
                serde_json::to_vec(value).expect("serializable"),
            ))
            .map_err(|never| match never {})
            .boxed(),
        )
        .expect("a valid response")
}

async fn handle(
    state: &Arc<ServerState>,
    client: [u8; 32],
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, protocol::PING) => json(&Ping {
            node: state.node.clone(),
            fleet: state.fleet.clone(),
        }),
        (&Method::POST, protocol::LOOKUP) => lookup(state, req).await,
        (&Method::POST, protocol::HAVE) => have(state, req).await,
        (&Method::GET | &Method::HEAD, p) if p.starts_with(protocol::PARTIAL) => {
            let id = &p[protocol::PARTIAL.len()..];
            if !protocol::is_id(id) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "a download id is 32 lower-case hex digits",
                );
            }
            partial(state, client, addr, &req, state.shares.get(id))
        }
        (&Method::GET | &Method::HEAD, p) if p.starts_with(protocol::CONTENT) => {
            let id = &p[protocol::CONTENT.len()..];
            if !protocol::is_id(id) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "an entry id is 32 lower-case hex digits",
                );
            }
            content(state, client, addr, &req, state.cache.find(Some(id), None))
        }
        (&Method::GET | &Method::HEAD, p) if p.starts_with(protocol::BY_SHA256) => {
            let sha = &p[protocol::BY_SHA256.len()..];
            if !protocol::is_sha256(sha) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "a SHA-256 is 64 lower-case hex digits",
                );
            }
            content(state, client, addr, &req, state.cache.find(None, Some(sha)))
        }
        (_, protocol::PING | protocol::LOOKUP | protocol::HAVE) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The body of a lookup or have request, checked; the error response otherwise.
async fn lookup_request(req: Request<Incoming>) -> Result<LookupRequest, Response<Body>> {
    let body = match Limited::new(req.into_body(), protocol::MAX_LOOKUP_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "the lookup body is too large or cut",
            ))
        }
    };
    let Ok(r) = serde_json::from_slice::<LookupRequest>(&body) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "the lookup body is not a lookup request",
        ));
    };
    if r.sha256.as_deref().is_some_and(|s| !protocol::is_sha256(s)) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "a SHA-256 is 64 lower-case hex digits",
        ));
    }
    if r.sha256.is_none() && (r.url.is_none() || r.validator.is_none() || r.length.is_none()) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "ask by sha256, or by url, validator and length together",
        ));
    }
    Ok(r)
}

async fn lookup(state: &Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let r = match lookup_request(req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    match state.cache.lookup(&r) {
        Some(e) => {
            state.lookup_hits.fetch_add(1, Ordering::Relaxed);
            json(&LookupAnswer {
                id: e.id,
                length: e.length,
                sha256: e.sha256,
            })
        }
        None => {
            state.lookup_misses.fetch_add(1, Ordering::Relaxed);
            text(StatusCode::NOT_FOUND, "not in this node's cache")
        }
    }
}

/// The answer to a request for bytes that cannot be served.
fn unsatisfiable(length: u64) -> Response<Body> {
    Response::builder()
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
        .header(header::CONTENT_RANGE, format!("bytes */{length}"))
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

/// The answer when the node serves as many peers as it may.
fn busy(addr: SocketAddr) -> Response<Body> {
    tracing::info!(%addr, "peer port: serving as many peers as allowed; refusing one");
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node serves as many peers as it may; ask another or later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

fn content(
    state: &Arc<ServerState>,
    client: [u8; 32],
    addr: SocketAddr,
    req: &Request<Incoming>,
    entry: Option<CacheEntry>,
) -> Response<Body> {
    let Some(entry) = entry else {
        return text(StatusCode::NOT_FOUND, "not in this node's cache");
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let (start, end, status) = match protocol::parse_range(range, entry.length) {
        Ok(Some((a, b))) => (a, b, StatusCode::PARTIAL_CONTENT),
        Ok(None) => (0, entry.length, StatusCode::OK),
        Err(protocol::Unsatisfiable) => return unsatisfiable(entry.length),
    };
    let Some(slot) = Slot::take(state, client) else {
        return busy(addr);
    };
    let file = match state.cache.open_content(&entry) {
        Ok(f) => Arc::new(f),
        Err(_) => return text(StatusCode::NOT_FOUND, "not in this node's cache"),
    };
    send(
        state,
        Sending {
            slot,
            file,
            start,
            end,
            length: entry.length,
            status,
            etag: format!("\"sha256:{}\"", entry.sha256),
            head_only: req.method() == Method::HEAD,
            cache_id: Some(entry.id),
        },
    )
}

/// `POST /v1/have`: the ranges of a content this node serves now.
async fn have(state: &Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let r = match lookup_request(req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    if let Some(e) = state.cache.lookup(&r) {
        return json(&HaveAnswer {
            node: state.node.clone(),
            id: e.id,
            length: e.length,
            complete: true,
            cached: true,
            ranges: vec![[0, e.length]],
            pending: Vec::new(),
        });
    }
    let Some(live) = state.shares.find(&r) else {
        return text(
            StatusCode::NOT_FOUND,
            "this node neither holds nor fetches it",
        );
    };
    let ranges: Vec<[u64; 2]> = live.ranges.durable().iter().map(|&(a, b)| [a, b]).collect();
    json(&HaveAnswer {
        node: state.node.clone(),
        id: live.id.clone(),
        length: live.length,
        complete: ranges == [[0, live.length]],
        cached: false,
        ranges,
        pending: live.ranges.pending().iter().map(|&(a, b)| [a, b]).collect(),
    })
}

/// `GET /v1/partial/ID`: a range of a download under way, if servable.
fn partial(
    state: &Arc<ServerState>,
    client: [u8; 32],
    addr: SocketAddr,
    req: &Request<Incoming>,
    live: Option<Arc<Live>>,
) -> Response<Body> {
    let Some(live) = live else {
        return text(
            StatusCode::NOT_FOUND,
            "no such download here (finished or stopped)",
        );
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let (start, end) = match protocol::parse_range(range, live.length) {
        Ok(Some(r)) => r,
        Ok(None) => (0, live.length),
        Err(protocol::Unsatisfiable) => return unsatisfiable(live.length),
    };
    if !live.servable(start, end) {
        return unsatisfiable(live.length);
    }
    let Some(slot) = Slot::take(state, client) else {
        return busy(addr);
    };
    let file = match live.file.try_clone() {
        Ok(f) => Arc::new(f),
        Err(_) => return text(StatusCode::NOT_FOUND, "no such download here"),
    };
    send(
        state,
        Sending {
            slot,
            file,
            start,
            end,
            length: live.length,
            status: StatusCode::PARTIAL_CONTENT,
            etag: format!("\"swarm:{}\"", live.id),
            head_only: req.method() == Method::HEAD,
            cache_id: None,
        },
    )
}

/// The bytes of a cache entry a response sent: recorded in the entry (its served count
/// and last use) when the response's body is dropped, whether it ended or was cut.
struct ServedTally {
    state: Arc<ServerState>,
    cache_id: Option<String>,
    bytes: u64,
}

impl Drop for ServedTally {
    fn drop(&mut self) {
        if let Some(id) = &self.cache_id {
            if self.bytes > 0 {
                self.state.cache.served(id, self.bytes);
            }
        }
    }
}

/// A response body read from a file.
struct Sending {
    slot: Slot,
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
    length: u64,
    status: StatusCode,
    etag: String,
    head_only: bool,
    /// The cache entry served (its statistics).
    cache_id: Option<String>,
}

fn send(state: &Arc<ServerState>, s: Sending) -> Response<Body> {
    let Sending {
        slot,
        file,
        start,
        end,
        length,
        status,
        etag,
        head_only,
        cache_id,
    } = s;
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{length}", end - 1),
        );
    }
    if head_only {
        return builder
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("a valid response");
    }
    let st = state.clone();
    // hyper drops a body once it has sent its Content-Length, without asking it for its
    // end: the tally counts what was read for the peer and records it when dropped.
    let tally = ServedTally {
        state: state.clone(),
        cache_id,
        bytes: 0,
    };
    let stream = futures::stream::unfold((start, slot, tally), move |(at, slot, mut tally)| {
        let file = file.clone();
        let st = st.clone();
        async move {
            if at >= end {
                return None;
            }
            let want = CHUNK.min((end - at) as usize);
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, at).map(|_| buf)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
            match read {
                Ok(buf) => {
                    consume_all(&st.limits, buf.len()).await;
                    st.bytes_served
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    let n = buf.len() as u64;
                    tally.bytes += n;
                    Some((Ok(Frame::data(Bytes::from(buf))), (at + n, slot, tally)))
                }
                Err(e) => Some((Err(e), (end, slot, tally))),
            }
        }
    });
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a valid response")
}
