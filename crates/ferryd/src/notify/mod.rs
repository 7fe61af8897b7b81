//! Notifications (DESIGN §6): callback channels and the objects exported on them, class
//! objects and handler activation, command-line notifications, and the outbox that makes
//! `job_transferred`, `job_error` and `file_transferred` durable.
//!
//! Each job with something to deliver has one delivery task (`delivery.rs`), so calls for
//! one job arrive in order, one at a time, and a slow receiver holds up only its own job.

mod activation;
pub mod channel;
mod command;
mod delivery;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::model::OutboxRecord;
use crate::service::Service;
use channel::{Channel, Outbound};

/// An object a client exported on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjRef {
    pub channel: u64,
    pub object: u64,
}

#[derive(Default)]
struct JobQueue {
    entries: VecDeque<OutboxRecord>,
    /// A coalesced `job_modification` is waiting.
    modification: bool,
    /// Entries whose callback failed while a notify command is set: only the command runs.
    command_only: HashSet<i64>,
    running: bool,
    kick: Arc<Notify>,
}

/// What the next delivery is.
pub(crate) enum Item {
    Entry {
        record: OutboxRecord,
        command_only: bool,
    },
    Modification,
}

/// The notification state of the daemon.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<u64, Arc<Channel>>>,
    next_channel: AtomicU64,
    interfaces: Mutex<HashMap<Uuid, ObjRef>>,
    class_objects: Mutex<HashMap<(u32, Uuid), ObjRef>>,
    /// Woken on every class-object registration (activation waits on it).
    class_registered: Notify,
    queues: Mutex<HashMap<Uuid, JobQueue>>,
    next_outbox: AtomicI64,
}

impl Notifier {
    /// A notifier holding `outbox` (loaded at start-up).
    pub fn new(outbox: Vec<OutboxRecord>) -> Notifier {
        let n = Notifier::default();
        let max = outbox.iter().map(|o| o.id).max().unwrap_or(0);
        n.next_outbox.store(max + 1, Ordering::SeqCst);
        {
            let mut q = n.queues.lock();
            for o in outbox {
                q.entry(o.job_id).or_default().entries.push_back(o);
            }
        }
        n
    }

    /// A fresh outbox id.
    pub fn next_outbox_id(&self) -> i64 {
        self.next_outbox.fetch_add(1, Ordering::SeqCst)
    }

    /// Starts the delivery tasks of every job with pending entries (start-up).
    pub fn start(svc: &Arc<Service>) {
        let jobs: Vec<Uuid> = svc.notifier.queues.lock().keys().copied().collect();
        for j in jobs {
            Notifier::kick(svc, j);
        }
    }

    /// Opens a channel for a client process of `uid`.
    pub fn open_channel(&self, uid: u32, tx: Outbound) -> Arc<Channel> {
        let id = self.next_channel.fetch_add(1, Ordering::SeqCst) + 1;
        let ch = Arc::new(Channel::new(id, uid, tx));
        self.channels.lock().insert(id, ch.clone());
        ch
    }

    /// The channel `id` if it is alive and belongs to `uid`.
    pub fn channel(&self, id: u64, uid: u32) -> Option<Arc<Channel>> {
        self.channels
            .lock()
            .get(&id)
            .filter(|c| c.uid == uid && !c.closed.is_cancelled())
            .cloned()
    }

    /// A client's stream ended: its objects are gone; jobs fall back to their classes.
    pub fn close_channel(svc: &Arc<Service>, id: u64) {
        let n = &svc.notifier;
        if let Some(ch) = n.channels.lock().remove(&id) {
            ch.close();
        }
        n.interfaces.lock().retain(|_, o| o.channel != id);
        n.class_objects.lock().retain(|_, o| o.channel != id);
        tracing::debug!(channel = id, "callback channel closed");
        Notifier::kick_all(svc);
    }

    /// Sets or clears a job's callback interface (the last call wins).
    pub fn set_interface(svc: &Arc<Service>, job: Uuid, obj: Option<ObjRef>) {
        if obj.is_some() {
            // A new receiver takes undelivered notifications at once, not after the retry delay.
            if let Some(q) = svc.notifier.queues.lock().get_mut(&job) {
                for e in q.entries.iter_mut() {
                    e.next_attempt_ms = 0;
                }
            }
        }
        {
            let mut m = svc.notifier.interfaces.lock();
            match obj {
                Some(o) => {
                    m.insert(job, o);
                }
                None => {
                    m.remove(&job);
                }
            }
        }
        Notifier::kick(svc, job);
    }

    /// Registers a class object for `(uid, class)`.
    pub fn register_class_object(svc: &Arc<Service>, uid: u32, class: Uuid, obj: ObjRef) {
        svc.notifier.class_objects.lock().insert((uid, class), obj);
        svc.notifier.class_registered.notify_waiters();
        let svc2 = svc.clone();
        let due: Vec<Uuid> = {
            let inner = svc2.lock();
            inner
                .jobs
                .values()
                .filter(|e| e.job.owner_uid == uid && e.job.notification_class == Some(class))
                .map(|e| e.job.id)
                .collect()
        };
        {
            let mut q = svc.notifier.queues.lock();
            for id in due {
                if let Some(q) = q.get_mut(&id) {
                    for e in q.entries.iter_mut() {
                        e.next_attempt_ms = 0;
                    }
                }
            }
        }
        Notifier::kick_all(svc);
    }

    fn live(&self, o: ObjRef, uid: u32) -> Option<(Arc<Channel>, u64)> {
        self.channel(o.channel, uid).map(|c| (c, o.object))
    }

    /// The live callback object of a job, if any.
    pub(crate) fn interface_of(&self, job: Uuid, uid: u32) -> Option<(Arc<Channel>, u64)> {
        let o = *self.interfaces.lock().get(&job)?;
        self.live(o, uid)
    }

    /// The live class object for `(uid, class)`, if any.
    pub(crate) fn class_object(&self, uid: u32, class: Uuid) -> Option<(Arc<Channel>, u64)> {
        let o = *self.class_objects.lock().get(&(uid, class))?;
        self.live(o, uid)
    }

    /// Adds durable entries (already written to the store) and wakes the job's delivery.
    pub fn enqueue(svc: &Arc<Service>, job: Uuid, entries: Vec<OutboxRecord>) {
        if entries.is_empty() {
            return;
        }
        svc.notifier
            .queues
            .lock()
            .entry(job)
            .or_default()
            .entries
            .extend(entries);
        Notifier::kick(svc, job);
    }

    /// A job changed: a `job_modification` is due (coalesced with one already waiting).
    pub fn modified(svc: &Arc<Service>, job: Uuid) {
        let has_receiver = {
            let n = &svc.notifier;
            n.interfaces.lock().contains_key(&job) || !n.class_objects.lock().is_empty()
        };
        if !has_receiver {
            return;
        }
        let fresh = {
            let mut q = svc.notifier.queues.lock();
            let e = q.entry(job).or_default();
            !std::mem::replace(&mut e.modification, true)
        };
        if fresh {
            Notifier::kick(svc, job);
        }
    }

    /// Wakes (or starts) the delivery task of `job`.
    pub fn kick(svc: &Arc<Service>, job: Uuid) {
        let start = {
            let mut q = svc.notifier.queues.lock();
            let Some(e) = q.get_mut(&job) else {
                return;
            };
            if e.running {
                e.kick.notify_one();
                false
            } else if e.entries.is_empty() && !e.modification {
                q.remove(&job);
                false
            } else {
                e.running = true;
                true
            }
        };
        if start {
            let kick = svc.notifier.queues.lock()[&job].kick.clone();
            tokio::spawn(delivery::run(svc.clone(), job, kick));
        }
    }

    /// Wakes every delivery task (a receiver appeared or went away).
    pub fn kick_all(svc: &Arc<Service>) {
        let jobs: Vec<Uuid> = svc.notifier.queues.lock().keys().copied().collect();
        for j in jobs {
            Notifier::kick(svc, j);
        }
    }

    /// The next thing to deliver for `job`; `None` ends the task (and marks it stopped,
    /// atomically with finding the queue empty).
    pub(crate) fn next_item(&self, job: Uuid) -> Option<Item> {
        let mut q = self.queues.lock();
        let e = q.get_mut(&job)?;
        if let Some(r) = e.entries.front() {
            return Some(Item::Entry {
                command_only: e.command_only.contains(&r.id),
                record: r.clone(),
            });
        }
        if std::mem::take(&mut e.modification) {
            return Some(Item::Modification);
        }
        q.remove(&job);
        None
    }

    /// Removes a delivered (or no longer due) entry.
    pub(crate) fn remove_entry(&self, job: Uuid, id: i64) {
        if let Some(e) = self.queues.lock().get_mut(&job) {
            e.entries.retain(|r| r.id != id);
            e.command_only.remove(&id);
        }
    }

    /// Updates an entry after a failed attempt.
    pub(crate) fn update_entry(&self, r: &OutboxRecord, command_only: bool) {
        if let Some(e) = self.queues.lock().get_mut(&r.job_id) {
            if let Some(x) = e.entries.iter_mut().find(|x| x.id == r.id) {
                *x = r.clone();
            }
            if command_only {
                e.command_only.insert(r.id);
            }
        }
    }

    /// Entries waiting, per job (for tests and status).
    pub fn pending(&self, job: Uuid) -> usize {
        self.queues.lock().get(&job).map_or(0, |e| e.entries.len())
    }
}
