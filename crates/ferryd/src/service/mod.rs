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
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::engine::partfile::Progress;
use crate::model::{now_ms, FileRecord, HandlerRecord, JobRecord, JobState, Totals};
use crate::store::Store;

/// A client process's callback channel, and the sender of its outbound messages.
pub use crate::notify::channel::{Channel as CallbackChannel, Outbound};
/// An object a client exported on its callback channel.
pub use crate::notify::ObjRef;
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

/// A job that can still change, with its files and what its current run shares.
pub(crate) struct Entry {
    pub(crate) job: JobRecord,
    pub(crate) files: Vec<FileRecord>,
    queue_key: Option<(u8, u64)>,
    run: Option<Run>,
    /// Byte counters of files the current run is writing. (A `BTreeMap`: empty, it is
    /// smaller than a `HashMap` and allocates nothing; it holds a few entries at most.)
    live: BTreeMap<u32, Arc<Progress>>,
    /// Segment tables of files the current run fetches over several connections.
    live_segments: BTreeMap<u32, Arc<crate::engine::segmented::SegTable>>,
    last_progress_event: Option<Instant>,
}

impl Entry {
    /// A job at rest: not queued, no run.
    fn new(job: JobRecord, files: Vec<FileRecord>) -> Entry {
        Entry {
            job,
            files,
            queue_key: None,
            run: None,
            live: BTreeMap::new(),
            live_segments: BTreeMap::new(),
            last_progress_event: None,
        }
    }

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

/// A final job (`acknowledged` or `cancelled`) kept compact: nothing changes it any more
/// until it is purged, so it is decoded only when someone looks at it.
pub(crate) struct Archived {
    owner_uid: u32,
    state: JobState,
    modified_ms: i64,
    /// `store::compact` encoding of the job and its files.
    data: Box<[u8]>,
}

impl Archived {
    fn new(job: &JobRecord, files: &[FileRecord]) -> Archived {
        Archived {
            owner_uid: job.owner_uid,
            state: job.state,
            modified_ms: job.modified_ms,
            data: crate::store::compact::encode(job, files),
        }
    }

    fn decode(&self) -> (JobRecord, Vec<FileRecord>) {
        crate::store::compact::decode(&self.data)
    }

    fn view(&self) -> JobView {
        let (job, files) = self.decode();
        JobView {
            job,
            totals: Totals::of(&files, |_| None),
        }
    }

    fn file_views(&self) -> Vec<FileView> {
        self.decode()
            .1
            .into_iter()
            .map(|f| FileView {
                bytes_transferred: f.bytes_transferred,
                file: f,
            })
            .collect()
    }

    fn view_with_files(&self) -> (JobView, Vec<FileView>) {
        let (job, files) = self.decode();
        let totals = Totals::of(&files, |_| None);
        let files = files
            .into_iter()
            .map(|f| FileView {
                bytes_transferred: f.bytes_transferred,
                file: f,
            })
            .collect();
        (JobView { job, totals }, files)
    }
}

/// Final jobs are archived once they have not changed for this long (so a command that
/// just made a job final, and is still finishing, finds it where it left it).
const ARCHIVE_AFTER_MS: i64 = 60_000;

#[derive(Default)]
pub(crate) struct Inner {
    /// Jobs that can still change (and final jobs not archived yet).
    pub(crate) jobs: HashMap<Uuid, Entry>,
    /// Final jobs, compact (see [`Archived`]).
    archived: HashMap<Uuid, Archived>,
    /// Jobs per owner, in both maps (the `max_jobs_per_user` check).
    owned: HashMap<u32, usize>,
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
    /// Adds a job to the live jobs.
    fn insert(&mut self, entry: Entry) {
        *self.owned.entry(entry.job.owner_uid).or_default() += 1;
        self.jobs.insert(entry.job.id, entry);
    }

    /// Adds a final job straight to the archive.
    fn insert_archived(&mut self, job: &JobRecord, files: &[FileRecord]) {
        *self.owned.entry(job.owner_uid).or_default() += 1;
        self.archived.insert(job.id, Archived::new(job, files));
    }

    /// Removes a job, live or archived, returning how it was.
    fn remove(&mut self, id: Uuid) -> Option<JobView> {
        let (owner, view) = match self.jobs.remove(&id) {
            Some(e) => (e.job.owner_uid, e.view()),
            None => {
                let a = self.archived.remove(&id)?;
                (a.owner_uid, a.view())
            }
        };
        if let Some(n) = self.owned.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                self.owned.remove(&owner);
            }
        }
        Some(view)
    }

    /// How many jobs `owner` has.
    fn owned_by(&self, owner: u32) -> usize {
        self.owned.get(&owner).copied().unwrap_or(0)
    }

    /// Moves a final job that nothing runs to the archive; false if it is not one.
    fn archive(&mut self, id: Uuid) -> bool {
        let Some(e) = self
            .jobs
            .get(&id)
            .filter(|e| e.job.state.is_final() && e.run.is_none() && e.queue_key.is_none())
        else {
            return false;
        };
        let a = Archived::new(&e.job, &e.files);
        self.jobs.remove(&id);
        self.archived.insert(id, a);
        true
    }

    /// The archived job `id` of `owner`.
    pub(crate) fn archived_of(&self, owner: u32, id: Uuid) -> Option<&Archived> {
        self.archived.get(&id).filter(|a| a.owner_uid == owner)
    }

    /// The state of an archived job of `owner`.
    pub(crate) fn archived_state(&self, owner: u32, id: Uuid) -> Option<JobState> {
        self.archived_of(owner, id).map(|a| a.state)
    }

    /// A job of `owner` as clients see it, live or archived.
    fn view_of(&self, owner: u32, id: Uuid) -> Option<JobView> {
        match self.jobs.get(&id) {
            Some(e) => (e.job.owner_uid == owner).then(|| e.view()),
            None => self.archived_of(owner, id).map(Archived::view),
        }
    }

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
        // Files come sorted by job: each job's run becomes one exactly sized Vec.
        let mut files_by_job: HashMap<Uuid, Vec<FileRecord>> =
            HashMap::with_capacity(snapshot.jobs.len());
        let mut files = snapshot.files.into_iter().peekable();
        while let Some(f) = files.next() {
            let id = f.job_id;
            let mut v = vec![f];
            while let Some(next) = files.next_if(|n| n.job_id == id) {
                v.push(next);
            }
            v.shrink_to_fit();
            files_by_job.insert(id, v);
        }
        // Final jobs go to the archive, unless a notification of theirs is still in the
        // outbox (the delivery decides what to do with it and looks the job up).
        let notified: std::collections::HashSet<Uuid> =
            snapshot.outbox.iter().map(|o| o.job_id).collect();
        let live = snapshot
            .jobs
            .iter()
            .filter(|j| !j.state.is_final() || notified.contains(&j.id))
            .count();
        inner.jobs.reserve(live);
        inner.archived.reserve(snapshot.jobs.len() - live);
        let mut requeued = Vec::new();
        for job in snapshot.jobs {
            let id = job.id;
            let state = job.state;
            let files = files_by_job.remove(&id).unwrap_or_default();
            if state.is_final() && !notified.contains(&id) {
                inner.insert_archived(&job, &files);
                continue;
            }
            inner.insert(Entry::new(job, files));
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
        drop(files_by_job);
        drop(notified);
        tracing::info!(
            jobs = inner.jobs.len() + inner.archived.len(),
            archived = inner.archived.len(),
            requeued = requeued.len(),
            "job store loaded"
        );
        // Loading freed many small blocks between the ones kept: give them back.
        release_free_memory();
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
        self.inner.lock()
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The daemon's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The uid the daemon runs as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// When the daemon started (ms since the epoch).
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// Resolves when the daemon begins to shut down.
    pub fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// True once the daemon has begun to shut down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Begins the shutdown: workers checkpoint and stop, open streams end.
    pub fn request_shutdown(&self) {
        self.shutdown.cancel();
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
        let inner = self.lock();
        inner.jobs.len() + inner.archived.len()
    }

    /// Removes final jobs past the retention period, cancels jobs left alone longer
    /// than the inactivity timeout, and archives final jobs.
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
                .chain(
                    inner
                        .archived
                        .iter()
                        .filter(|(_, a)| now - a.modified_ms > retention)
                        .map(|(id, _)| *id),
                )
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
                purge.iter().filter_map(|id| inner.remove(*id)).collect()
            };
            let _ = Store::committed(self.store.delete_jobs(purge)).await;
            for v in removed {
                self.emit(ChangeKind::Deleted, v, None);
            }
        }
        self.archive_final_jobs(now);
    }

    /// Archives final jobs unchanged for `ARCHIVE_AFTER_MS`, nothing runs and no
    /// notification waits for.
    fn archive_final_jobs(&self, now: i64) {
        let candidates: Vec<Uuid> = self
            .lock()
            .jobs
            .values()
            .filter(|e| {
                e.job.state.is_final()
                    && e.run.is_none()
                    && now - e.job.modified_ms >= ARCHIVE_AFTER_MS
            })
            .map(|e| e.job.id)
            .collect();
        // The notifier has its own lock: ask it without holding ours.
        let quiet: Vec<Uuid> = candidates
            .into_iter()
            .filter(|id| self.notifier.pending(*id) == 0)
            .collect();
        if quiet.is_empty() {
            return;
        }
        let archived = {
            let mut inner = self.lock();
            let n = quiet.iter().filter(|id| inner.archive(**id)).count();
            inner.jobs.shrink_to_fit();
            n
        };
        tracing::debug!(archived, "archived final jobs");
        release_free_memory();
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
        let mut v: Vec<JobView> = ids.filter_map(|id| inner.view_of(owner, id)).collect();
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

/// Returns memory freed inside the heap to the system (glibc keeps it otherwise: after
/// loading 100 000 jobs, or answering a large query, RSS would stay at its peak).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobType, Priority};

    fn file(job: &JobRecord) -> FileRecord {
        FileRecord {
            job_id: job.id,
            index: 0,
            remote_url: "http://h/x".into(),
            local_path: "/tmp/ferry-archive-test-x".into(),
            bytes_total: Some(10),
            bytes_transferred: 10,
            completed: true,
            expected_sha256: None,
            final_url: None,
            validator: None,
            validated: None,
            segments: Vec::new(),
        }
    }

    /// Stores `n` jobs per state in `states` for owner 7, one file each.
    async fn store_with(dir: &std::path::Path, states: &[JobState]) -> Vec<JobRecord> {
        let store = Store::open(dir).unwrap();
        let mut jobs = Vec::new();
        for (i, s) in states.iter().enumerate() {
            let mut job = JobRecord::new(format!("j{i}"), JobType::Download, Priority::Normal, 7);
            job.state = *s;
            job.created_ms += i as i64;
            Store::committed(store.put_job_and_files(&job, vec![file(&job)]))
                .await
                .unwrap();
            jobs.push(job);
        }
        store.close();
        jobs
    }

    #[tokio::test]
    async fn final_jobs_loaded_from_the_store_are_archived_and_still_answer() {
        let dir = tempfile::tempdir().unwrap();
        let states = [
            JobState::Acknowledged,
            JobState::Cancelled,
            JobState::Suspended,
            JobState::Error,
        ];
        let jobs = store_with(dir.path(), &states).await;
        let svc = Service::open(Config::default(), Store::open(dir.path()).unwrap(), 7).unwrap();
        {
            let inner = svc.lock();
            assert_eq!(inner.archived.len(), 2, "acknowledged and cancelled");
            assert_eq!(inner.jobs.len(), 2);
            assert_eq!(inner.owned_by(7), 4);
        }
        assert_eq!(svc.job_count(), 4);

        let ack = &jobs[0];
        let view = svc.get_job(7, ack.id).unwrap();
        assert_eq!(view.job, *ack);
        assert_eq!(view.totals.files_transferred, 1);
        assert_eq!(view.totals.bytes_transferred, 10);
        let files = svc.list_files(7, ack.id).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file, file(ack));
        assert_eq!(svc.archived_state(7, ack.id), Some(JobState::Acknowledged));
        // Another owner sees nothing.
        assert!(matches!(
            svc.get_job(8, ack.id),
            Err(ServiceError::NotFound(_))
        ));
        assert!(svc.archived_state(8, ack.id).is_none());

        let all: Vec<Uuid> = svc.list_jobs(7, true).iter().map(|v| v.job.id).collect();
        assert_eq!(all, jobs.iter().map(|j| j.id).collect::<Vec<_>>());
        assert_eq!(svc.list_jobs(7, false).len(), 2);
        let by_id = svc.jobs_by_id(7, [jobs[1].id, jobs[3].id].into_iter());
        assert_eq!(by_id.len(), 2);
        assert_eq!(svc.all_jobs_with_files().len(), 4);

        // Commands on archived jobs are refused as on any final job.
        for r in [
            svc.resume(7, ack.id).await,
            svc.suspend(7, ack.id).await,
            svc.cancel(7, jobs[1].id).await,
        ] {
            match r {
                Err(ServiceError::FailedPrecondition(m)) => assert!(m.contains("final"), "{m}"),
                other => panic!("expected FailedPrecondition, got {other:?}"),
            }
        }
        assert!(matches!(
            svc.complete(7, ack.id).await,
            Err(ServiceError::FailedPrecondition(_))
        ));
        let add = svc
            .add_files(
                7,
                ack.id,
                vec![FileSpec {
                    remote_url: "http://h/y".into(),
                    local_path: "/tmp/ferry-archive-test-y".into(),
                    expected_sha256: None,
                }],
            )
            .await;
        assert!(matches!(add, Err(ServiceError::FailedPrecondition(_))));
        svc.store.close();
    }

    #[tokio::test]
    async fn housekeeping_archives_old_final_jobs_and_purges_archived_ones() {
        let dir = tempfile::tempdir().unwrap();
        store_with(dir.path(), &[JobState::Suspended, JobState::Suspended]).await;
        let config = Config {
            retention: Duration::from_secs(3600),
            ..Config::default()
        };
        let svc = Service::open(config, Store::open(dir.path()).unwrap(), 7).unwrap();
        let ids: Vec<Uuid> = svc.list_jobs(7, false).iter().map(|v| v.job.id).collect();
        svc.cancel(7, ids[0]).await.unwrap();
        svc.cancel(7, ids[1]).await.unwrap();
        // Just made final: left alone.
        svc.housekeeping().await;
        assert_eq!(svc.lock().archived.len(), 0);
        // Unchanged for longer than ARCHIVE_AFTER_MS: archived; past retention: purged.
        {
            let mut inner = svc.lock();
            inner.jobs.get_mut(&ids[0]).unwrap().job.modified_ms -= ARCHIVE_AFTER_MS;
            inner.jobs.get_mut(&ids[1]).unwrap().job.modified_ms -= 2 * 3600 * 1000;
        }
        svc.housekeeping().await;
        {
            let inner = svc.lock();
            assert_eq!(inner.jobs.len(), 0);
            assert_eq!(inner.archived.len(), 1);
            assert_eq!(inner.owned_by(7), 1);
        }
        assert_eq!(
            svc.get_job(7, ids[0]).unwrap().job.state,
            JobState::Cancelled
        );
        assert!(svc.get_job(7, ids[1]).is_err());
        // Archived, then past retention: purged from the archive and the store.
        svc.lock().archived.get_mut(&ids[0]).unwrap().modified_ms -= 2 * 3600 * 1000;
        svc.housekeeping().await;
        assert_eq!(svc.job_count(), 0);
        assert_eq!(svc.lock().owned_by(7), 0);
        let left = svc.store.load().unwrap();
        assert!(left.jobs.is_empty());
        svc.store.close();
    }
}
