//! The gRPC server on the Unix socket: peer-credential checks on every call, server
//! reflection (`grpc.reflection.v1` and `v1alpha`), and the five services of `ferry.v1`,
//! one file each:
//!
//! - `jobs.rs`: `Jobs` (create, add files, get, list, resume, suspend, cancel, complete,
//!   set properties, watch);
//! - `notifications.rs`: `Notifications` (the `Connect` callback channel, notify
//!   interfaces, class objects, handlers, validation);
//! - `queries.rs`: `Queries` (WQL data and event queries, method calls);
//! - `daemon.rs`: `Daemon` (status, shutdown);
//! - `peers.rs`: `Peers` (peer caching: status, the cache);
//!
//! `convert.rs` for model ↔ wire, `peer.rs` for who is calling (the kernel's credentials
//! of each connection), `accept.rs` for an accept loop that waits (rather than spins)
//! while ferryd is out of descriptors, `reflection.rs` for server reflection, and
//! `drain.rs` for the end of the server at shutdown. Handlers decode the request, call the service
//! facade (`crate::service`) with the caller, and encode its answer.
//!
//! May use: `service` (the facade, and what it re-exports), `model`, `config`. The only
//! module that knows the wire types.

mod accept;
pub mod convert;
mod daemon;
mod drain;
mod jobs;
mod notifications;
mod peer;
mod peers;
mod queries;
mod reflection;
mod relay;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1 as pb;
use futures::Stream;
use futures::StreamExt;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::service::{validate, Caller, Service};
use peer::Peer;
pub use peer::{peer_credentials, PeerStream};
pub use relay::Broker;

/// The stream type of every streaming call.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Largest message either way (a `ListJobs` page stays far below it; see `jobs.rs`).
const MAX_MESSAGE: usize = 64 << 20;

/// How long a stream ended by a shutdown waits for room to say so.
const SHUTDOWN_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// Who is calling: the peer's credentials (the interceptor has already checked them),
/// for a call that acts as the caller. A connection the broker opened for an
/// administrator serves only the calls an administrator may make on another user's jobs
/// (see [`admin_caller`]); everything else is refused on it.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    let c = admin_caller(req)?;
    if c.vouched {
        return Err(Status::permission_denied(
            "an administrator may look at, resume, suspend, cancel, complete, add files to, \
             change (properties and URLs) and take over another user's jobs, nothing else",
        ));
    }
    Ok(c)
}

/// Who is calling, for the calls an administrator may make on another user's jobs
/// (get, list, files, resume, suspend, cancel, complete, add files, set properties, set a
/// URL, replace a URL prefix, request ranges, move the download position, take ownership,
/// watch, queries, status).
pub fn admin_caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Peer>()
        .and_then(|p| p.caller.clone())
        .ok_or_else(|| Status::permission_denied("the peer's credentials are unknown"))
}

/// A job id from a request.
fn job_id(id: &str) -> Result<Uuid, Status> {
    validate::job_id(id).map_err(Status::from)
}

/// The status that ends a stream because the daemon shuts down: UNAVAILABLE, so that a
/// client tells it from a normal end.
pub fn shutting_down() -> Status {
    Status::unavailable("ferryd is shutting down; connect again once it is back")
}

/// Ends a stream because the daemon shuts down: `UNAVAILABLE` after what is already
/// queued. A client that reads nothing is not waited for long.
async fn end_for_shutdown<T>(tx: &mpsc::Sender<Result<T, Status>>) {
    let _ = tokio::time::timeout(SHUTDOWN_NOTICE_TIMEOUT, tx.send(Err(shutting_down()))).await;
}

/// Every call from a process whose uid is not `daemon_uid` is refused (root is not
/// special: a daemon serves its user only). A worker of the system-wide daemon also takes
/// the connections the broker opened for an administrator.
fn check_peer(daemon_uid: u32) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let peer = req
            .extensions()
            .get::<Peer>()
            .and_then(|p| p.caller.as_ref())
            .map(|c| (c.uid, c.vouched));
        match peer {
            Some((_, true)) => Ok(req),
            Some((uid, false)) if uid == daemon_uid => Ok(req),
            Some((uid, false)) => {
                tracing::warn!(uid, "refused a call from another user");
                Err(Status::permission_denied(format!(
                    "this ferryd serves uid {daemon_uid} only; you are uid {uid}: \
                     start your own ferryd"
                )))
            }
            None => Err(Status::permission_denied(
                "the peer's credentials could not be read",
            )),
        }
    }
}

/// The connections accepted on `listener` (the per-user daemon's socket).
pub fn listen(listener: UnixListener) -> BoxStream<PeerStream> {
    Box::pin(accept::incoming(listener).map(|s| s.map(PeerStream::new).map_err(Status::from)))
}

/// The accept loop's pause while out of descriptors, for the broker's own loop.
pub use accept::incoming as accept_connections;

/// Serves the connections of `incoming` until `shutdown` resolves, then drains
/// (`drain.rs`): calls in progress get their answers, streams end with `UNAVAILABLE`, and
/// the connections of clients that do not read what they were sent are closed.
/// `broker`: the system-wide daemon's broker, when this is one of its workers.
pub async fn serve(
    svc: Arc<Service>,
    incoming: BoxStream<PeerStream>,
    broker: Option<Arc<dyn Broker>>,
    socket: PathBuf,
    state_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let check = check_peer(svc.uid());
    let (reflection_v1, reflection_v1alpha) = reflection::services();
    let drain = drain::Drain::new();
    let jobs = pb::jobs_server::JobsServer::new(jobs::JobsApi {
        svc: svc.clone(),
        broker: broker.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let notifications =
        pb::notifications_server::NotificationsServer::new(notifications::NotificationsApi {
            svc: svc.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let queries = pb::queries_server::QueriesServer::new(queries::QueriesApi {
        svc: svc.clone(),
        broker: broker.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let peers = pb::peers_server::PeersServer::new(peers::PeersApi { svc: svc.clone() });
    let daemon = pb::daemon_server::DaemonServer::new(daemon::DaemonApi {
        svc,
        broker,
        socket,
        state_dir,
    });
    let incoming = incoming.map({
        let drain = drain.clone();
        move |s| s.map(|s| drain.severable(s))
    });
    let server = tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(check))
        .layer(drain.layer())
        .add_service(jobs)
        .add_service(notifications)
        .add_service(queries)
        .add_service(daemon)
        .add_service(peers)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            incoming.map(|s| s.map_err(std::io::Error::other)),
            drain.stopped(),
        );
    drain.run(server, shutdown).await
}
