//! [`Job`]: one transfer job (BITS's `IBackgroundCopyJob`).

use ferry_proto::v1 as pb;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use std::sync::Arc;

use crate::callback::{Callback, File};
use crate::types::{
    CompleteOutcome, Credentials, FileInfo, FileSpec, JobInfo, JobProperties, JobState, NotifyFlags,
};
use crate::{Error, Manager, Result};

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

    fn job_ref(&self) -> pb::JobRef {
        pb::JobRef {
            id: self.id.to_string(),
        }
    }

    /// A fresh snapshot of the job.
    pub async fn info(&self) -> Result<JobInfo> {
        let j = self.manager.rpc.clone().get_job(self.job_ref()).await?;
        JobInfo::from_wire(j.into_inner())
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

    /// The job's files in order.
    pub async fn files(&self) -> Result<Vec<FileInfo>> {
        let reply = self.manager.rpc.clone().list_files(self.job_ref()).await?;
        reply
            .into_inner()
            .files
            .into_iter()
            .map(FileInfo::from_wire)
            .collect()
    }

    /// Queues a suspended or failed job for transfer.
    pub async fn resume(&self) -> Result<JobInfo> {
        let j = self.manager.rpc.clone().resume(self.job_ref()).await?;
        JobInfo::from_wire(j.into_inner())
    }

    /// Stops transferring; progress is kept.
    pub async fn suspend(&self) -> Result<JobInfo> {
        let j = self.manager.rpc.clone().suspend(self.job_ref()).await?;
        JobInfo::from_wire(j.into_inner())
    }

    /// Cancels the job and deletes its temporary files.
    pub async fn cancel(&self) -> Result<JobInfo> {
        let j = self.manager.rpc.clone().cancel(self.job_ref()).await?;
        JobInfo::from_wire(j.into_inner())
    }

    /// Moves the transferred files to their destinations (atomically) and discards the rest.
    pub async fn complete(&self) -> Result<CompleteOutcome> {
        let r = self
            .manager
            .rpc
            .clone()
            .complete(self.job_ref())
            .await?
            .into_inner();
        Ok(CompleteOutcome {
            job: JobInfo::from_wire(
                r.job
                    .ok_or_else(|| Error::Protocol("Complete returned no job".into()))?,
            )?,
            files_committed: r.files_committed,
            files_discarded: r.files_discarded,
        })
    }

    /// Changes properties.
    pub async fn set(&self, props: JobProperties) -> Result<JobInfo> {
        let req = pb::SetPropertiesRequest {
            job_id: self.id.to_string(),
            display_name: props.display_name,
            description: props.description,
            priority: props.priority.map(|p| p.to_wire()).unwrap_or(0),
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
        };
        let j = self.manager.rpc.clone().set_properties(req).await?;
        JobInfo::from_wire(j.into_inner())
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
        let j = self
            .manager
            .rpc
            .clone()
            .set_notify_interface(pb::SetNotifyInterfaceRequest {
                job_id: self.id.to_string(),
                object,
            })
            .await?;
        JobInfo::from_wire(j.into_inner())
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

    /// The job now, then after every change, until it reaches a final state.
    pub async fn watch(&self) -> Result<impl Stream<Item = Result<JobInfo>> + Send + 'static> {
        let stream = self
            .manager
            .rpc
            .clone()
            .watch_job(pb::WatchJobRequest {
                id: self.id.to_string(),
            })
            .await?
            .into_inner();
        Ok(stream.map(|r| r.map_err(Error::from).and_then(JobInfo::from_wire)))
    }

    /// Waits until the job is `transferred`, `error`, or final, and returns it then.
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
