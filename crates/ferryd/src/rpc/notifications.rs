//! `ferry.v1.Notifications`: the `Connect` callback channel, notify interfaces, class
//! objects, handlers and file validation.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{caller, convert, end_for_shutdown, job_id, BoxStream};
use crate::service::{ObjRef, Service};

/// The `Notifications` service.
pub struct NotificationsApi {
    pub svc: Arc<Service>,
}

fn obj_ref(o: pb::ObjectRef) -> ObjRef {
    ObjRef {
        channel: o.channel_id,
        object: o.object_id,
    }
}

#[tonic::async_trait]
impl pb::notifications_server::Notifications for NotificationsApi {
    type ConnectStream = BoxStream<pb::ConnectResponse>;

    async fn connect(
        &self,
        req: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let uid = caller(&req)?.uid;
        let mut inbound = req.into_inner();
        let (tx, mut invocations) = mpsc::channel(64);
        let ch = self.svc.open_callback_channel(uid, tx);
        let (out, rx) = mpsc::channel(64);
        let welcome = pb::ConnectResponse {
            kind: Some(pb::connect_response::Kind::Welcome(pb::Welcome {
                channel_id: ch.id,
            })),
        };
        out.send(Ok(welcome))
            .await
            .map_err(|_| Status::unavailable("the client went away"))?;
        let svc = self.svc.clone();
        // One task per channel: the client's replies in, the invocations out, until the
        // client leaves or the daemon shuts down.
        tokio::spawn(async move {
            let shutdown = loop {
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(pb::ConnectRequest {
                            kind: Some(pb::connect_request::Kind::Reply(r)),
                        })) => ch.reply(r.invoke_id, if r.ok { Ok(()) } else { Err(r.error) }),
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break false,
                    },
                    i = invocations.recv() => match i {
                        Some(i) => {
                            if out.send(Ok(convert::invocation(&i))).await.is_err() {
                                break false;
                            }
                        }
                        None => break false,
                    },
                    _ = svc.shutting_down() => break true,
                }
            };
            svc.close_callback_channel(ch.id);
            if shutdown {
                end_for_shutdown(&out).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_notify_interface(
        &self,
        req: Request<pb::SetNotifyInterfaceRequest>,
    ) -> Result<Response<pb::SetNotifyInterfaceResponse>, Status> {
        let uid = caller(&req)?.uid;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let view = self
            .svc
            .set_notify_interface(uid, id, r.callback.map(obj_ref))?;
        Ok(Response::new(pb::SetNotifyInterfaceResponse {
            job: Some(convert::job(&view)),
        }))
    }

    async fn get_notify_interface(
        &self,
        req: Request<pb::GetNotifyInterfaceRequest>,
    ) -> Result<Response<pb::GetNotifyInterfaceResponse>, Status> {
        let uid = caller(&req)?.uid;
        let id = job_id(&req.get_ref().job_id)?;
        let callback = self.svc.notify_interface(uid, id)?.map(|o| pb::ObjectRef {
            channel_id: o.channel,
            object_id: o.object,
        });
        Ok(Response::new(pb::GetNotifyInterfaceResponse { callback }))
    }

    async fn register_class_object(
        &self,
        req: Request<pb::RegisterClassObjectRequest>,
    ) -> Result<Response<pb::RegisterClassObjectResponse>, Status> {
        let uid = caller(&req)?.uid;
        let r = req.into_inner();
        let o = r
            .class_object
            .ok_or_else(|| Status::invalid_argument("no class object given"))?;
        self.svc
            .register_class_object(uid, &r.class_id, obj_ref(o))?;
        Ok(Response::new(pb::RegisterClassObjectResponse {}))
    }

    async fn register_handler(
        &self,
        req: Request<pb::RegisterHandlerRequest>,
    ) -> Result<Response<pb::RegisterHandlerResponse>, Status> {
        let uid = caller(&req)?.uid;
        let h = req
            .into_inner()
            .handler
            .ok_or_else(|| Status::invalid_argument("no handler given"))?;
        let workdir = Some(h.workdir).filter(|w| !w.is_empty());
        let rec = self
            .svc
            .register_handler(uid, &h.class_id, h.argv, workdir)
            .await?;
        Ok(Response::new(pb::RegisterHandlerResponse {
            handler: Some(convert::handler(&rec)),
        }))
    }

    async fn unregister_handler(
        &self,
        req: Request<pb::UnregisterHandlerRequest>,
    ) -> Result<Response<pb::UnregisterHandlerResponse>, Status> {
        let uid = caller(&req)?.uid;
        self.svc
            .unregister_handler(uid, &req.get_ref().class_id)
            .await?;
        Ok(Response::new(pb::UnregisterHandlerResponse {}))
    }

    async fn list_handlers(
        &self,
        req: Request<pb::ListHandlersRequest>,
    ) -> Result<Response<pb::ListHandlersResponse>, Status> {
        let uid = caller(&req)?.uid;
        let handlers = self
            .svc
            .handlers(uid)
            .iter()
            .map(convert::handler)
            .collect();
        Ok(Response::new(pb::ListHandlersResponse { handlers }))
    }

    async fn set_validation_state(
        &self,
        req: Request<pb::SetValidationStateRequest>,
    ) -> Result<Response<pb::SetValidationStateResponse>, Status> {
        let uid = caller(&req)?.uid;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let f = self
            .svc
            .set_validation_state(uid, id, r.file_index, r.valid)
            .await?;
        Ok(Response::new(pb::SetValidationStateResponse {
            file: Some(convert::file(&f)),
        }))
    }
}
