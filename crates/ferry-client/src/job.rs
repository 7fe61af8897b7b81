//! [`Job`]: one transfer job (BITS's `IBackgroundCopyJob`).

use ferry_proto::v1 as pb;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use std::sync::Arc;

use crate::callback::{Callback, File};
use crate::conn::Retry;
use crate::error::{gone_reason, is_gone};
use crate::manager::LIST_PAGE_SIZE;
use crate::types::{
    CompleteOutcome, FileInfo, FileRange, FileSpec, JobInfo, JobProperties, JobState, NotifyFlags,
};
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
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let job_id = job_id.clone();
                async move { rpc.jobs.get_job(pb::GetJobRequest { job_id }).await }
            })
            .await?;
        job_of(r.job, "GetJob")
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

    /// Adds a file of which only `ranges` are downloaded, packed one after the other in
    /// this order into `local_path` (BITS: `IBackgroundCopyJob3::AddFileWithRanges`).
    /// Overlapping, empty or too many ranges are refused (`InvalidArgument`).
    pub async fn add_file_with_ranges(
        &self,
        remote_url: &str,
        local_path: &str,
        ranges: &[FileRange],
    ) -> Result<FileInfo> {
        let spec = FileSpec::new(remote_url, local_path).ranges(ranges.iter().copied());
        let mut files = self.add_files(vec![spec]).await?;
        files
            .pop()
            .ok_or_else(|| Error::Protocol("AddFiles returned no file".into()))
    }

    /// Asks for `ranges` of on-demand file `index` while the job runs (BITS:
    /// `IBackgroundCopyFile6::RequestFileRanges`): they may overlap each other and those
    /// asked before. Each lands at its own offset of the local file; the flag
    /// `FILE_RANGES_TRANSFERRED` calls [`crate::Callback::file_ranges_transferred`] as
    /// they do. A file that is not on demand is `FailedPrecondition`; a range past the end
    /// of the remote file (once its size is known) is `InvalidArgument`.
    pub async fn request_file_ranges(&self, index: u32, ranges: &[FileRange]) -> Result<FileInfo> {
        let request = pb::RequestFileRangesRequest {
            job_id: self.id.to_string(),
            file_index: index,
            ranges: ranges.iter().map(|r| r.to_wire()).collect(),
        };
        let reply = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.request_file_ranges(request).await }
            })
            .await?;
        FileInfo::from_wire(
            reply
                .file
                .ok_or_else(|| Error::Protocol("RequestFileRanges returned no file".into()))?,
        )
    }

    /// Tells where the application reads on-demand file `index` (BITS:
    /// `IBackgroundCopyFile6::UpdateDownloadPosition`): missing bytes from `position` on
    /// are fetched first.
    pub async fn update_download_position(&self, index: u32, position: u64) -> Result<FileInfo> {
        let request = pb::UpdateDownloadPositionRequest {
            job_id: self.id.to_string(),
            file_index: index,
            position,
        };
        let reply = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.update_download_position(request).await }
            })
            .await?;
        FileInfo::from_wire(
            reply
                .file
                .ok_or_else(|| Error::Protocol("UpdateDownloadPosition returned no file".into()))?,
        )
    }

    /// The ranges file `index` was added with, or that were requested of it (BITS:
    /// `IBackgroundCopyFile2::GetFileRanges`); empty for a whole file.
    pub async fn file_ranges(&self, index: u32) -> Result<Vec<FileRange>> {
        Ok(self.file(index).await?.info().ranges.clone())
    }

    /// The ranges of file `index` whose bytes are on disk (BITS:
    /// `IBackgroundCopyFile6::GetFilledFileRanges`).
    pub async fn filled_file_ranges(&self, index: u32) -> Result<Vec<FileRange>> {
        Ok(self.file(index).await?.info().filled_ranges.clone())
    }

    /// Adds files in one call (all or none).
    pub async fn add_files(&self, files: Vec<FileSpec>) -> Result<Vec<FileInfo>> {
        let request = pb::AddFilesRequest {
            job_id: self.id.to_string(),
            files: files.into_iter().map(FileSpec::into_wire).collect(),
        };
        let reply = self
            .manager
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.add_files(request).await }
            })
            .await?;
        reply.files.into_iter().map(FileInfo::from_wire).collect()
    }

    /// Changes file `index`'s URL, keeping its progress, and fetches it from there from now
    /// on (BITS: `IBackgroundCopyFile2::SetRemoteName`). The URL is checked as
    /// [`Job::add_files`] checks one. Allowed until the job is final; a running job
    /// continues from the new URL at once. The bytes already downloaded are kept when
    /// the new server has the same validator (ETag, else Last-Modified) for the file;
    /// else the file starts over from zero, as in BITS.
    pub async fn set_remote_name(&self, index: u32, remote_url: &str) -> Result<FileInfo> {
        let request = pb::SetRemoteNameRequest {
            job_id: self.job_id(),
            file_index: index,
            remote_url: remote_url.to_string(),
        };
        let reply = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.set_remote_name(request).await }
            })
            .await?;
        FileInfo::from_wire(
            reply
                .file
                .ok_or_else(|| Error::Protocol("SetRemoteName returned no file".into()))?,
        )
    }

    /// Replaces `old_prefix` with `new_prefix` in every URL of the job that starts with it
    /// (each file's URL and its mirrors), keeping progress as [`Job::set_remote_name`]
    /// does (BITS: `IBackgroundCopyJob3::ReplaceRemotePrefix`). All or none. Returns how
    /// many files changed (0 when no URL starts with `old_prefix`). The prefix is
    /// compared with the URLs as the daemon keeps them: parsed, so the scheme and host
    /// are in lower case.
    pub async fn replace_remote_prefix(&self, old_prefix: &str, new_prefix: &str) -> Result<u32> {
        let request = pb::ReplaceRemotePrefixRequest {
            job_id: self.job_id(),
            old_prefix: old_prefix.to_string(),
            new_prefix: new_prefix.to_string(),
        };
        let reply = self
            .manager
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.replace_remote_prefix(request).await }
            })
            .await?;
        Ok(reply.files_changed)
    }

    /// The job's files in order: every file (the daemon's pages are fetched one after
    /// another).
    pub async fn files(&self) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListFilesRequest {
                job_id: self.job_id(),
                page_size: LIST_PAGE_SIZE,
                page_token,
            };
            let page = self
                .manager
                .conn
                .call(Retry::Always, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.jobs.list_files(request).await }
                })
                .await?;
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
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let job_id = job_id.clone();
                async move { rpc.jobs.resume_job(pb::ResumeJobRequest { job_id }).await }
            })
            .await?;
        job_of(r.job, "ResumeJob")
    }

    /// Stops transferring; progress is kept.
    pub async fn suspend(&self) -> Result<JobInfo> {
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let job_id = job_id.clone();
                async move { rpc.jobs.suspend_job(pb::SuspendJobRequest { job_id }).await }
            })
            .await?;
        job_of(r.job, "SuspendJob")
    }

    /// Cancels the job and deletes its temporary files.
    pub async fn cancel(&self) -> Result<JobInfo> {
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let job_id = job_id.clone();
                async move { rpc.jobs.cancel_job(pb::CancelJobRequest { job_id }).await }
            })
            .await?;
        job_of(r.job, "CancelJob")
    }

    /// Moves the transferred files to their destinations (atomically) and discards the rest.
    pub async fn complete(&self) -> Result<CompleteOutcome> {
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let job_id = job_id.clone();
                async move {
                    rpc.jobs
                        .complete_job(pb::CompleteJobRequest { job_id })
                        .await
                }
            })
            .await?;
        Ok(CompleteOutcome {
            job: job_of(r.job, "CompleteJob")?,
            files_committed: r.files_committed,
            files_discarded: r.files_discarded,
        })
    }

    /// Changes properties.
    pub async fn set(&self, props: JobProperties) -> Result<JobInfo> {
        let request = props.into_wire(self.job_id());
        let r = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = request.clone();
                async move { rpc.jobs.set_job_properties(request).await }
            })
            .await?;
        job_of(r.job, "SetJobProperties")
    }

    /// Sets (`Some`) or clears (`None`) the job's callback object; the last call wins. The
    /// object lives in this process: the registration ends when the process disconnects.
    /// If the job has an undelivered `job_transferred` or `job_error`, it is delivered at once.
    pub async fn set_notify_interface(&self, object: Option<Arc<dyn Callback>>) -> Result<JobInfo> {
        let callbacks = &self.manager.callbacks;
        let job = match &object {
            Some(obj) => {
                callbacks
                    .with_channel(&self.manager, |ch| {
                        let obj = obj.clone();
                        async move { ch.set_job_object_info(&self.manager, self.id, obj).await }
                    })
                    .await?
            }
            None => {
                let job_id = self.job_id();
                self.manager
                    .conn
                    .call(Retry::Always, |mut rpc| {
                        let job_id = job_id.clone();
                        async move {
                            rpc.notifications
                                .set_notify_interface(pb::SetNotifyInterfaceRequest {
                                    job_id,
                                    callback: None,
                                })
                                .await
                        }
                    })
                    .await?
                    .job
            }
        };
        callbacks.remember_job(self.id, object);
        job_of(job, "SetNotifyInterface")
    }

    /// The job's callback object (BITS's `GetNotifyInterface`): `None` when none is set,
    /// it was cleared, or the process that exported it disconnected.
    pub async fn notify_interface(&self) -> Result<Option<NotifyInterface>> {
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let job_id = job_id.clone();
                async move {
                    rpc.notifications
                        .get_notify_interface(pb::GetNotifyInterfaceRequest { job_id })
                        .await
                }
            })
            .await?;
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

    /// Makes the value of every header of the job write-only, not only of
    /// authorization-like ones (BITS's `MakeCustomHeadersWriteOnly`): they are still sent,
    /// and shown as `Name: ***`. It cannot be undone.
    pub async fn make_headers_write_only(&self) -> Result<JobInfo> {
        self.set(JobProperties {
            headers_write_only: Some(true),
            ..Default::default()
        })
        .await
    }

    /// Sets the largest file the job downloads, in bytes; 0 removes the limit (BITS:
    /// `IBackgroundCopyJob5::SetProperty(BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE)`). A file
    /// whose announced or actual size passes it fails the job for good (code
    /// `max_download_size`); no byte past the limit is written.
    pub async fn set_max_download_size(&self, bytes: u64) -> Result<JobInfo> {
        self.set(JobProperties {
            max_download_size: Some(bytes),
            ..Default::default()
        })
        .await
    }

    /// Sets the least time between two `job_modification` callbacks of the job, in
    /// milliseconds (at most a day); 0 restores the default, 500 (BITS:
    /// `IBackgroundCopyJob5::SetProperty(BITS_JOB_PROPERTY_MINIMUM_NOTIFICATION_INTERVAL_MS)`).
    pub async fn set_minimum_notification_interval_ms(&self, ms: u64) -> Result<JobInfo> {
        self.set(JobProperties {
            minimum_notification_interval_ms: Some(ms),
            ..Default::default()
        })
        .await
    }

    /// Sets the HTTP method of the job's requests, e.g. `POST` for an upload or a
    /// download (BITS: `IBackgroundCopyJobHttpOptions2::SetHttpMethod`); `""` restores the
    /// default (GET, or PUT for an upload). An HTTP token of at most 32 characters, not
    /// `CONNECT`; refused for tus uploads.
    pub async fn set_http_method(&self, method: &str) -> Result<JobInfo> {
        self.set(JobProperties {
            http_method: Some(method.into()),
            ..Default::default()
        })
        .await
    }

    /// Makes the job the caller's (BITS: `IBackgroundCopyJob2::TakeOwnership`,
    /// `bitsadmin /takeownership`): for root and the members of the system-wide daemon's
    /// admin group, on another user's job. The job moves to the caller with its id,
    /// files (destinations as they were) and properties, but without its progress, its
    /// credentials and secret header values, its notify command, notification class, CA
    /// file and reply file; it arrives suspended. Its files are then opened as the
    /// caller: look at their destinations before resuming it. A job already the caller's
    /// is returned as it is.
    pub async fn take_ownership(&self) -> Result<JobInfo> {
        let job_id = self.job_id();
        let r = self
            .manager
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let job_id = job_id.clone();
                async move {
                    rpc.jobs
                        .take_ownership(pb::TakeOwnershipRequest {
                            job_id,
                            ..Default::default()
                        })
                        .await
                }
            })
            .await?;
        job_of(r.job, "TakeOwnership")
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
    /// daemon goes away meanwhile, the watch waits for it to come back (see
    /// [`crate::ConnectOptions::reconnect_timeout`]) and goes on with the job as the new
    /// daemon has it; if it does not come back, the last item is [`Error::DaemonGone`].
    pub async fn watch(&self) -> Result<impl Stream<Item = Result<JobInfo>> + Send + 'static> {
        let (stream, generation) = self.open_watch().await?;
        let job = self.clone();
        let state = Watch::Open(Box::new(stream), generation);
        Ok(futures::stream::unfold(
            (job, state),
            |(job, state)| async move {
                let (mut stream, mut generation) = match state {
                    Watch::Open(s, g) => (*s, g),
                    Watch::Ended => return None,
                };
                loop {
                    match stream.message().await {
                        Ok(Some(r)) => {
                            let item = job_of(r.job, "WatchJob");
                            return Some((item, (job, Watch::Open(Box::new(stream), generation))));
                        }
                        Ok(None) => return None,
                        Err(s) if is_gone(&s) && job.manager.conn.reconnects() => {
                            let conn = &job.manager.conn;
                            let reopened = match conn.reconnect(generation, gone_reason(&s)).await {
                                Ok(()) => job.open_watch().await,
                                Err(e) => Err(e),
                            };
                            match reopened {
                                Ok((s, g)) => (stream, generation) = (s, g),
                                Err(e) => return Some((Err(e), (job, Watch::Ended))),
                            }
                        }
                        Err(s) => {
                            let e = job.manager.conn.error(s);
                            return Some((Err(e), (job, Watch::Ended)));
                        }
                    }
                }
            },
        ))
    }

    /// Opens a `WatchJob` stream (waiting for the daemon if it is away); returns it with the
    /// generation of the connection it runs on.
    async fn open_watch(&self) -> Result<(tonic::Streaming<pb::WatchJobResponse>, u64)> {
        let job_id = self.job_id();
        let generation = std::sync::atomic::AtomicU64::new(0);
        let stream = self
            .manager
            .conn
            .call(Retry::Always, |mut rpc| {
                let job_id = job_id.clone();
                let generation = &generation;
                async move {
                    generation.store(rpc.generation, std::sync::atomic::Ordering::Relaxed);
                    rpc.jobs.watch_job(pb::WatchJobRequest { job_id }).await
                }
            })
            .await?;
        Ok((stream, generation.into_inner()))
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

/// Where a job watch stands.
enum Watch {
    /// Reading this stream, opened on the connection of this generation.
    Open(Box<tonic::Streaming<pb::WatchJobResponse>>, u64),
    /// Ended (final state, or an error was reported).
    Ended,
}
