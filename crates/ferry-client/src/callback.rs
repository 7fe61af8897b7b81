//! Callbacks (BITS's `IBackgroundCopyCallback2`): the methods ferryd calls on objects this
//! process exports (see `channel.rs` for the `Connect` stream they travel on), the files
//! they are handed, handlers and validation.

use ferry_proto::v1 as pb;
use uuid::Uuid;

use crate::conn::Retry;
use crate::types::{FileInfo, FileRange, JobInfo};
use crate::{Error, Job, Result};

/// What a callback method returns: an error makes ferryd retry the notification after the
/// job's minimum retry delay (or run the job's notify command, if one is set).
pub type CallbackResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The methods ferryd calls (BITS's `IBackgroundCopyCallback2`). Every method has a default
/// that does nothing and succeeds; implement those you need. Calls for one job arrive in
/// order, one at a time. A method may call back into ferry (e.g. `job.complete()`).
#[async_trait::async_trait]
pub trait Callback: Send + Sync + 'static {
    /// Every file of the job is transferred (flag `JOB_TRANSFERRED`).
    async fn job_transferred(&self, job: Job, info: JobInfo) -> CallbackResult {
        let _ = (job, info);
        Ok(())
    }

    /// The job entered `error` (flag `JOB_ERROR`); `info.error` says why.
    async fn job_error(&self, job: Job, info: JobInfo) -> CallbackResult {
        let _ = (job, info);
        Ok(())
    }

    /// The job changed state or made progress (flag `JOB_MODIFICATION`; at most one call per
    /// job per its minimum notification interval, 500 ms unless
    /// [`crate::Job::set_minimum_notification_interval_ms`] set another).
    async fn job_modification(&self, job: Job, info: JobInfo) -> CallbackResult {
        let _ = (job, info);
        Ok(())
    }

    /// One file is transferred (flag `FILE_TRANSFERRED`); its bytes can be read at
    /// [`File::temporary_path`] and judged with [`File::set_validation_state`].
    async fn file_transferred(&self, job: Job, file: File) -> CallbackResult {
        let _ = (job, file);
        Ok(())
    }

    /// Ranges of a file landed (flag `FILE_RANGES_TRANSFERRED`; BITS:
    /// `IBackgroundCopyCallback3::FileRangesTransferred`): `ranges`, in offsets of the
    /// remote file, are on disk. For an on-demand file, after each batch of requested
    /// ranges; for a file added with ranges, once all of them are. Not retried: a call
    /// that fails or finds no receiver is dropped.
    async fn file_ranges_transferred(
        &self,
        job: Job,
        file: File,
        ranges: Vec<FileRange>,
    ) -> CallbackResult {
        let _ = (job, file, ranges);
        Ok(())
    }
}

/// A file of a job, as a callback receives it (BITS's `IBackgroundCopyFile3`).
#[derive(Debug, Clone)]
pub struct File {
    job: Job,
    info: FileInfo,
}

impl File {
    /// A handle on file `info` of `job`.
    pub fn new(job: Job, info: FileInfo) -> File {
        File { job, info }
    }

    /// The file as it was when the call was made.
    pub fn info(&self) -> &FileInfo {
        &self.info
    }

    /// Its index in the job.
    pub fn index(&self) -> u32 {
        self.info.index
    }

    /// Where its bytes are until the job is completed (BITS's `GetTemporaryName`).
    pub fn temporary_path(&self) -> &str {
        &self.info.temporary_path
    }

    /// Accepts (`true`) or rejects (`false`) the file; a rejected file is discarded and
    /// the job goes to `error` with the validation context.
    pub async fn set_validation_state(&self, valid: bool) -> Result<FileInfo> {
        let request = pb::SetValidationStateRequest {
            job_id: self.job.id().to_string(),
            file_index: self.info.index,
            valid,
        };
        let f = self
            .job
            .manager()
            .conn
            .call(Retry::IfNeverRan, |mut rpc| {
                let request = request.clone();
                async move { rpc.notifications.set_validation_state(request).await }
            })
            .await?
            .file
            .ok_or_else(|| Error::Protocol("SetValidationState returned no file".into()))?;
        FileInfo::from_wire(f)
    }
}

/// A registered notification handler: the command ferryd starts for a class.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandlerInfo {
    /// The notification class.
    pub class: Uuid,
    /// The command (absolute program path first).
    pub argv: Vec<String>,
    /// Its working folder, if set.
    pub workdir: Option<String>,
    /// When it was registered, ms since the Unix epoch.
    pub registered_unix_ms: i64,
}

impl HandlerInfo {
    pub(crate) fn from_wire(h: pb::Handler) -> Result<HandlerInfo> {
        Ok(HandlerInfo {
            class: Uuid::parse_str(&h.class_id)
                .map_err(|_| Error::Protocol(format!("bad class '{}'", h.class_id)))?,
            argv: h.argv,
            workdir: Some(h.workdir).filter(|w| !w.is_empty()),
            registered_unix_ms: h.registered_unix_ms,
        })
    }
}

/// The class this process was started for, when ferryd activated it as a handler
/// (`FERRY_ACTIVATION_CLASS`).
pub fn activation_class() -> Option<Uuid> {
    std::env::var("FERRY_ACTIVATION_CLASS")
        .ok()
        .and_then(|c| Uuid::parse_str(c.trim()).ok())
}
