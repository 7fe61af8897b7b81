//! The cache process's gateway: workers fetch content ranges from the fleet's peers
//! through it, since only the cache process holds the fleet's identity. A worker sends a
//! plain HTTP/1.1 `GET http://PEER/v1/content/ID` (or `/v1/sha256/…`, `/v1/partial/…`)
//! with its `Range` on the gateway's Unix socket; the gateway makes the same request to
//! `https://PEER/…` over the fleet's mutual TLS and streams the answer back. It is no
//! open proxy: only `GET`, only those paths, only to peers this node knows, and nothing
//! but `Range` is passed on.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};

use crate::peers::protocol::{BY_SHA256, CONTENT, PARTIAL};
use crate::peers::Peers;

type Body = BoxBody<Bytes, io::Error>;

/// Serves the gateway on `listener` until the process ends.
pub async fn serve(listener: tokio::net::UnixListener, peers: Arc<Peers>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("the peer gateway: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let peers = peers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let peers = peers.clone();
                async move { Ok::<_, Infallible>(forward(&peers, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
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

/// The peer's address a request names (its `Host`).
fn peer_of(req: &Request<Incoming>) -> Option<String> {
    req.uri().authority().map(|a| a.to_string()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    })
}

async fn forward(peers: &Peers, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the gateway forwards GET only",
        );
    }
    let path = req.uri().path().to_string();
    if ![CONTENT, BY_SHA256, PARTIAL]
        .iter()
        .any(|p| path.starts_with(p))
        || path.contains("..")
    {
        return text(StatusCode::FORBIDDEN, "not a path of the peer protocol");
    }
    let Some(peer) = peer_of(&req) else {
        return text(StatusCode::BAD_REQUEST, "no peer named (Host)");
    };
    let Some(client) = peers.peer_client(&peer) else {
        return text(StatusCode::FORBIDDEN, "not a peer this node knows");
    };
    let mut upstream = client.get(format!("https://{peer}{path}"));
    if let Some(range) = req.headers().get(header::RANGE) {
        upstream = upstream.header(header::RANGE, range.clone());
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("the peer {peer} did not answer: {e}"),
            )
        }
    };
    let mut out = Response::builder().status(answer.status().as_u16());
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
    ] {
        if let Some(v) = answer.headers().get(&name) {
            out = out.header(name, v.clone());
        }
    }
    let body = StreamBody::new(
        answer
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(io::Error::other),
    );
    out.body(BodyExt::boxed(body))
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "a malformed answer"))
}
