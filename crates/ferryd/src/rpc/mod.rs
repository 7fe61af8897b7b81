//! The gRPC server on the Unix socket: peer-credential checks on every call, server
//! reflection, and the handlers of `ferry.v1.Ferry`.

pub mod convert;
pub mod handlers;
pub mod query;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_proto::v1 as pb;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::service::Service;

/// Refuses every call from a process whose uid is not `daemon_uid` (root is not special:
/// a per-user daemon serves its user only).
fn check_peer(daemon_uid: u32) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let peer = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .map(|c| c.uid());
        match peer {
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
    let api = handlers::FerryApi {
        svc: svc.clone(),
        socket,
        state_dir,
    };
    let check = check_peer(svc.uid());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");
    tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(check))
        .add_service(
            pb::ferry_server::FerryServer::new(api)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .add_service(reflection)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
