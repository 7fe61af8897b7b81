//! Callbacks (BITS's `IBackgroundCopyCallback2`): objects this process exports to ferryd on
//! one `Connect` stream, notification classes, handlers and validation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferry_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use crate::types::{FileInfo, JobInfo};
use crate::{Error, Job, Manager, Result};

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
    /// job per 500 ms).
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
        let f = self
            .job
            .manager()
            .rpc
            .notifications
            .clone()
            .set_validation_state(pb::SetValidationStateRequest {
                job_id: self.job.id().to_string(),
                file_index: self.info.index,
                valid,
            })
            .await?
            .into_inner()
            .file
            .ok_or_else(|| Error::Protocol("SetValidationState returned no file".into()))?;
        FileInfo::from_wire(f)
    }
}

/// The open `Connect` stream of this process and the objects exported on it.
pub(crate) struct CallbackChannel {
    pub(crate) id: u64,
    out: mpsc::Sender<pb::ConnectRequest>,
    objects: Mutex<HashMap<u64, Arc<dyn Callback>>>,
    next_object: AtomicU64,
    /// The stream ended: the daemon went away (shut down, or the connection broke) and
    /// forgot this channel and its objects.
    gone: AtomicBool,
}

impl CallbackChannel {
    /// The daemon no longer knows this channel: a new one must be opened.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// The object exported as `id`, if any.
    pub(crate) fn object(&self, id: u64) -> Option<Arc<dyn Callback>> {
        self.objects.lock().unwrap().get(&id).cloned()
    }

    /// Exports `obj`, returning its object id on this channel.
    pub(crate) fn export(&self, obj: Arc<dyn Callback>) -> u64 {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        self.objects.lock().unwrap().insert(id, obj);
        id
    }

    /// Opens the channel. The reader task holds only a weak reference, so the stream ends
    /// (and ferryd forgets this process's objects) when the last `Manager` clone is dropped.
    pub(crate) async fn open(manager: &Manager) -> Result<Arc<CallbackChannel>> {
        let (out, rx) = mpsc::channel(64);
        out.send(pb::ConnectRequest {
            kind: Some(pb::connect_request::Kind::Hello(pb::Hello {
                pid: std::process::id(),
            })),
        })
        .await
        .map_err(|_| Error::Protocol("callback channel closed at once".into()))?;
        let mut inbound = manager
            .rpc
            .notifications
            .clone()
            .connect(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let id = match inbound.message().await? {
            Some(pb::ConnectResponse {
                kind: Some(pb::connect_response::Kind::Welcome(w)),
            }) => w.channel_id,
            _ => {
                return Err(Error::Protocol(
                    "ferryd did not welcome the callback channel".into(),
                ))
            }
        };
        let channel = Arc::new(CallbackChannel {
            id,
            out,
            objects: Mutex::new(HashMap::new()),
            next_object: AtomicU64::new(1),
            gone: AtomicBool::new(false),
        });
        let weak: Weak<CallbackChannel> = Arc::downgrade(&channel);
        // Jobs handed to callbacks use a manager without this channel, so they do not keep
        // it open.
        let plain = manager.without_callbacks();
        tokio::spawn(async move {
            // Ends when the daemon ends the stream (a shutdown ends it with UNAVAILABLE),
            // the connection breaks, or the last `Manager` clone is dropped.
            while let Ok(Some(msg)) = inbound.message().await {
                let Some(pb::connect_response::Kind::Invoke(inv)) = msg.kind else {
                    continue;
                };
                let Some(ch) = weak.upgrade() else { break };
                let obj = ch.objects.lock().unwrap().get(&inv.object_id).cloned();
                let weak = weak.clone();
                let plain = plain.clone();
                drop(ch);
                tokio::spawn(async move {
                    let result = match obj {
                        Some(obj) => dispatch(&plain, obj, inv.method, inv.job, inv.file).await,
                        None => Err(format!("no object {} on this channel", inv.object_id).into()),
                    };
                    let reply = pb::InvokeReply {
                        invoke_id: inv.invoke_id,
                        ok: result.is_ok(),
                        error: result.err().map(|e| e.to_string()).unwrap_or_default(),
                    };
                    if let Some(ch) = weak.upgrade() {
                        let _ = ch
                            .out
                            .send(pb::ConnectRequest {
                                kind: Some(pb::connect_request::Kind::Reply(reply)),
                            })
                            .await;
                    }
                });
            }
            if let Some(ch) = weak.upgrade() {
                ch.gone.store(true, Ordering::SeqCst);
            }
        });
        Ok(channel)
    }
}

async fn dispatch(
    manager: &Manager,
    obj: Arc<dyn Callback>,
    method: i32,
    job: Option<pb::Job>,
    file: Option<pb::File>,
) -> CallbackResult {
    let info = JobInfo::from_wire(job.ok_or("the invoke carried no job")?)?;
    let handle = manager.job_unchecked(info.id);
    match pb::CallbackMethod::try_from(method) {
        Ok(pb::CallbackMethod::JobTransferred) => obj.job_transferred(handle, info).await,
        Ok(pb::CallbackMethod::JobError) => obj.job_error(handle, info).await,
        Ok(pb::CallbackMethod::JobModification) => obj.job_modification(handle, info).await,
        Ok(pb::CallbackMethod::FileTransferred) => {
            let f = FileInfo::from_wire(file.ok_or("the invoke carried no file")?)?;
            obj.file_transferred(handle.clone(), File::new(handle, f))
                .await
        }
        _ => Err(format!("unknown callback method {method}").into()),
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
