//! [`Manager`]: the connection to ferryd, and the calls that are not about one job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_proto::v1 as pb;
use ferry_proto::v1::{
    daemon_client::DaemonClient, jobs_client::JobsClient,
    notifications_client::NotificationsClient, peers_client::PeersClient,
    queries_client::QueriesClient,
};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::callback::{Callback, CallbackChannel, HandlerInfo};
use crate::connect::{self, ConnectOptions};
use crate::types::{DaemonStatus, JobInfo, JobType, Priority, UploadProtocol};
use crate::wire::Wire;
use crate::{Error, Job, Result};

/// Largest message either way (ferryd allows the same).
const MAX_MESSAGE: usize = 64 << 20;

/// Items asked for per page when listing: the daemon's maximum.
pub(crate) const LIST_PAGE_SIZE: i32 = 1000;

/// The stubs of ferryd's five services, sharing one connection.
#[derive(Clone)]
pub(crate) struct Rpc {
    pub(crate) jobs: JobsClient<Channel>,
    pub(crate) notifications: NotificationsClient<Channel>,
    pub(crate) queries: QueriesClient<Channel>,
    pub(crate) daemon: DaemonClient<Channel>,
    pub(crate) peers: PeersClient<Channel>,
}

impl Rpc {
    fn new(channel: Channel) -> Rpc {
        Rpc {
            jobs: JobsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            notifications: NotificationsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            queries: QueriesClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            daemon: DaemonClient::new(channel.clone()),
            peers: PeersClient::new(channel),
        }
    }
}

/// A connection to ferryd (BITS's `IBackgroundCopyManager`). Cheap to clone; clones share
/// the connection.
#[derive(Clone)]
pub struct Manager {
    pub(crate) rpc: Rpc,
    socket: PathBuf,
    /// The callback channel, opened on first use and shared by clones.
    callbacks: Arc<tokio::sync::Mutex<Option<Arc<CallbackChannel>>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("socket", &self.socket)
            .finish()
    }
}

/// What [`Manager::create_job_with`] creates.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Download (default), upload or upload-reply.
    pub job_type: JobType,
    /// Priority (default normal).
    pub priority: Priority,
    /// For upload jobs: `put` (default) or `tus`.
    pub upload_protocol: Option<String>,
}

impl NewJob {
    /// A normal-priority download job named `display_name`.
    pub fn download(display_name: impl Into<String>) -> NewJob {
        NewJob {
            display_name: display_name.into(),
            description: String::new(),
            job_type: JobType::Download,
            priority: Priority::Normal,
            upload_protocol: None,
        }
    }

    /// A normal-priority upload job (`protocol`: `put` or `tus`).
    pub fn upload(display_name: impl Into<String>, protocol: &str) -> NewJob {
        NewJob {
            display_name: display_name.into(),
            description: String::new(),
            job_type: JobType::Upload,
            priority: Priority::Normal,
            upload_protocol: Some(protocol.into()),
        }
    }
}

impl Manager {
    /// Connects to the daemon on the default socket; fails if none answers.
    pub async fn connect() -> Result<Manager> {
        Manager::connect_with(ConnectOptions::default()).await
    }

    /// Connects as `options` say, starting `ferryd` if asked and needed.
    pub async fn connect_with(options: ConnectOptions) -> Result<Manager> {
        let channel = match connect::channel(&options.socket).await {
            Ok(c) => c,
            Err(Error::Unavailable { .. }) if options.autostart => {
                connect::start_daemon(&options.socket, options.start_timeout).await?;
                connect::channel(&options.socket).await?
            }
            Err(e) => return Err(e),
        };
        Ok(Manager {
            rpc: Rpc::new(channel),
            socket: options.socket,
            callbacks: Arc::default(),
        })
    }

    /// A manager on the same connection with no callback channel of its own.
    pub(crate) fn without_callbacks(&self) -> Manager {
        Manager {
            rpc: self.rpc.clone(),
            socket: self.socket.clone(),
            callbacks: Arc::default(),
        }
    }

    /// This process's callback channel, opened on first use, and again after the daemon
    /// went away (a restarted daemon knows neither the channel nor its objects).
    pub(crate) async fn callback_channel(&self) -> Result<Arc<CallbackChannel>> {
        let mut slot = self.callbacks.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_gone()) {
            return Ok(c.clone());
        }
        let c = CallbackChannel::open(self).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Registers `object` as the class object of notification `class` in this process
    /// (COM's `CoRegisterClassObject`): jobs with that class and no live callback object
    /// notify it. A handler started by activation calls this with
    /// [`crate::activation_class`]. The registration ends when this process disconnects.
    pub async fn register_class_object(
        &self,
        class: Uuid,
        object: Arc<dyn Callback>,
    ) -> Result<()> {
        let ch = self.callback_channel().await?;
        let object_id = ch.export(object);
        self.rpc
            .notifications
            .clone()
            .register_class_object(pb::RegisterClassObjectRequest {
                class_id: class.to_string(),
                class_object: Some(pb::ObjectRef {
                    channel_id: ch.id,
                    object_id,
                }),
            })
            .await?;
        Ok(())
    }

    /// Registers the command ferryd starts when a job of `class` has a notification and no
    /// live callback object (the program must be an absolute path).
    pub async fn register_handler(
        &self,
        class: Uuid,
        argv: Vec<String>,
        workdir: Option<String>,
    ) -> Result<HandlerInfo> {
        let h = self
            .rpc
            .notifications
            .clone()
            .register_handler(pb::RegisterHandlerRequest {
                handler: Some(pb::Handler {
                    class_id: class.to_string(),
                    argv,
                    workdir: workdir.unwrap_or_default(),
                    registered_unix_ms: 0,
                }),
            })
            .await?
            .into_inner()
            .handler
            .ok_or_else(|| Error::Protocol("RegisterHandler returned no handler".into()))?;
        HandlerInfo::from_wire(h)
    }

    /// Removes the handler of `class`.
    pub async fn unregister_handler(&self, class: Uuid) -> Result<()> {
        self.rpc
            .notifications
            .clone()
            .unregister_handler(pb::UnregisterHandlerRequest {
                class_id: class.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Your registered handlers.
    pub async fn handlers(&self) -> Result<Vec<HandlerInfo>> {
        self.rpc
            .notifications
            .clone()
            .list_handlers(pb::ListHandlersRequest {})
            .await?
            .into_inner()
            .handlers
            .into_iter()
            .map(HandlerInfo::from_wire)
            .collect()
    }

    /// The open callback channel, if any (not reopened).
    pub(crate) async fn open_callback_channel(&self) -> Option<Arc<CallbackChannel>> {
        self.callbacks
            .lock()
            .await
            .as_ref()
            .filter(|c| !c.is_gone())
            .cloned()
    }

    /// The socket this manager is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Creates a download job in `suspended` with default settings.
    pub async fn create_job(&self, display_name: &str) -> Result<Job> {
        self.create_job_with(NewJob::download(display_name)).await
    }

    /// Creates a job as `spec` describes, in `suspended`. An upload protocol other than
    /// `put` or `tus` is refused with `InvalidArgument` before anything is sent.
    pub async fn create_job_with(&self, spec: NewJob) -> Result<Job> {
        let upload_protocol = match spec.upload_protocol.as_deref().map(str::trim) {
            None | Some("") => pb::UploadProtocol::Unspecified as i32,
            Some(p) => p
                .parse::<UploadProtocol>()
                .map_err(|e| Error::Status(tonic::Status::invalid_argument(e)))?
                .to_wire(),
        };
        let reply = self
            .rpc
            .jobs
            .clone()
            .create_job(pb::CreateJobRequest {
                display_name: spec.display_name,
                description: spec.description,
                job_type: spec.job_type.to_wire(),
                priority: spec.priority.to_wire(),
                upload_protocol,
            })
            .await?
            .into_inner();
        let info = JobInfo::from_wire(
            reply
                .job
                .ok_or_else(|| Error::Protocol("CreateJob returned no job".into()))?,
        )?;
        Ok(Job::new(self.clone(), info.id))
    }

    /// A handle on an existing job (checked: fails with `NotFound` if it does not exist).
    pub async fn job(&self, id: Uuid) -> Result<Job> {
        let job = Job::new(self.clone(), id);
        job.info().await?;
        Ok(job)
    }

    /// A handle on a job without asking the daemon whether it exists.
    pub fn job_unchecked(&self, id: Uuid) -> Job {
        Job::new(self.clone(), id)
    }

    /// Your jobs, oldest first; `all` includes acknowledged and cancelled ones. Every job:
    /// the daemon's pages are fetched one after another.
    pub async fn jobs(&self, all: bool) -> Result<Vec<JobInfo>> {
        self.list_jobs(all, false).await
    }

    /// Every user's jobs, oldest first (each says its `owner_uid`); `all` includes
    /// acknowledged and cancelled ones. Only root and the members of the admin group of a
    /// system-wide ferryd may ask: anyone else gets an [`Error::Status`] of kind
    /// [`crate::ErrorKind::PermissionDenied`].
    pub async fn jobs_of_all_users(&self, all: bool) -> Result<Vec<JobInfo>> {
        self.list_jobs(all, true).await
    }

    async fn list_jobs(&self, all: bool, all_users: bool) -> Result<Vec<JobInfo>> {
        let mut jobs = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .rpc
                .jobs
                .clone()
                .list_jobs(pb::ListJobsRequest {
                    all,
                    page_size: LIST_PAGE_SIZE,
                    page_token,
                    all_users,
                })
                .await?
                .into_inner();
            for j in page.jobs {
                jobs.push(JobInfo::from_wire(j)?);
            }
            if page.next_page_token.is_empty() {
                return Ok(jobs);
            }
            page_token = page.next_page_token;
        }
    }

    /// The daemon's status.
    pub async fn status(&self) -> Result<DaemonStatus> {
        let s = self
            .rpc
            .daemon
            .clone()
            .status(pb::StatusRequest {})
            .await?
            .into_inner();
        Ok(DaemonStatus {
            pid: s.pid,
            version: s.version,
            socket_path: s.socket_path,
            state_dir: s.state_dir,
            jobs: s.jobs,
            active_transfers: s.active_transfers,
            started_unix_ms: s.started_unix_ms,
            bandwidth_limit: s.bandwidth_limit,
            limits_in_force: s
                .limits_in_force
                .into_iter()
                .map(|l| crate::types::ScheduledLimit {
                    limit: l.limit,
                    priorities: l
                        .priorities
                        .into_iter()
                        .filter_map(<crate::Priority as crate::wire::Wire>::from_wire)
                        .collect(),
                    period: l.period,
                })
                .collect(),
        })
    }

    /// Asks the daemon to checkpoint its transfers and exit.
    pub async fn shutdown_daemon(&self) -> Result<()> {
        self.rpc
            .daemon
            .clone()
            .shutdown(pb::ShutdownRequest {})
            .await?;
        Ok(())
    }
}
