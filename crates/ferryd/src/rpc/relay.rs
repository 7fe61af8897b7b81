//! An administrator's calls that reach other users' jobs, in a worker of the system-wide
//! daemon. Every user's jobs live in that user's worker, so a worker asks the broker
//! ([`Broker`], the port this module owns; `privsep/worker.rs` implements it) for a
//! connection to every other worker, vouched by the broker as the administrator's — the
//! broker checks the credentials it saw when the administrator connected, never this
//! worker's word — and makes the same call there with a plain gRPC client.

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::service::Caller;

/// What the rpc layer asks of the system-wide daemon's broker.
#[tonic::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Connections to every other user's worker, opened for the administrator who made
    /// `connection`; the uid each serves.
    async fn admin_connect(&self, connection: u64) -> Result<Vec<(u32, UnixStream)>, Status>;
    /// Stops the machine's daemon (root only: the broker checks `connection`).
    async fn shutdown(&self, connection: u64) -> Result<(), Status>;
}

/// A gRPC channel over a connection that is already open (used once: no reconnection).
async fn channel(stream: UnixStream) -> Result<Channel, Status> {
    let once = Arc::new(Mutex::new(Some(stream)));
    Endpoint::from_static("http://ferryd.worker")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let stream = once.lock().take();
            async move {
                stream
                    .map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("a relayed connection is used once"))
            }
        }))
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach another user's worker: {e}")))
}

/// The broker of this worker, when `caller` (not itself relayed) is an administrator
/// whose call may go on to other users' workers.
pub(super) fn for_admin<'a>(
    broker: &'a Option<Arc<dyn Broker>>,
    caller: &Caller,
    is_admin: bool,
) -> Option<(&'a Arc<dyn Broker>, u64)> {
    match (broker, caller.connection) {
        (Some(b), Some(conn)) if is_admin && !caller.vouched => Some((b, conn)),
        _ => None,
    }
}

/// Makes `call` on every other user's worker, all at once; each answer with its uid.
pub(super) async fn on_every_worker<T, F, Fut>(
    broker: &Arc<dyn Broker>,
    connection: u64,
    call: F,
) -> Result<Vec<(u32, Result<T, Status>)>, Status>
where
    F: Fn(Channel) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let streams = broker.admin_connect(connection).await?;
    let calls = streams.into_iter().map(|(uid, stream)| {
        let call = &call;
        async move {
            let answer = match channel(stream).await {
                Ok(ch) => call(ch).await,
                Err(e) => Err(e),
            };
            (uid, answer)
        }
    });
    Ok(futures::future::join_all(calls).await)
}

/// Connections to every other user's worker, each a channel that takes several calls (a
/// move of a job between workers makes two on the one that had it); each with its uid.
pub(super) async fn channels_to_every_worker(
    broker: &Arc<dyn Broker>,
    connection: u64,
) -> Result<Vec<(u32, Channel)>, Status> {
    let streams = broker.admin_connect(connection).await?;
    let mut out = Vec::with_capacity(streams.len());
    for (uid, stream) in streams {
        match channel(stream).await {
            Ok(ch) => out.push((uid, ch)),
            Err(e) => tracing::warn!(uid, "the worker of uid {uid} could not be reached: {e}"),
        }
    }
    Ok(out)
}

/// The answer of the worker that has the job: the first success, else the first refusal
/// other than "not found", else "not found" (`missing`).
pub(super) fn the_one_that_has_it<T>(
    answers: Vec<(u32, Result<T, Status>)>,
    missing: Status,
) -> Result<T, Status> {
    let mut refusal = None;
    for (_, a) in answers {
        match a {
            Ok(v) => return Ok(v),
            Err(e) if e.code() == Code::NotFound => {}
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    Err(refusal.unwrap_or(missing))
}
