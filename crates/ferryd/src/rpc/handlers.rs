//! The tonic handlers: decode the request, call the service facade, encode the answer.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use ferry_proto::v1 as pb;
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::convert;
use crate::service::{validate, FileSpec, JobChanges, NewJob, ObjRef, Service};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The `ferry.v1.Ferry` service.
pub struct FerryApi {
    pub svc: Arc<Service>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

/// The uid of the peer process (the interceptor has already checked it).
pub fn caller<T>(req: &Request<T>) -> Result<u32, Status> {
    req.extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
        .map(|c| c.uid())
        .ok_or_else(|| Status::permission_denied("the peer's credentials are unknown"))
}

fn job_id(id: &str) -> Result<Uuid, Status> {
    validate::job_id(id).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::ferry_server::Ferry for FerryApi {
    async fn create_job(
        &self,
        req: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let spec = NewJob {
            display_name: r.display_name,
            description: r.description,
            job_type: convert::job_type_from(r.r#type)?,
            priority: convert::priority_from(r.priority)?.unwrap_or(crate::model::Priority::Normal),
            upload_protocol: Some(r.upload_protocol),
        };
        let view = self.svc.create_job(uid, spec).await?;
        Ok(Response::new(convert::job(&view)))
    }

    async fn add_files(
        &self,
        req: Request<pb::AddFilesRequest>,
    ) -> Result<Response<pb::AddFilesResponse>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let specs = r
            .files
            .into_iter()
            .map(|f| FileSpec {
                remote_url: f.remote_url,
                local_path: f.local_path,
                expected_sha256: Some(f.expected_sha256).filter(|s| !s.is_empty()),
            })
            .collect();
        let files = self.svc.add_files(uid, id, specs).await?;
        Ok(Response::new(pb::AddFilesResponse {
            files: files.iter().map(convert::file).collect(),
        }))
    }

    async fn get_job(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        Ok(Response::new(convert::job(&self.svc.get_job(uid, id)?)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let uid = caller(&req)?;
        let jobs = self.svc.list_jobs(uid, req.get_ref().all);
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(convert::job).collect(),
        }))
    }

    async fn list_files(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        let files = self.svc.list_files(uid, id)?;
        Ok(Response::new(pb::ListFilesResponse {
            files: files.iter().map(convert::file).collect(),
        }))
    }

    async fn resume(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        Ok(Response::new(convert::job(
            &self.svc.resume(uid, id).await?,
        )))
    }

    async fn suspend(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        Ok(Response::new(convert::job(
            &self.svc.suspend(uid, id).await?,
        )))
    }

    async fn cancel(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        Ok(Response::new(convert::job(
            &self.svc.cancel(uid, id).await?,
        )))
    }

    async fn complete(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        let out = self.svc.complete(uid, id).await?;
        Ok(Response::new(pb::CompleteResponse {
            job: Some(convert::job(&out.view)),
            files_committed: out.committed,
            files_discarded: out.discarded,
        }))
    }

    async fn set_properties(
        &self,
        req: Request<pb::SetPropertiesRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let notification_class = match r.notification_class {
            None => None,
            Some(s) if s.trim().is_empty() => Some(None),
            Some(s) => Some(Some(Uuid::parse_str(s.trim()).map_err(|_| {
                Status::invalid_argument(format!(
                    "'{s}' is not a notification class (a UUID; the nil UUID clears it)"
                ))
            })?)),
        };
        let changes = JobChanges {
            display_name: r.display_name,
            description: r.description,
            priority: convert::priority_from(r.priority)?,
            notify_flags: r.notify_flags,
            notification_class,
            notify_command: r.notify_command.map(|l| l.values),
            min_retry_delay_secs: r.minimum_retry_delay_secs,
            no_progress_timeout_secs: r.no_progress_timeout_secs,
            max_transfer_time_secs: r.max_transfer_time_secs,
            headers: r.headers.map(|l| l.values),
            credentials: match r.credentials.and_then(|c| c.kind) {
                None => None,
                Some(pb::credentials::Kind::Clear(_)) => Some(None),
                Some(pb::credentials::Kind::Basic(b)) => {
                    Some(Some(crate::model::Credentials::Basic {
                        user: b.user,
                        password: b.password,
                    }))
                }
                Some(pb::credentials::Kind::BearerToken(t)) => {
                    Some(Some(crate::model::Credentials::Bearer { token: t }))
                }
            },
            proxy: r.proxy,
            ca_file: r.ca_file,
            bandwidth_limit: r.bandwidth_limit,
            reply_file: r.reply_file,
            connections: r.connections,
        };
        Ok(Response::new(convert::job(
            &self.svc.set_properties(uid, id, changes).await?,
        )))
    }

    type WatchJobStream = BoxStream<pb::Job>;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let uid = caller(&req)?;
        let id = job_id(&req.get_ref().id)?;
        let mut events = self.svc.subscribe();
        let first = self.svc.get_job(uid, id)?;
        let (tx, rx) = mpsc::channel(16);
        let svc = self.svc.clone();
        tokio::spawn(async move {
            let mut last = convert::job(&first);
            let done = first.job.state.is_final();
            if tx.send(Ok(last.clone())).await.is_err() || done {
                return;
            }
            loop {
                let view = tokio::select! {
                    _ = tx.closed() => return,
                    _ = svc.shutting_down() => return,
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.current.job.id == id => (*ev.current).clone(),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => match svc.get_job(uid, id) {
                            Ok(v) => v,
                            Err(_) => return,
                        },
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let msg = convert::job(&view);
                if msg == last {
                    continue;
                }
                last = msg.clone();
                if tx.send(Ok(msg)).await.is_err() || view.job.state.is_final() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::DaemonStatus>, Status> {
        caller(&req)?;
        Ok(Response::new(pb::DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            socket_path: self.socket.display().to_string(),
            state_dir: self.state_dir.display().to_string(),
            jobs: self.svc.job_count() as u64,
            active_transfers: self.svc.active_transfers() as u64,
            started_unix_ms: self.svc.started_ms(),
        }))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        caller(&req)?;
        tracing::info!("shutdown requested by a client");
        self.svc.request_shutdown();
        Ok(Response::new(pb::ShutdownResponse {}))
    }

    type ConnectStream = BoxStream<pb::ServerMessage>;

    async fn connect(
        &self,
        req: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let uid = caller(&req)?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let ch = self.svc.open_callback_channel(uid, tx);
        let welcome = pb::ServerMessage {
            kind: Some(pb::server_message::Kind::Welcome(pb::Welcome {
                channel_id: ch.id,
            })),
        };
        let svc = self.svc.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = svc.shutting_down() => break,
                };
                match msg {
                    Ok(Some(pb::ClientMessage {
                        kind: Some(pb::client_message::Kind::Reply(r)),
                    })) => ch.reply(r.invoke_id, if r.ok { Ok(()) } else { Err(r.error) }),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            svc.close_callback_channel(ch.id);
        });
        let invocations = ReceiverStream::new(rx).map(|i| Ok(convert::invocation(&i)));
        let stream = tokio_stream::once(Ok(welcome)).chain(invocations);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_notify_interface(
        &self,
        req: Request<pb::SetNotifyInterfaceRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let object = r.object.map(|o| ObjRef {
            channel: o.channel_id,
            object: o.object_id,
        });
        let view = self.svc.set_notify_interface(uid, id, object)?;
        Ok(Response::new(convert::job(&view)))
    }

    async fn register_class_object(
        &self,
        req: Request<pb::RegisterClassObjectRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let o = r
            .object
            .ok_or_else(|| Status::invalid_argument("no object given"))?;
        let object = ObjRef {
            channel: o.channel_id,
            object: o.object_id,
        };
        self.svc.register_class_object(uid, &r.class, object)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn register_handler(
        &self,
        req: Request<pb::RegisterHandlerRequest>,
    ) -> Result<Response<pb::Handler>, Status> {
        let uid = caller(&req)?;
        let h = req
            .into_inner()
            .handler
            .ok_or_else(|| Status::invalid_argument("no handler given"))?;
        let workdir = Some(h.workdir).filter(|w| !w.is_empty());
        let rec = self
            .svc
            .register_handler(uid, &h.class, h.argv, workdir)
            .await?;
        Ok(Response::new(convert::handler(&rec)))
    }

    async fn unregister_handler(
        &self,
        req: Request<pb::HandlerRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let uid = caller(&req)?;
        self.svc
            .unregister_handler(uid, &req.get_ref().class)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_handlers(
        &self,
        req: Request<pb::ListHandlersRequest>,
    ) -> Result<Response<pb::ListHandlersResponse>, Status> {
        let uid = caller(&req)?;
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
    ) -> Result<Response<pb::File>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let f = self
            .svc
            .set_validation_state(uid, id, r.file_index, r.valid)
            .await?;
        Ok(Response::new(convert::file(&f)))
    }

    type ExecQueryStream = BoxStream<pb::QueryMessage>;

    async fn exec_query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::ExecQueryStream>, Status> {
        let uid = caller(&req)?;
        let stream = super::query::exec_query(self.svc.clone(), uid, req.into_inner()).await?;
        Ok(Response::new(stream))
    }

    type ExecNotificationQueryStream = BoxStream<pb::QueryMessage>;

    async fn exec_notification_query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::ExecNotificationQueryStream>, Status> {
        let uid = caller(&req)?;
        let stream =
            super::query::exec_notification_query(self.svc.clone(), uid, req.into_inner()).await?;
        Ok(Response::new(stream))
    }

    async fn exec_method(
        &self,
        req: Request<pb::ExecMethodRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let uid = caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let view = match r.method.to_ascii_lowercase().as_str() {
            "resume" => self.svc.resume(uid, id).await?,
            "suspend" => self.svc.suspend(uid, id).await?,
            "cancel" => self.svc.cancel(uid, id).await?,
            "complete" => self.svc.complete(uid, id).await?.view,
            other => {
                return Err(Status::invalid_argument(format!(
                    "Job has no method '{other}' (it has Resume, Suspend, Cancel, Complete)"
                )))
            }
        };
        Ok(Response::new(convert::job(&view)))
    }
}
