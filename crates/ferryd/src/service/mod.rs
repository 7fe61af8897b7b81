//! The service facade: every command the rpc layer serves goes through here.
//!
//! Jobs live in memory (loaded from the store at start-up) and every change is written
//! through to the store. A change that a client waits for is committed durably before the
//! reply. Writes are queued to the store while the state lock is held, so the store sees
//! changes in the order they were made.

mod commands;
mod hooks;
mod notifications;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::engine::partfile::Progress;
use crate::model::{now_ms, FileRecord, HandlerRecord, JobRecord, JobState, Totals};
use crate::store::Store;

pub use commands::{CompleteOutcome, FileSpec, JobChanges, NewJob};

/// Identifies one run of a job's worker; reports from an older run are ignored.
pub type RunId = u64;

/// A failure of a command, mapped to a gRPC status by `rpc/`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
}

/// A job with the totals of its files, as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub job: JobRecord,
    pub totals: Totals,
}

/// A file with its live byte count.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView {
    pub file: FileRecord,
    pub bytes_transferred: u64,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
}

/// A change of a job, broadcast to watchers, event queries and notifications.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub kind: ChangeKind,
    pub current: Arc<JobView>,
    pub previous: Option<Arc<JobView>>,
}

pub(crate) struct Run {
    id: RunId,
    cancel: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

pub(crate) struct Entry {
    pub(crate) job: JobRecord,
    pub(crate) files: Vec<FileRecord>,
    queue_key: Option<(u8, u64)>,
    run: Option<Run>,
    /// Byte counters of files the current run is writing.
    live: HashMap<u32, Arc<Progress>>,
    /// Segment tables of files the current run fetches over several connections.
    live_segments: HashMap<u32, Arc<crate::engine::segmented::SegTable>>,
    last_progress_event: Option<Instant>,
}

impl Entry {
    fn view(&self) -> JobView {
        JobView {
            job: self.job.clone(),
            totals: Totals::of(&self.files, |f| {
                if f.completed {
                    None
                } else if let Some(t) = self.live_segments.get(&f.index) {
                    Some(t.written())
                } else {
                    self.live
                        .get(&f.index)
                        .map(|p| p.written.load(std::sync::atomic::Ordering::Relaxed))
                }
            }),
        }
    }

    fn file_views(&self) -> Vec<FileView> {
        self.files
            .iter()
            .map(|f| FileView {
                bytes_transferred: match (self.live_segments.get(&f.index), self.live.get(&f.index))
                {
                    (Some(t), _) if !f.completed => t.written(),
                    (None, Some(p)) if !f.completed => {
                        p.written.load(std::sync::atomic::Ordering::Relaxed)
                    }
                    _ => f.bytes_transferred,
                },
                file: f.clone(),
            })
            .collect()
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) jobs: HashMap<Uuid, Entry>,
    /// Runnable jobs by (priority rank, arrival).
    queue: BTreeMap<(u8, u64), Uuid>,
    /// `transient_error` jobs by retry time.
    retries: BTreeSet<(i64, Uuid)>,
    running: usize,
    seq: u64,
    next_run: RunId,
    pub(crate) handlers: HashMap<(Uuid, u32), HandlerRecord>,
}

impl Inner {
    /// Moves a job to `state`, keeping the queue and retry indexes right.
    fn set_state(&mut self, id: Uuid, state: JobState) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(key) = entry.queue_key.take() {
            self.queue.remove(&key);
        }
        if entry.job.state == JobState::TransientError {
            if let Some(at) = entry.job.retry_at_ms {
                self.retries.remove(&(at, id));
            }
        }
        entry.job.state = state;
        entry.job.modified_ms = now_ms();
        match state {
            JobState::Queued => {
                self.seq += 1;
                let key = (entry.job.priority.rank(), self.seq);
                entry.queue_key = Some(key);
                self.queue.insert(key, id);
                entry.job.retry_at_ms = None;
            }
            JobState::TransientError => {
                if let Some(at) = entry.job.retry_at_ms {
                    self.retries.insert((at, id));
                }
            }
            _ => entry.job.retry_at_ms = None,
        }
    }
}

/// The daemon's state and the commands over it.
pub struct Service {
    pub config: Config,
    pub(crate) store: Store,
    pub(crate) inner: Mutex<Inner>,
    events: broadcast::Sender<JobEvent>,
    /// Wakes the scheduler.
    pub wake: Notify,
    /// Fires when the daemon shuts down.
    pub shutdown: CancellationToken,
    /// The uid the daemon runs as; every job it creates is owned by it.
    pub uid: u32,
    pub started_ms: i64,
    http: reqwest::Client,
    /// Callback channels, class objects, the outbox and its delivery tasks.
    pub notifier: crate::notify::Notifier,
    /// The daemon-wide bandwidth limit, shared by every transfer.
    pub global_limit: Option<Arc<crate::engine::ratelimit::RateLimiter>>,
    this: std::sync::Weak<Service>,
}

impl Service {
    /// Loads the store and re-queues jobs that were transferring when the daemon stopped.
    pub fn open(config: Config, store: Store, uid: u32) -> Result<Arc<Service>, ServiceError> {
        let snapshot = store
            .load()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut inner = Inner::default();
        let mut files_by_job: HashMap<Uuid, Vec<FileRecord>> = HashMap::new();
        for f in snapshot.files {
            files_by_job.entry(f.job_id).or_default().push(f);
        }
        let mut requeued = Vec::new();
        for job in snapshot.jobs {
            let id = job.id;
            let state = job.state;
            inner.jobs.insert(
                id,
                Entry {
                    files: files_by_job.remove(&id).unwrap_or_default(),
                    job,
                    queue_key: None,
                    run: None,
                    live: HashMap::new(),
                    live_segments: HashMap::new(),
                    last_progress_event: None,
                },
            );
            match state {
                JobState::Queued | JobState::Connecting | JobState::Transferring => {
                    inner.set_state(id, JobState::Queued);
                    if state != JobState::Queued {
                        requeued.push(id);
                    }
                }
                JobState::TransientError => inner.set_state(id, JobState::TransientError),
                _ => {}
            }
        }
        for h in snapshot.handlers {
            inner.handlers.insert((h.class, h.owner_uid), h);
        }
        for id in &requeued {
            store.put_job(&inner.jobs[id].job);
        }
        tracing::info!(
            jobs = inner.jobs.len(),
            requeued = requeued.len(),
            "job store loaded"
        );
        let (events, _) = broadcast::channel(4096);
        let notifier = crate::notify::Notifier::new(snapshot.outbox);
        let global_limit = (config.bandwidth_limit > 0).then(|| {
            Arc::new(crate::engine::ratelimit::RateLimiter::new(
                config.bandwidth_limit,
            ))
        });
        let svc = Arc::new_cyclic(|this| Service {
            config,
            store,
            inner: Mutex::new(inner),
            events,
            wake: Notify::new(),
            shutdown: CancellationToken::new(),
            uid,
            started_ms: now_ms(),
            http: crate::engine::netclient::shared(),
            global_limit,
            notifier,
            this: this.clone(),
        });
        crate::notify::Notifier::start(&svc);
        Ok(svc)
    }

    /// This service as an `Arc` (for spawning tasks from `&self` methods).
    pub(crate) fn arc(&self) -> Arc<Service> {
        self.this
            .upgrade()
            .expect("the service is alive while its methods run")
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Subscribes to job changes.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, kind: ChangeKind, current: JobView, previous: Option<JobView>) {
        if kind == ChangeKind::Modified
            && current
                .job
                .notify_flags
                .contains(crate::model::NotifyFlags::JOB_MODIFICATION)
        {
            crate::notify::Notifier::modified(&self.arc(), current.job.id);
        }
        let _ = self.events.send(JobEvent {
            kind,
            current: Arc::new(current),
            previous: previous.map(Arc::new),
        });
    }

    /// Starts runnable jobs; returns how long until the next retry is due.
    pub fn schedule(self: &Arc<Self>) -> Option<Duration> {
        let mut inner = self.lock();
        let now = now_ms();
        let due: Vec<Uuid> = inner
            .retries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            let before = inner.jobs[&id].view();
            inner.set_state(id, JobState::Queued);
            let after = inner.jobs[&id].view();
            self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after, Some(before));
        }
        while let Some((&key, &id)) = inner.queue.iter().next() {
            let foreground = key.0 == 0;
            if !foreground && inner.running >= self.config.max_concurrent_jobs {
                break;
            }
            inner.queue.remove(&key);
            inner.next_run += 1;
            let run_id = inner.next_run;
            inner.running += 1;
            let cancel = CancellationToken::new();
            let entry = inner.jobs.get_mut(&id).expect("queued job exists");
            entry.queue_key = None;
            let handle = tokio::spawn(crate::engine::worker::run(
                self.clone(),
                id,
                run_id,
                cancel.clone(),
            ));
            entry.run = Some(Run {
                id: run_id,
                cancel,
                handle: Some(handle),
            });
        }
        inner
            .retries
            .iter()
            .next()
            .map(|(at, _)| Duration::from_millis((*at - now).max(0) as u64))
    }

    /// Stops a job's worker, if one runs, and waits (bounded) until it has checkpointed.
    pub(crate) async fn stop_run(&self, id: Uuid) {
        let handle = {
            let mut inner = self.lock();
            let Some(run) = inner.jobs.get_mut(&id).and_then(|e| e.run.as_mut()) else {
                return;
            };
            run.cancel.cancel();
            run.handle.take()
        };
        if let Some(handle) = handle {
            if tokio::time::timeout(self.config.drain_timeout, handle)
                .await
                .is_err()
            {
                tracing::warn!(%id, "worker did not stop in time");
            }
        }
    }

    /// Stops every worker (shutdown), bounded by the drain timeout.
    pub async fn stop_all(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut inner = self.lock();
            inner
                .jobs
                .values_mut()
                .filter_map(|e| e.run.as_mut())
                .filter_map(|r| {
                    r.cancel.cancel();
                    r.handle.take()
                })
                .collect()
        };
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(self.config.drain_timeout, all)
            .await
            .is_err()
        {
            tracing::warn!("some workers did not stop within the drain timeout");
        }
    }

    /// Number of jobs transferring now.
    pub fn active_transfers(&self) -> usize {
        self.lock().running
    }

    /// Number of jobs stored.
    pub fn job_count(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Removes final jobs past the retention period and cancels jobs left alone longer
    /// than the inactivity timeout.
    pub async fn housekeeping(self: &Arc<Self>) {
        let now = now_ms();
        let retention = self.config.retention.as_millis() as i64;
        let inactivity = self.config.job_inactivity_timeout.as_millis() as i64;
        let (purge, stale): (Vec<Uuid>, Vec<(Uuid, u32)>) = {
            let inner = self.lock();
            let purge = inner
                .jobs
                .values()
                .filter(|e| e.job.state.is_final() && now - e.job.modified_ms > retention)
                .map(|e| e.job.id)
                .collect();
            let stale = inner
                .jobs
                .values()
                .filter(|e| !e.job.state.is_final() && now - e.job.modified_ms > inactivity)
                .map(|e| (e.job.id, e.job.owner_uid))
                .collect();
            (purge, stale)
        };
        for (id, owner) in stale {
            tracing::info!(%id, "cancelling a job left alone past the inactivity timeout");
            let _ = self.cancel(owner, id).await;
        }
        if !purge.is_empty() {
            let removed: Vec<JobView> = {
                let mut inner = self.lock();
                purge
                    .iter()
                    .filter_map(|id| inner.jobs.remove(id).map(|e| e.view()))
                    .collect()
            };
            let _ = Store::committed(self.store.delete_jobs(purge)).await;
            for v in removed {
                self.emit(ChangeKind::Deleted, v, None);
            }
        }
    }
}

impl Service {
    /// Waits until every write queued so far is committed.
    pub async fn store_barrier(&self) -> Result<(), ServiceError> {
        Store::committed(self.store.queue(|_| Ok(())))
            .await
            .map_err(ServiceError::Internal)
    }

    /// The caller's jobs among `ids`, oldest first.
    pub fn jobs_by_id(&self, owner: u32, ids: impl Iterator<Item = Uuid>) -> Vec<JobView> {
        let inner = self.lock();
        let mut v: Vec<JobView> = ids
            .filter_map(|id| inner.jobs.get(&id))
            .filter(|e| e.job.owner_uid == owner)
            .map(Entry::view)
            .collect();
        v.sort_by_key(|v| (v.job.created_ms, v.job.id));
        v
    }

    /// The caller's registered handlers.
    pub fn handlers(&self, owner: u32) -> Vec<HandlerRecord> {
        let inner = self.lock();
        let mut v: Vec<HandlerRecord> = inner
            .handlers
            .values()
            .filter(|h| h.owner_uid == owner)
            .cloned()
            .collect();
        v.sort_by_key(|h| h.registered_ms);
        v
    }
}
