//! Callback channels: one `Connect` stream per client process. ferryd sends `Invoke`
//! messages on it and waits for the client's reply.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Messages ferryd sends on a channel.
pub type Outbound = mpsc::Sender<Result<pb::ServerMessage, tonic::Status>>;

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
        method: pb::CallbackMethod,
        job: pb::Job,
        file: Option<pb::File>,
        timeout: Duration,
    ) -> Result<(), String> {
        if self.closed.is_cancelled() {
            return Err("the application's callback channel is closed".into());
        }
        let invoke_id = self.next_invoke.fetch_add(1, Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        self.pending.lock().insert(invoke_id, done);
        let msg = pb::ServerMessage {
            kind: Some(pb::server_message::Kind::Invoke(pb::Invoke {
                invoke_id,
                object_id,
                method: method as i32,
                job: Some(job),
                file,
            })),
        };
        if self.tx.send(Ok(msg)).await.is_err() {
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

    /// The client answered an invoke.
    pub fn reply(&self, r: pb::InvokeReply) {
        if let Some(done) = self.pending.lock().remove(&r.invoke_id) {
            let _ = done.send(if r.ok {
                Ok(())
            } else if r.error.is_empty() {
                Err("the callback returned an error".into())
            } else {
                Err(format!("the callback returned an error: {}", r.error))
            });
        }
    }

    /// The stream ended: every waiting invoke fails.
    pub fn close(&self) {
        self.closed.cancel();
        self.pending.lock().clear();
    }
}
