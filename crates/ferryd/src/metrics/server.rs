//! The metrics endpoint's HTTP/1.1 server: `GET` (or `HEAD`) `/metrics` answers its
//! source's snapshot as OpenMetrics text; any other path is 404, any other method 405.
//! It listens on what `daemon.rs` bound for `[metrics] listen` (in the per-user daemon,
//! or in the system-wide daemon's broker) (a TCP address, or a Unix
//! socket made 0600), serves a few connections at once, each for a bounded time, and
//! stops accepting when the daemon shuts down.
//!
//! May use: `service` (its snapshot), `config`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use super::SharedSource;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// The longest one connection is served (a scraper that never finishes its request is
/// let go).
const CONNECTION_TIME: Duration = Duration::from_secs(60);

/// Where the endpoint listens.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(source: SharedSource, listener: Listener, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(conn) => {
                let source = source.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match conn {
                        Conn::Tcp(s) => serve_connection(source, s).await,
                        Conn::Unix(s) => serve_connection(source, s).await,
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, most likely: try again shortly.
                tracing::warn!("the metrics endpoint: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
    }
}

async fn serve_connection<S>(source: SharedSource, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let source = source.clone();
        async move { Ok::<_, Infallible>(answer(&*source, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIME, conn).await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => tracing::debug!("the metrics endpoint: a connection: {e}"),
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// The answer to one request.
async fn answer(source: &dyn super::Source, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: ferryd serves its metrics at /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "/metrics answers GET and HEAD only\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // hyper sends no body in answer to HEAD, and keeps the length.
    let body = super::encode(&source.snapshot().await);
    text(StatusCode::OK, super::CONTENT_TYPE, body)
}
