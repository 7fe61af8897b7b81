//! The end of the gRPC server at shutdown.
//!
//! tonic's graceful shutdown stops accepting, sends every connection a `GOAWAY` and waits
//! until each stream on it has ended. A client that stopped reading a stream (an
//! `ExecQuery` it does not consume: its flow-control window fills, the stream cannot send
//! its last frames) holds that wait for as long as it likes, and ferryd's whole shutdown
//! with it (up to `drain_timeout`). So the drain waits for the calls in progress to answer
//! (their handlers to return: a `CompleteJob` under way still gets its reply; at most
//! [`CALLS`]), then gives
//! the connections [`FLUSH`] to send what is queued — the `UNAVAILABLE` that ends each
//! stream at shutdown included, which waits at most `SHUTDOWN_NOTICE_TIMEOUT` for room —
//! and then severs the connections still open: their reads and writes fail, and the server
//! drops them. A client that reads has had its answers, and its streams' ends, by then.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::peer::PeerStream;

/// How long the connections get to send what is queued once every call has answered.
const FLUSH: Duration = Duration::from_secs(2);
/// The longest the drain waits for the calls in progress to answer: a handler that does
/// not return (one waiting on what the shutdown itself stops) must not hold the daemon.
const CALLS: Duration = Duration::from_secs(5);

/// The server's drain: the calls in progress, the stop and the severing of connections.
#[derive(Clone)]
pub struct Drain {
    /// How many calls have not answered yet (a streaming call answers when its stream
    /// starts).
    open_calls: Arc<watch::Sender<usize>>,
    /// Cancelled when the server stops accepting (tonic's graceful shutdown begins).
    stop: CancellationToken,
    /// Cancelled to sever the connections still open.
    sever: CancellationToken,
}

impl Drain {
    pub(super) fn new() -> Drain {
        Drain {
            open_calls: Arc::new(watch::channel(0).0),
            stop: CancellationToken::new(),
            sever: CancellationToken::new(),
        }
    }

    /// `conn`, made so that the drain can sever it.
    pub fn severable(&self, conn: PeerStream) -> PeerStream {
        conn.severed_by(self.sever.clone())
    }

    /// The layer that counts the calls in progress.
    pub fn layer(&self) -> CountCalls {
        CountCalls(self.open_calls.clone())
    }

    /// Resolves when the server is to stop accepting: tonic's shutdown signal.
    pub fn stopped(&self) -> WaitForCancellationFutureOwned {
        self.stop.clone().cancelled_owned()
    }

    /// Runs `server` until `shutdown` resolves, then drains it as the module says.
    pub async fn run<E>(
        &self,
        server: impl Future<Output = Result<(), E>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), E> {
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => return r,
            _ = shutdown => {}
        }
        self.stop.cancel();
        let settled = async {
            let mut calls = self.open_calls.subscribe();
            if tokio::time::timeout(CALLS, calls.wait_for(|n| *n == 0))
                .await
                .is_err()
            {
                let left = *calls.borrow();
                tracing::warn!(
                    "{left} call(s) still unanswered {CALLS:?} after the shutdown began: their \
                     connections are closed anyway"
                );
            }
            tokio::time::sleep(FLUSH).await;
        };
        tokio::select! {
            r = &mut server => return r,
            _ = settled => {}
        }
        tracing::info!(
            "closing the connections still open {FLUSH:?} after every call answered: their \
             clients do not read what they were sent"
        );
        self.sever.cancel();
        server.await
    }
}

/// Counts the calls whose handler has not answered yet ([`Drain::layer`]).
#[derive(Clone)]
pub struct CountCalls(Arc<watch::Sender<usize>>);

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            open_calls: self.0.clone(),
        }
    }
}

/// A service whose calls are counted while their handler runs.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    open_calls: Arc<watch::Sender<usize>>,
}

/// One call in progress; counted down when dropped.
struct OpenCall(Arc<watch::Sender<usize>>);

impl OpenCall {
    fn new(open_calls: Arc<watch::Sender<usize>>) -> OpenCall {
        open_calls.send_modify(|n| *n += 1);
        OpenCall(open_calls)
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let open = OpenCall::new(self.open_calls.clone());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            drop(open);
            r
        })
    }
}
