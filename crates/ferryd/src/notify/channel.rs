//! Callback channels: one `Connect` stream per client process. ferryd sends invocations
//! on it and waits for the client's reply. The messages are the daemon's own types; the
//! rpc layer turns them into wire messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::model::{escape_control_chars, FileRange, FileView, JobView};

/// The methods of a callback object (BITS's `IBackgroundCopyCallback2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMethod {
    JobTransferred,
    JobError,
    JobModification,
    FileTransferred,
    /// BITS: `IBackgroundCopyCallback3::FileRangesTransferred`.
    FileRangesTransferred,
}

/// A call of a method of a client's object.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Names the call; the client's reply carries it back.
    pub invoke_id: u64,
    /// The object called.
    pub object_id: u64,
    pub method: CallbackMethod,
    pub job: JobView,
    /// The file, for `file_transferred` and `file_ranges_transferred`.
    pub file: Option<FileView>,
    /// The ranges that landed, for `file_ranges_transferred`.
    pub ranges: Vec<FileRange>,
}

/// Where a channel's invocations go (the rpc layer streams them to the client).
pub type Outbound = mpsc::Sender<Invocation>;

/// A connected client process that exports callback objects.
pub struct Channel {
    pub id: u64,
    pub uid: u32,
    tx: Outbound,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<(), String>>>>,
    next_invoke: AtomicU64,
    /// Fires when the client's stream ends.
    pub closed: CancellationToken,
}

impl Channel {
    pub fn new(id: u64, uid: u32, tx: Outbound) -> Channel {
        Channel {
            id,
            uid,
            tx,
            pending: Mutex::new(HashMap::new()),
            next_invoke: AtomicU64::new(1),
            closed: CancellationToken::new(),
        }
    }

    /// Calls `method` on the client's object and waits for its answer.
    pub async fn invoke(
        &self,
        object_id: u64,
        method: CallbackMethod,
        job: JobView,
        file: Option<FileView>,
        timeout: Duration,
    ) -> Result<(), String> {
        self.invoke_with_ranges(object_id, method, job, file, Vec::new(), timeout)
            .await
    }

    /// Calls `method` with the `ranges` that landed (`file_ranges_transferred`) and
    /// waits for the answer.
    pub async fn invoke_with_ranges(
        &self,
        object_id: u64,
        method: CallbackMethod,
        job: JobView,
        file: Option<FileView>,
        ranges: Vec<FileRange>,
        timeout: Duration,
    ) -> Result<(), String> {
        if self.closed.is_cancelled() {
            return Err("the application's callback channel is closed".into());
        }
        let invoke_id = self.next_invoke.fetch_add(1, Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        self.pending.lock().insert(invoke_id, done);
        let msg = Invocation {
            invoke_id,
            object_id,
            method,
            job,
            file,
            ranges,
        };
        if self.tx.send(msg).await.is_err() {
            self.pending.lock().remove(&invoke_id);
            return Err("the application disconnected".into());
        }
        let result = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err("the application disconnected".into())),
            _ = tokio::time::sleep(timeout) => Err(format!("the callback did not answer within {} s", timeout.as_secs())),
            _ = self.closed.cancelled() => Err("the application disconnected".into()),
        };
        self.pending.lock().remove(&invoke_id);
        result
    }

    /// The client answered invocation `invoke_id`: `Err` with its error text when the
    /// callback failed. The text becomes the job's `last_notification_error` and a log
    /// line, so its control characters are escaped: nothing to refuse it to.
    pub fn reply(&self, invoke_id: u64, result: Result<(), String>) {
        if let Some(done) = self.pending.lock().remove(&invoke_id) {
            let _ = done.send(result.map_err(|error| {
                if error.is_empty() {
                    "the callback returned an error".to_string()
                } else {
                    format!(
                        "the callback returned an error: {}",
                        escape_control_chars(&error)
                    )
                }
            }));
        }
    }

    /// The stream ended: every waiting invoke fails.
    pub fn close(&self) {
        self.closed.cancel();
        self.pending.lock().clear();
    }
}
