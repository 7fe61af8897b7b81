//! [`Job`]: one transfer job (BITS's `IBackgroundCopyJob`).

use ferry_proto::v1 as pb;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use std::sync::Arc;

use crate::callback::{Callback, File};
use crate::manager::LIST_PAGE_SIZE;
use crate::types::{
    CompleteOutcome, Credentials, FileInfo, FileSpec, JobInfo, JobProperties, JobState, NotifyFlags,
};
use crate::wire::Wire;
use crate::{Error, Manager, Result};

/// A job's callback object, as [`Job::notify_interface`] reports it (BITS's
/// `GetNotifyInterface`).
#[derive(Clone)]
pub struct NotifyInterface {
    /// The callback channel (one per connected client process) the object lives on.
    pub channel_id: u64,
    /// The object's id on that channel.
    pub object_id: u64,
    /// The object itself, when this manager exported it; `None` when another process (or
    /// another [`Manager`]) did.
    pub object: Option<Arc<dyn Callback>>,
}

impl std::fmt::Debug for NotifyInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyInterface")
            .field("channel_id", &self.channel_id)
            .field("object_id", &self.object_id)
            .field("local", &self.object.is_some())
            .finish()
    }
}

/// The job of a reply that must carry one.
fn job_of(job: Option<pb::Job>, call: &str) -> Result<JobInfo> {
    JobInfo::from_wire(job.ok_or_else(|| Error::Protocol(format!("{call} returned no job")))?)
}

/// A handle on a job. Cheap to clone; every method asks the daemon.
#[derive(Clone, Debug)]
pub struct Job {
    manager: Manager,
    id: Uuid,
}

impl Job {
    pub(crate) fn new(manager: Manager, id: Uuid) -> Job {
        Job { manager, id }
    }

    /// The job's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The manager this handle talks through.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    fn job_id(&self) -> String {
        self.id.to_string()
    }

    /// A fresh snapshot of the job.
    pub async fn info(&self) -> Result<JobInfo> {
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .get_job(pb::GetJobRequest {
                job_id: self.job_id(),
            })
            .await?;
        job_of(r.into_inner().job, "GetJob")
    }

    /// Adds one file (`remote_url` → absolute `local_path`).
    pub async fn add_file(&self, remote_url: &str, local_path: &str) -> Result<FileInfo> {
        let mut files = self
            .add_files(vec![FileSpec::new(remote_url, local_path)])
            .await?;
        files
            .pop()
            .ok_or_else(|| Error::Protocol("AddFiles returned no file".into()))
    }

    /// Adds files in one call (all or none).
    pub async fn add_files(&self, files: Vec<FileSpec>) -> Result<Vec<FileInfo>> {
        let reply = self
            .manager
            .rpc
            .jobs
            .clone()
            .add_files(pb::AddFilesRequest {
                job_id: self.id.to_string(),
                files: files
                    .into_iter()
                    .map(|f| pb::FileSpec {
                        remote_url: f.remote_url,
                        local_path: f.local_path,
                        expected_sha256: f.expected_sha256.unwrap_or_default(),
                    })
                    .collect(),
            })
            .await?;
        reply
            .into_inner()
            .files
            .into_iter()
            .map(FileInfo::from_wire)
            .collect()
    }

    /// The job's files in order: every file (the daemon's pages are fetched one after
    /// another).
    pub async fn files(&self) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .manager
                .rpc
                .jobs
                .clone()
                .list_files(pb::ListFilesRequest {
                    job_id: self.job_id(),
                    page_size: LIST_PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            for f in page.files {
                files.push(FileInfo::from_wire(f)?);
            }
            if page.next_page_token.is_empty() {
                return Ok(files);
            }
            page_token = page.next_page_token;
        }
    }

    /// Queues a suspended or failed job for transfer.
    pub async fn resume(&self) -> Result<JobInfo> {
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .resume_job(pb::ResumeJobRequest {
                job_id: self.job_id(),
            })
            .await?;
        job_of(r.into_inner().job, "ResumeJob")
    }

    /// Stops transferring; progress is kept.
    pub async fn suspend(&self) -> Result<JobInfo> {
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .suspend_job(pb::SuspendJobRequest {
                job_id: self.job_id(),
            })
            .await?;
        job_of(r.into_inner().job, "SuspendJob")
    }

    /// Cancels the job and deletes its temporary files.
    pub async fn cancel(&self) -> Result<JobInfo> {
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .cancel_job(pb::CancelJobRequest {
                job_id: self.job_id(),
            })
            .await?;
        job_of(r.into_inner().job, "CancelJob")
    }

    /// Moves the transferred files to their destinations (atomically) and discards the rest.
    pub async fn complete(&self) -> Result<CompleteOutcome> {
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .complete_job(pb::CompleteJobRequest {
                job_id: self.job_id(),
            })
            .await?
            .into_inner();
        Ok(CompleteOutcome {
            job: job_of(r.job, "CompleteJob")?,
            files_committed: r.files_committed,
            files_discarded: r.files_discarded,
        })
    }

    /// Changes properties.
    pub async fn set(&self, props: JobProperties) -> Result<JobInfo> {
        let req = pb::SetJobPropertiesRequest {
            job_id: self.id.to_string(),
            display_name: props.display_name,
            description: props.description,
            priority: props.priority.map(|p| p.to_wire()).unwrap_or_default(),
            notify_flags: props.notify_flags.map(|f| f.bits()),
            notification_class: props.notification_class.map(|c| {
                if c.is_nil() {
                    String::new()
                } else {
                    c.to_string()
                }
            }),
            notify_command: props.notify_command.map(|values| pb::StringList { values }),
            minimum_retry_delay_secs: props.minimum_retry_delay_secs,
            no_progress_timeout_secs: props.no_progress_timeout_secs,
            max_transfer_time_secs: props.max_transfer_time_secs,
            headers: props.headers.map(|values| pb::StringList { values }),
            credentials: props.credentials.map(|c| pb::Credentials {
                kind: Some(match c {
                    Credentials::Basic { user, password } => {
                        pb::credentials::Kind::Basic(pb::BasicCredentials { user, password })
                    }
                    Credentials::Bearer(t) => pb::credentials::Kind::BearerToken(t),
                    Credentials::Clear => pb::credentials::Kind::Clear(true),
                }),
            }),
            proxy: props.proxy,
            ca_file: props.ca_file,
            bandwidth_limit: props.bandwidth_limit,
            reply_file: props.reply_file,
            connections: props.connections,
            peers: props.peers.map(|m| m.to_wire()).unwrap_or_default(),
        };
        let r = self
            .manager
            .rpc
            .jobs
            .clone()
            .set_job_properties(req)
            .await?;
        job_of(r.into_inner().job, "SetJobProperties")
    }

    /// Sets (`Some`) or clears (`None`) the job's callback object; the last call wins. The
    /// object lives in this process: the registration ends when the process disconnects.
    /// If the job has an undelivered `job_transferred` or `job_error`, it is delivered at once.
    pub async fn set_notify_interface(&self, object: Option<Arc<dyn Callback>>) -> Result<JobInfo> {
        let object = match object {
            Some(obj) => {
                let ch = self.manager.callback_channel().await?;
                Some(pb::ObjectRef {
                    channel_id: ch.id,
                    object_id: ch.export(obj),
                })
            }
            None => None,
        };
        let r = self
            .manager
            .rpc
            .notifications
            .clone()
            .set_notify_interface(pb::SetNotifyInterfaceRequest {
                job_id: self.id.to_string(),
                callback: object,
            })
            .await?;
        job_of(r.into_inner().job, "SetNotifyInterface")
    }

    /// The job's callback object (BITS's `GetNotifyInterface`): `None` when none is set,
    /// it was cleared, or the process that exported it disconnected.
    pub async fn notify_interface(&self) -> Result<Option<NotifyInterface>> {
        let r = self
            .manager
            .rpc
            .notifications
            .clone()
            .get_notify_interface(pb::GetNotifyInterfaceRequest {
                job_id: self.job_id(),
            })
            .await?
            .into_inner();
        let Some(o) = r.callback else {
            return Ok(None);
        };
        let object = match self.manager.open_callback_channel().await {
            Some(ch) if ch.id == o.channel_id => ch.object(o.object_id),
            _ => None,
        };
        Ok(Some(NotifyInterface {
            channel_id: o.channel_id,
            object_id: o.object_id,
            object,
        }))
    }

    /// Selects which notifications the job sends.
    pub async fn set_notify_flags(&self, flags: NotifyFlags) -> Result<JobInfo> {
        self.set(JobProperties {
            notify_flags: Some(flags),
            ..Default::default()
        })
        .await
    }

    /// Sets the job's notification class; `Uuid::nil()` clears it.
    pub async fn set_notification_class(&self, class: Uuid) -> Result<JobInfo> {
        self.set(JobProperties {
            notification_class: Some(class),
            ..Default::default()
        })
        .await
    }

    /// Sets the command run when the job is transferred or fails (argv, absolute program
    /// path, no shell); an empty `argv` clears it.
    pub async fn set_notify_command(&self, argv: Vec<String>) -> Result<JobInfo> {
        self.set(JobProperties {
            notify_command: Some(argv),
            ..Default::default()
        })
        .await
    }

    /// A handle on file `index` (fetched now).
    pub async fn file(&self, index: u32) -> Result<File> {
        let info = self
            .files()
            .await?
            .into_iter()
            .find(|f| f.index == index)
            .ok_or_else(|| {
                Error::Status(tonic::Status::not_found(format!(
                    "job {} has no file {index}",
                    self.id
                )))
            })?;
        Ok(File::new(self.clone(), info))
    }

    /// Sets the display name.
    pub async fn set_display_name(&self, name: &str) -> Result<JobInfo> {
        self.set(JobProperties {
            display_name: Some(name.into()),
            ..Default::default()
        })
        .await
    }

    /// The job now, then after every change, until it reaches a final state. If the
    /// daemon goes away first (it shuts down), the last item is [`Error::DaemonGone`].
    pub async fn watch(&self) -> Result<impl Stream<Item = Result<JobInfo>> + Send + 'static> {
        let stream = self
            .manager
            .rpc
            .jobs
            .clone()
            .watch_job(pb::WatchJobRequest {
                job_id: self.job_id(),
            })
            .await?
            .into_inner();
        let socket = self.manager.socket().to_owned();
        Ok(stream.map(move |r| {
            r.map_err(|s| Error::from_stream(s, &socket))
                .and_then(|r| job_of(r.job, "WatchJob"))
        }))
    }

    /// Waits until the job is `transferred`, `error`, or final, and returns it then; fails
    /// with [`Error::DaemonGone`] if the daemon goes away first.
    pub async fn wait(&self) -> Result<JobInfo> {
        self.wait_for(|s| matches!(s, JobState::Transferred | JobState::Error) || s.is_final())
            .await
    }

    /// Waits until the job's state satisfies `done`.
    pub async fn wait_for(&self, done: impl Fn(JobState) -> bool) -> Result<JobInfo> {
        let mut stream = Box::pin(self.watch().await?);
        let mut last = None;
        while let Some(info) = stream.next().await {
            let info = info?;
            if done(info.state()) {
                return Ok(info);
            }
            last = Some(info);
        }
        match last {
            Some(info) if done(info.state()) => Ok(info),
            _ => {
                let info = self.info().await?;
                if done(info.state()) {
                    Ok(info)
                } else {
                    Err(Error::Protocol(format!(
                        "the watch of job {} ended in state {}",
                        self.id,
                        info.state()
                    )))
                }
            }
        }
    }
}
