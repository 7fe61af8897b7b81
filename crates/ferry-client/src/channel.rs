//! The callback channel: this process's one `Connect` stream, the objects exported on it,
//! and what the application registered (callback objects of jobs, class objects), kept
//! so that it can be registered again on a new channel when the daemon comes back after
//! going away.
//!
//! The channel's reader task holds only weak references, so the stream ends (and ferryd
//! forgets this process's objects) when the last [`Manager`] clone is dropped. When the
//! stream ends because the daemon went away, a task opens a new channel as soon as a
//! daemon answers again ([`crate::conn::Conn::reconnect`]) and registers everything again;
//! a daemon that comes back then delivers the notifications it kept in its outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferry_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use crate::callback::{Callback, CallbackResult, File};
use crate::error::{gone_reason, is_gone};
use crate::types::{FileInfo, FileRange, JobInfo};
use crate::{Error, Manager, Result};

/// How many times an operation on the channel is tried over new channels.
const MAX_ATTEMPTS: usize = 5;

/// A manager's callback channel and what it registered.
#[derive(Default)]
pub(crate) struct Callbacks {
    /// The open channel, if any.
    slot: tokio::sync::Mutex<Option<Arc<CallbackChannel>>>,
    /// Callback objects set on jobs through this manager (the last one per job).
    jobs: Mutex<HashMap<Uuid, Arc<dyn Callback>>>,
    /// Class objects registered through this manager.
    classes: Mutex<HashMap<Uuid, Arc<dyn Callback>>>,
}

impl Callbacks {
    /// The open channel, or a new one with everything registered again on it.
    pub(crate) async fn channel(&self, manager: &Manager) -> Result<Arc<CallbackChannel>> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_gone()) {
            return Ok(c.clone());
        }
        let c = CallbackChannel::open(manager).await?;
        self.register_again(manager, &c).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The open channel, if any (not reopened).
    pub(crate) async fn open_channel(&self) -> Option<Arc<CallbackChannel>> {
        self.slot
            .lock()
            .await
            .as_ref()
            .filter(|c| !c.is_gone())
            .cloned()
    }

    pub(crate) fn remember_class(&self, class: Uuid, object: Arc<dyn Callback>) {
        self.classes.lock().unwrap().insert(class, object);
    }

    pub(crate) fn remember_job(&self, job: Uuid, object: Option<Arc<dyn Callback>>) {
        let mut jobs = self.jobs.lock().unwrap();
        match object {
            Some(o) => jobs.insert(job, o),
            None => jobs.remove(&job),
        };
    }

    fn has_registrations(&self) -> bool {
        !self.jobs.lock().unwrap().is_empty() || !self.classes.lock().unwrap().is_empty()
    }

    /// Registers every class object and job callback object again on `ch` (a new
    /// channel). A job the daemon no longer knows, or that is final, is forgotten.
    async fn register_again(&self, manager: &Manager, ch: &CallbackChannel) -> Result<()> {
        let classes: Vec<_> = self
            .classes
            .lock()
            .unwrap()
            .iter()
            .map(|(c, o)| (*c, o.clone()))
            .collect();
        for (class, object) in classes {
            ch.register_class(manager, class, object).await?;
        }
        let jobs: Vec<_> = self
            .jobs
            .lock()
            .unwrap()
            .iter()
            .map(|(j, o)| (*j, o.clone()))
            .collect();
        for (job, object) in jobs {
            match ch.set_job_object(manager, job, object).await {
                Ok(()) => {}
                Err(e @ Error::DaemonGone { .. }) => return Err(e),
                Err(_) => {
                    self.jobs.lock().unwrap().remove(&job);
                }
            }
        }
        Ok(())
    }

    /// Runs `op` on the channel; when the daemon went away meanwhile, waits for it to come
    /// back and runs `op` on a new channel (with everything registered again).
    pub(crate) async fn with_channel<T, F, Fut>(&self, manager: &Manager, mut op: F) -> Result<T>
    where
        F: FnMut(Arc<CallbackChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempts = 0;
        loop {
            let generation = manager.conn.rpc().generation;
            let ch = self.channel(manager).await?;
            match op(ch.clone()).await {
                Err(Error::DaemonGone { reason, .. })
                    if manager.conn.reconnects() && attempts + 1 < MAX_ATTEMPTS =>
                {
                    attempts += 1;
                    ch.gone.store(true, Ordering::SeqCst);
                    manager.conn.reconnect(generation, reason).await?;
                }
                other => return other,
            }
        }
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

    /// Exports `object` and makes it the class object of `class` (one attempt: this
    /// channel's id means nothing to another daemon).
    pub(crate) async fn register_class(
        &self,
        manager: &Manager,
        class: Uuid,
        object: Arc<dyn Callback>,
    ) -> Result<()> {
        let object_id = self.export(object);
        let mut rpc = manager.conn.rpc();
        rpc.notifications
            .register_class_object(pb::RegisterClassObjectRequest {
                class_id: class.to_string(),
                class_object: Some(pb::ObjectRef {
                    channel_id: self.id,
                    object_id,
                }),
            })
            .await
            .map_err(|s| manager.conn.error(s))?;
        Ok(())
    }

    /// Exports `object` and makes it the callback object of `job` (one attempt).
    pub(crate) async fn set_job_object(
        &self,
        manager: &Manager,
        job: Uuid,
        object: Arc<dyn Callback>,
    ) -> Result<()> {
        self.set_job_object_info(manager, job, object).await?;
        Ok(())
    }

    /// As [`CallbackChannel::set_job_object`], returning the job as the daemon answered.
    pub(crate) async fn set_job_object_info(
        &self,
        manager: &Manager,
        job: Uuid,
        object: Arc<dyn Callback>,
    ) -> Result<Option<pb::Job>> {
        let object_id = self.export(object);
        let mut rpc = manager.conn.rpc();
        let reply = rpc
            .notifications
            .set_notify_interface(pb::SetNotifyInterfaceRequest {
                job_id: job.to_string(),
                callback: Some(pb::ObjectRef {
                    channel_id: self.id,
                    object_id,
                }),
            })
            .await
            .map_err(|s| manager.conn.error(s))?;
        Ok(reply.into_inner().job)
    }

    /// Opens the channel (waiting for the daemon to come back if it is away). The reader
    /// task holds only weak references, so the stream ends (and ferryd forgets this
    /// process's objects) when the last `Manager` clone is dropped.
    pub(crate) async fn open(manager: &Manager) -> Result<Arc<CallbackChannel>> {
        let hello = pb::ConnectRequest {
            kind: Some(pb::connect_request::Kind::Hello(pb::Hello {
                pid: std::process::id(),
            })),
        };
        let mut attempts = 0;
        let (out, mut inbound) = loop {
            let mut rpc = manager.conn.rpc();
            let generation = rpc.generation;
            let (out, rx) = mpsc::channel(64);
            out.send(hello.clone())
                .await
                .map_err(|_| Error::Protocol("callback channel closed at once".into()))?;
            match rpc.notifications.connect(ReceiverStream::new(rx)).await {
                Ok(reply) => break (out, reply.into_inner()),
                Err(s) if is_gone(&s) && manager.conn.reconnects() && attempts < MAX_ATTEMPTS => {
                    attempts += 1;
                    manager.conn.reconnect(generation, gone_reason(&s)).await?;
                }
                Err(s) => return Err(manager.conn.error(s)),
            }
        };
        let id = match inbound.message().await.map_err(|s| manager.conn.error(s))? {
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
        let registrations: Weak<Callbacks> = Arc::downgrade(&manager.callbacks);
        let conn = manager.conn.clone();
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
                        Some(obj) => {
                            dispatch(&plain, obj, inv.method, inv.job, inv.file, inv.ranges).await
                        }
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
            let Some(ch) = weak.upgrade() else {
                return; // the last manager is gone: nothing to keep registered
            };
            ch.gone.store(true, Ordering::SeqCst);
            drop(ch);
            // The daemon went away: register everything again once one answers.
            let Some(callbacks) = registrations.upgrade() else {
                return;
            };
            if conn.reconnects() && callbacks.has_registrations() {
                register_again_later(Manager { conn, callbacks }).await;
            }
        });
        Ok(channel)
    }
}

/// Opens a new channel for `manager` once a daemon answers, registering everything again.
/// (A boxed future of a named type: opening a channel spawns the task that may call this,
/// and the compiler cannot see through that cycle that the task can be sent.)
fn register_again_later(manager: Manager) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = manager.callback_channel().await;
    })
}

async fn dispatch(
    manager: &Manager,
    obj: Arc<dyn Callback>,
    method: i32,
    job: Option<pb::Job>,
    file: Option<pb::File>,
    ranges: Vec<pb::FileRange>,
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
        Ok(pb::CallbackMethod::FileRangesTransferred) => {
            let f = FileInfo::from_wire(file.ok_or("the invoke carried no file")?)?;
            let ranges = ranges.iter().map(FileRange::from_wire).collect();
            obj.file_ranges_transferred(handle.clone(), File::new(handle, f), ranges)
                .await
        }
        _ => Err(format!("unknown callback method {method}").into()),
    }
}
