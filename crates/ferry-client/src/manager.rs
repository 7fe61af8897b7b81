//! [`Manager`]: the connection to ferryd, and the calls that are not about one job.

use std::path::Path;
use std::sync::Arc;

use ferry_proto::v1 as pb;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::callback::{Callback, HandlerInfo};
use crate::channel::{CallbackChannel, Callbacks};
use crate::conn::{Conn, ConnectionEvent, Retry};
use crate::connect::ConnectOptions;
use crate::types::{
    DaemonStatus, FileSpec, JobInfo, JobProperties, JobType, Priority, UploadProtocol,
};
use crate::wire::Wire;
use crate::{Error, Job, Result};

/// Items asked for per page when listing: the daemon's maximum.
pub(crate) const LIST_PAGE_SIZE: i32 = 1000;

/// A connection to ferryd (BITS's `IBackgroundCopyManager`). Cheap to clone; clones share
/// the connection.
///
/// When the daemon goes away (it shuts down, crashes or is killed), calls, job watches,
/// event subscriptions and callback registrations wait for it to come back — starting it
/// again when [`ConnectOptions::autostart`] is on — for up to
/// [`ConnectOptions::reconnect_timeout`], then carry on over a new connection:
/// registrations are made again, watches and subscriptions are opened again.
/// [`Manager::connection_events`] tells what happens.
#[derive(Clone)]
pub struct Manager {
    pub(crate) conn: Arc<Conn>,
    /// The callback channel, opened on first use and shared by clones, and what was
    /// registered on it.
    pub(crate) callbacks: Arc<Callbacks>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("socket", &self.conn.socket())
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
    /// Files the job is created with (checked as [`Job::add_files`] checks them).
    pub files: Vec<FileSpec>,
    /// Properties the job is created with (checked as [`Job::set`] checks them).
    pub properties: Option<JobProperties>,
    /// The umask new destinations are created under (`0o666 & !umask`); the constructors
    /// take this process's ([`crate::process_umask`]); `None`: the daemon's own.
    pub umask: Option<u32>,
    /// Queue the job as it is created, in the same call and store transaction (BITS:
    /// `Resume` right after `AddFile`): the common case in one round trip. It needs
    /// files; the job comes back queued (or further on). Default `false`: suspended.
    pub resume: bool,
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
            files: Vec::new(),
            properties: None,
            umask: crate::process_umask(),
            resume: false,
        }
    }

    /// A normal-priority upload job (`protocol`: `put` or `tus`).
    pub fn upload(display_name: impl Into<String>, protocol: &str) -> NewJob {
        NewJob {
            upload_protocol: Some(protocol.into()),
            job_type: JobType::Upload,
            ..NewJob::download(display_name)
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
        Ok(Manager {
            conn: Arc::new(Conn::open(options).await?),
            callbacks: Arc::default(),
        })
    }

    /// A manager on the same connection with no callback channel of its own.
    pub(crate) fn without_callbacks(&self) -> Manager {
        Manager {
            conn: self.conn.clone(),
            callbacks: Arc::default(),
        }
    }

    /// What happens to the connection from now on: the daemon went away, the library
    /// reconnected (or gave up). For telling a user; nothing needs to act on it.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.conn.subscribe()
    }

    /// This process's callback channel, opened on first use, and again after the daemon
    /// went away (a restarted daemon knows neither the channel nor its objects: what this
    /// manager registered is registered again on the new one).
    pub(crate) async fn callback_channel(&self) -> Result<Arc<CallbackChannel>> {
        self.callbacks.channel(self).await
    }

    /// Registers `object` as the class object of notification `class` in this process
    /// (COM's `CoRegisterClassObject`): jobs with that class and no live callback object
    /// notify it. A handler started by activation calls this with
    /// [`crate::activation_class`]. The registration ends when this process disconnects;
    /// it is made again when the daemon comes back after going away.
    pub async fn register_class_object(
        &self,
        class: Uuid,
        object: Arc<dyn Callback>,
    ) -> Result<()> {
        let ch = self.callback_channel().await?;
        ch.register_class(self, class, object.clone()).await?;
        self.callbacks.remember_class(class, object);
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
        let handler = pb::Handler {
            class_id: class.to_string(),
            argv,
            workdir: workdir.unwrap_or_default(),
            registered_unix_ms: 0,
        };
        let h = self
            .conn
            .call(Retry::Always, |mut rpc| {
                let handler = handler.clone();
                async move {
                    rpc.notifications
                        .register_handler(pb::RegisterHandlerRequest {
                            handler: Some(handler),
                        })
                        .await
                }
            })
            .await?
            .handler
            .ok_or_else(|| Error::Protocol("RegisterHandler returned no handler".into()))?;
        HandlerInfo::from_wire(h)
    }

    /// Removes the handler of `class`.
    pub async fn unregister_handler(&self, class: Uuid) -> Result<()> {
        self.conn
            .call(Retry::IfNeverRan, |mut rpc| async move {
                rpc.notifications
                    .unregister_handler(pb::UnregisterHandlerRequest {
                        class_id: class.to_string(),
                    })
                    .await
            })
            .await?;
        Ok(())
    }

    /// Your registered handlers.
    pub async fn handlers(&self) -> Result<Vec<HandlerInfo>> {
        self.conn
            .call(Retry::Always, |mut rpc| async move {
                rpc.notifications
                    .list_handlers(pb::ListHandlersRequest {})
                    .await
            })
            .await?
            .handlers
            .into_iter()
            .map(HandlerInfo::from_wire)
            .collect()
    }

    /// The open callback channel, if any (not reopened).
    pub(crate) async fn open_callback_channel(&self) -> Option<Arc<CallbackChannel>> {
        self.callbacks.open_channel().await
    }

    /// The socket this manager is connected to.
    pub fn socket(&self) -> &Path {
        self.conn.socket()
    }

    /// Creates a download job in `suspended` with default settings.
    pub async fn create_job(&self, display_name: &str) -> Result<Job> {
        self.create_job_with(NewJob::download(display_name)).await
    }

    /// Creates a job as `spec` describes, in `suspended` (queued with
    /// [`NewJob::resume`]), with its files and properties:
    /// if the daemon refuses any of them (a URL it cannot fetch, a folder that does not
    /// exist, a bad header…), no job is created. An upload protocol other than `put` or
    /// `tus` is refused with `InvalidArgument` before anything is sent.
    pub async fn create_job_with(&self, spec: NewJob) -> Result<Job> {
        let upload_protocol = match spec.upload_protocol.as_deref().map(str::trim) {
            None | Some("") => pb::UploadProtocol::Unspecified as i32,
            Some(p) => p
                .parse::<UploadProtocol>()
                .map_err(|e| Error::Status(tonic::Status::invalid_argument(e)))?
                .to_wire(),
        };
        let request = pb::CreateJobRequest {
            display_name: spec.display_name,
            description: spec.description,
            job_type: spec.job_type.to_wire(),
            priority: spec.priority.to_wire(),
            upload_protocol,
            files: spec.files.into_iter().map(FileSpec::into_wire).collect(),
            initial_properties: spec.properties.map(|p| p.into_wire(String::new())),
            umask: spec.umask,
            resume: spec.resume,
        };
        let reply = self
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.create_job(request).await }
            })
            .await?;
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
            let request = pb::ListJobsRequest {
                all,
                page_size: LIST_PAGE_SIZE,
                page_token,
                all_users,
            };
            let page = self
                .conn
                .call(Retry::Always, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.jobs.list_jobs(request).await }
                })
                .await?;
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
            .conn
            .call(Retry::Always, |mut rpc| async move {
                rpc.daemon.status(pb::StatusRequest {}).await
            })
            .await?;
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
            bytes_per_second: s.bytes_per_second,
            network_metered: s.network_metered,
            network_cost_source: s.network_cost_source,
            network_cost_state: crate::CostFlags::from_bits_retain(s.network_cost_state as u32),
            network_roaming: s.network_roaming,
            network_roaming_source: s.network_roaming_source,
        })
    }

    /// Asks the daemon to checkpoint its transfers and exit (never reconnecting: a daemon
    /// already gone is what was asked for).
    pub async fn shutdown_daemon(&self) -> Result<()> {
        let mut rpc = self.conn.rpc();
        match rpc.daemon.shutdown(pb::ShutdownRequest {}).await {
            Ok(_) => Ok(()),
            Err(s) if crate::error::is_gone(&s) => Ok(()),
            Err(s) => Err(Error::Status(s)),
        }
    }
}
