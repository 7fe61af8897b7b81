//! Notifications: callback channels and the objects exported on them, class
//! objects and handler activation, command-line notifications, and the delivery of the
//! outbox that makes `job_transferred`, `job_error` and `file_transferred` durable.
//!
//! Each job with something to deliver has one delivery task (`delivery.rs`), so calls for
//! one job arrive in order, one at a time, and a slow receiver holds up only its own job.
//! A user has at most `max_notifications_per_user` calls, commands and handler starts in
//! flight (`limits.rs`), and a class's handler is started once at a time
//! (`activation.rs`).
//!
//! Notify reads jobs and records deliveries through [`NotifyHost`], a trait it owns; it
//! starts handlers and commands through the job owner's [`crate::owner::Owner`].
//!
//! May use: `model`, `owner`. Not `service`, `engine`, `query`, `rpc` or `store`.

mod activation;
pub mod channel;
mod command;
mod delivery;
mod host;
mod limits;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::model::{FileRange, OutboxRecord};
pub use channel::{CallbackMethod, Channel, Invocation, Outbound};
pub use host::{NotifyHost, Settings};

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
    /// `file_ranges_transferred` calls waiting: the file and the ranges that landed.
    ranges: VecDeque<(u32, Vec<FileRange>)>,
    /// Entries whose callback failed while a notify command is set: only the command runs.
    command_only: HashSet<i64>,
    /// Entries that failed: not tried again before this (monotonic: a change of the wall
    /// clock neither delays nor hastens them). Entries loaded at start-up are due at once.
    not_before: HashMap<i64, Instant>,
    running: bool,
    kick: Arc<Notify>,
}

/// What the next delivery is.
pub(crate) enum Item {
    Entry {
        record: OutboxRecord,
        command_only: bool,
        /// Not before this (after a failed attempt).
        not_before: Option<Instant>,
    },
    Modification,
    /// Ranges of file `index` landed (not durable: lost with the daemon, as BITS's).
    FileRanges {
        index: u32,
        ranges: Vec<FileRange>,
    },
}

/// The notification state of the daemon.
pub struct Notifier {
    settings: Settings,
    host: OnceLock<Weak<dyn NotifyHost>>,
    this: Weak<Notifier>,
    channels: Mutex<HashMap<u64, Arc<Channel>>>,
    next_channel: AtomicU64,
    interfaces: Mutex<HashMap<Uuid, ObjRef>>,
    class_objects: Mutex<HashMap<(u32, Uuid), ObjRef>>,
    /// Woken on every class-object registration (activation waits on it).
    class_registered: Notify,
    queues: Mutex<HashMap<Uuid, JobQueue>>,
    next_outbox: AtomicI64,
    /// Handler starts per (user, class) and their backoff.
    activations: activation::Activations,
    /// Notifications in flight per user.
    limits: limits::UserLimits,
    /// When each job's last `job_modification` was delivered (its minimum notification
    /// interval counts from there).
    modified_at: Mutex<HashMap<Uuid, Instant>>,
}

/// Past this many jobs, [`Notifier::note_modification`] forgets the times older than the
/// longest interval a job may set (a day): they can hold nothing back any more.
const MODIFIED_AT_PRUNE: usize = 4096;
const LONGEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Notifier {
    /// A notifier holding `outbox` (loaded at start-up); [`Notifier::attach`] gives it
    /// its host.
    pub fn new(settings: Settings, outbox: Vec<OutboxRecord>) -> Arc<Notifier> {
        let max = outbox.iter().map(|o| o.id).max().unwrap_or(0);
        let mut queues: HashMap<Uuid, JobQueue> = HashMap::new();
        for o in outbox {
            queues.entry(o.job_id).or_default().entries.push_back(o);
        }
        let limits = limits::UserLimits::new(settings.max_per_user);
        Arc::new_cyclic(|this| Notifier {
            settings,
            host: OnceLock::new(),
            this: this.clone(),
            channels: Mutex::new(HashMap::new()),
            next_channel: AtomicU64::new(0),
            interfaces: Mutex::new(HashMap::new()),
            class_objects: Mutex::new(HashMap::new()),
            class_registered: Notify::new(),
            queues: Mutex::new(queues),
            next_outbox: AtomicI64::new(max + 1),
            activations: activation::Activations::default(),
            limits,
            modified_at: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the host (once, at start-up).
    pub fn attach(&self, host: Weak<dyn NotifyHost>) {
        let _ = self.host.set(host);
    }

    fn host(&self) -> Option<Arc<dyn NotifyHost>> {
        self.host.get().and_then(Weak::upgrade)
    }

    /// A fresh outbox id.
    pub fn next_outbox_id(&self) -> i64 {
        self.next_outbox.fetch_add(1, Ordering::SeqCst)
    }

    /// Starts the delivery tasks of every job with pending entries (start-up).
    pub fn start(&self) {
        self.kick_all();
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
    pub fn close_channel(&self, id: u64) {
        if let Some(ch) = self.channels.lock().remove(&id) {
            ch.close();
        }
        self.interfaces.lock().retain(|_, o| o.channel != id);
        self.class_objects.lock().retain(|_, o| o.channel != id);
        tracing::debug!(channel = id, "callback channel closed");
        self.kick_all();
    }

    /// Sets or clears a job's callback interface (the last call wins).
    pub fn set_interface(&self, job: Uuid, obj: Option<ObjRef>) {
        if obj.is_some() {
            // A new receiver takes undelivered notifications at once, not after the retry delay.
            self.due_now(&[job]);
        }
        match obj {
            Some(o) => {
                self.interfaces.lock().insert(job, o);
            }
            None => {
                self.interfaces.lock().remove(&job);
            }
        }
        self.kick(job);
    }

    /// The callback object of a job, if one is set.
    pub fn interface(&self, job: Uuid) -> Option<ObjRef> {
        self.interfaces.lock().get(&job).copied()
    }

    /// Registers a class object for `(uid, class)`; `jobs` (those of `uid` with that
    /// class) get their undelivered notifications at once.
    pub fn register_class_object(&self, uid: u32, class: Uuid, obj: ObjRef, jobs: &[Uuid]) {
        self.class_objects.lock().insert((uid, class), obj);
        self.class_registered.notify_waiters();
        self.due_now(jobs);
        self.kick_all();
    }

    /// The handler of `(uid, class)` was registered (again): a start that failed before
    /// may be tried at once, and waiting entries are tried now.
    pub fn handler_registered(&self, uid: u32, class: Uuid, jobs: &[Uuid]) {
        self.activations.reset(uid, class);
        self.due_now(jobs);
        self.kick_all();
    }

    /// Makes the undelivered entries of `jobs` due now.
    fn due_now(&self, jobs: &[Uuid]) {
        let mut q = self.queues.lock();
        for id in jobs {
            if let Some(q) = q.get_mut(id) {
                for e in q.entries.iter_mut() {
                    e.next_attempt_ms = 0;
                }
                q.not_before.clear();
            }
        }
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
    pub fn enqueue(&self, job: Uuid, entries: Vec<OutboxRecord>) {
        if entries.is_empty() {
            return;
        }
        self.queues
            .lock()
            .entry(job)
            .or_default()
            .entries
            .extend(entries);
        self.kick(job);
    }

    /// A job changed: a `job_modification` is due (coalesced with one already waiting).
    pub fn modified(&self, job: Uuid) {
        let has_receiver =
            self.interfaces.lock().contains_key(&job) || !self.class_objects.lock().is_empty();
        if !has_receiver {
            return;
        }
        let fresh = {
            let mut q = self.queues.lock();
            let e = q.entry(job).or_default();
            !std::mem::replace(&mut e.modification, true)
        };
        if fresh {
            self.kick(job);
        }
    }

    /// Ranges of file `index` of `job` landed: a `file_ranges_transferred` is due for
    /// its callback or class object (the caller checked the job's flags).
    pub fn file_ranges_transferred(&self, job: Uuid, index: u32, ranges: Vec<FileRange>) {
        let has_receiver =
            self.interfaces.lock().contains_key(&job) || !self.class_objects.lock().is_empty();
        if !has_receiver || ranges.is_empty() {
            return;
        }
        self.queues
            .lock()
            .entry(job)
            .or_default()
            .ranges
            .push_back((index, ranges));
        self.kick(job);
    }

    /// Wakes (or starts) the delivery task of `job`.
    pub fn kick(&self, job: Uuid) {
        let start = {
            let mut q = self.queues.lock();
            let Some(e) = q.get_mut(&job) else {
                return;
            };
            if e.running {
                e.kick.notify_one();
                None
            } else if e.entries.is_empty() && !e.modification && e.ranges.is_empty() {
                q.remove(&job);
                None
            } else {
                e.running = true;
                Some(e.kick.clone())
            }
        };
        if let (Some(kick), Some(this)) = (start, self.this.upgrade()) {
            tokio::spawn(delivery::run(this, job, kick));
        }
    }

    /// Wakes every delivery task (a receiver appeared or went away).
    pub fn kick_all(&self) {
        let jobs: Vec<Uuid> = self.queues.lock().keys().copied().collect();
        for j in jobs {
            self.kick(j);
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
                not_before: e.not_before.get(&r.id).copied(),
                record: r.clone(),
            });
        }
        if let Some((index, ranges)) = e.ranges.pop_front() {
            return Some(Item::FileRanges { index, ranges });
        }
        if std::mem::take(&mut e.modification) {
            return Some(Item::Modification);
        }
        q.remove(&job);
        None
    }

    /// How long the next `job_modification` of `job` must still wait to be `interval`
    /// after the last one; `None` when it may go now.
    pub(crate) fn modification_wait(
        &self,
        job: Uuid,
        interval: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let last = *self.modified_at.lock().get(&job)?;
        Some(interval.saturating_sub(last.elapsed())).filter(|w| !w.is_zero())
    }

    /// Puts back a `job_modification` taken too early.
    pub(crate) fn requeue_modification(&self, job: Uuid) {
        self.queues.lock().entry(job).or_default().modification = true;
    }

    /// A `job_modification` of `job` goes now.
    pub(crate) fn note_modification(&self, job: Uuid) {
        let mut m = self.modified_at.lock();
        if m.len() >= MODIFIED_AT_PRUNE {
            m.retain(|_, t| t.elapsed() < LONGEST_INTERVAL);
        }
        m.insert(job, Instant::now());
    }

    /// Removes a delivered (or no longer due) entry.
    pub(crate) fn remove_entry(&self, job: Uuid, id: i64) {
        if let Some(e) = self.queues.lock().get_mut(&job) {
            e.entries.retain(|r| r.id != id);
            e.command_only.remove(&id);
            e.not_before.remove(&id);
        }
    }

    /// Updates an entry after a failed attempt; it is not tried again before `not_before`.
    pub(crate) fn update_entry(&self, r: &OutboxRecord, command_only: bool, not_before: Instant) {
        if let Some(e) = self.queues.lock().get_mut(&r.job_id) {
            if let Some(x) = e.entries.iter_mut().find(|x| x.id == r.id) {
                *x = r.clone();
            }
            if command_only {
                e.command_only.insert(r.id);
            }
            e.not_before.insert(r.id, not_before);
        }
    }

    /// Every entry waiting for delivery, in order per job (what the store's outbox must
    /// hold).
    pub fn outbox(&self) -> Vec<OutboxRecord> {
        let mut all: Vec<OutboxRecord> = self
            .queues
            .lock()
            .values()
            .flat_map(|q| q.entries.iter().cloned())
            .collect();
        all.sort_by_key(|r| r.id);
        all
    }

    /// Entries waiting, per job (for tests and status).
    pub fn pending(&self, job: Uuid) -> usize {
        self.queues.lock().get(&job).map_or(0, |e| e.entries.len())
    }

    /// True when no notification waits or runs for any job.
    pub fn is_idle(&self) -> bool {
        self.queues.lock().values().all(|q| q.entries.is_empty())
    }
}
