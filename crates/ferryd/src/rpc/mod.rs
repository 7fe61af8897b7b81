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
//! of each connection), and `accept.rs` for an accept loop that waits (rather than spins)
//! while ferryd is out of descriptors. Handlers decode the request, call the service
//! facade (`crate::service`) with the caller, and encode its answer.
//!
//! May use: `service` (the facade, and what it re-exports), `model`, `config`. The only
//! module that knows the wire types.

mod accept;
pub mod convert;
mod daemon;
mod jobs;
mod notifications;
mod peer;
mod peers;
mod queries;

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
use peer::{Peer, PeerStream};

/// The stream type of every streaming call.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Largest message either way (a `ListJobs` page stays far below it; see `jobs.rs`).
const MAX_MESSAGE: usize = 64 << 20;

/// How long a stream ended by a shutdown waits for room to say so.
const SHUTDOWN_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// Who is calling: the peer's credentials (the interceptor has already checked them).
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
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

/// The per-user daemon refuses every call from a process whose uid is not `daemon_uid`
/// (root is not special: it serves its user only). The system-wide daemon (`system`)
/// takes calls from everyone whose credentials are known; what each may do is the
/// facade's business.
fn check_peer(
    daemon_uid: u32,
    system: bool,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let peer = req
            .extensions()
            .get::<Peer>()
            .and_then(|p| p.caller.as_ref())
            .map(|c| c.uid);
        match peer {
            Some(_) if system => Ok(req),
            Some(uid) if uid == daemon_uid => Ok(req),
            Some(uid) => {
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

/// Serves until `shutdown` resolves.
pub async fn serve(
    svc: Arc<Service>,
    listener: UnixListener,
    socket: PathBuf,
    state_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let check = check_peer(svc.uid(), svc.config().is_system());
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor set is valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor set is valid");
    let jobs = pb::jobs_server::JobsServer::new(jobs::JobsApi { svc: svc.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let notifications =
        pb::notifications_server::NotificationsServer::new(notifications::NotificationsApi {
            svc: svc.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let queries = pb::queries_server::QueriesServer::new(queries::QueriesApi { svc: svc.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let peers = pb::peers_server::PeersServer::new(peers::PeersApi { svc: svc.clone() });
    let daemon = pb::daemon_server::DaemonServer::new(daemon::DaemonApi {
        svc,
        socket,
        state_dir,
    });
    tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(check))
        .add_service(jobs)
        .add_service(notifications)
        .add_service(queries)
        .add_service(daemon)
        .add_service(peers)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            accept::incoming(listener).map(|s| s.map(PeerStream::new)),
            shutdown,
        )
        .await
}
