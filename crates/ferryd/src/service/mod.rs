//! The service facade: every command the rpc layer serves goes through here, and it is
//! the host of the engine (`engine_host.rs`) and of notifications (`notify_host.rs`).
//!
//! Jobs live in memory (loaded from the store at start-up) and every change is written
//! through to the store. A change that a client waits for is committed durably before the
//! reply. Writes are queued to the store while the state lock is held, so the store sees
//! changes in the order they were made.
//!
//! May use: `engine`, `notify`, `query`, `store`, `owner`, `model`, `config`. Not `rpc`.

mod admin;
mod api_extra;
mod bounds;
mod commands;
mod control;
mod counters;
mod engine_host;
mod error;
mod finish;
mod jobs;
mod machine;
mod metered;
mod network;
mod notifications;
mod notify_host;
mod peers;
mod properties;
mod queries;
mod ranges;
mod state;
mod store_health;
mod takeover;
mod urls;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::costwatch::NetworkCost;
use crate::engine::Engine;
use crate::model::{mono_ms, now_ms, FileRecord, HandlerRecord, JobRecord, JobState};
use crate::netwatch::Connectivity;
use crate::notify::Notifier;
use crate::owner::Owners;
use crate::store::Store;
use state::{Entry, Inner, ARCHIVE_AFTER_MS};

pub use crate::engine::schedule::LimitInForce;
pub use crate::model::{
    CacheEntry, Caller, ChangeKind, FileView, JobEvent, JobView, MetricsSnapshot, Scope,
};
/// An object a client exported on its callback channel.
pub use crate::notify::ObjRef;
/// A client process's callback channel, what it is sent, and the methods it is called on.
pub use crate::notify::{CallbackMethod, Channel as CallbackChannel, Invocation, Outbound};
/// A query object, its properties and their values.
pub use crate::query::eval::Value;
/// Checked queries and the events an event query reports.
pub use crate::query::events::EventFilter;
pub use crate::query::exec::{EventPlan, SelectPlan};
pub use crate::query::schema::{Obj, Prop};
pub use api_extra::Page;
pub use commands::{CompleteOutcome, FileSpec, JobChanges, NewJob};
pub use error::{ErrorReason, ServiceError};
pub use machine::Machine;
/// Peer caching as the rpc layer reports it.
pub use peers::{Found, Incoming, PeerCache, PeerInfo, PeerState, PeersStatus};

impl From<crate::store::WriteError> for ServiceError {
    /// A full disk or used-up quota under the state folder is RESOURCE_EXHAUSTED (gRPC's
    /// own words: "perhaps the entire file system is out of space"; someone must free
    /// space); an I/O error is UNAVAILABLE (the daemon retries by itself, a later call may
    /// work). Both messages name the state folder.
    fn from(e: crate::store::WriteError) -> ServiceError {
        use crate::store::{Cause, WriteError};
        match e {
            WriteError::Unwritable(u) => match u.cause {
                Cause::NoSpace | Cause::Quota => ServiceError::ResourceExhausted(u.to_string()),
                Cause::Io => ServiceError::Unavailable(u.to_string()),
            },
            WriteError::Stopped => ServiceError::Unavailable(
                "ferryd is shutting down: call again once it is back".into(),
            ),
            WriteError::Failed(m) => ServiceError::Internal(m),
        }
    }
}

/// The daemon's state and the commands over it.
pub struct Service {
    config: Config,
    store: Arc<Store>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<JobEvent>,
    /// Fires when the daemon shuts down.
    shutdown: CancellationToken,
    /// The uid the daemon runs as.
    uid: u32,
    started_ms: i64,
    engine: Arc<Engine>,
    /// Callback channels, class objects, the outbox and its delivery tasks.
    notifier: Arc<Notifier>,
    /// As whom each job's files and processes are handled.
    owners: Owners,
    /// The admin group's id (system mode), if the group exists.
    admin_gid: Option<u32>,
    /// One complete or cancel at a time per job.
    finish_locks: finish::FinishLocks,
    /// Whether the machine has a route now, and when it had none.
    connectivity: Arc<Connectivity>,
    /// Whether the network is metered now, and where that came from.
    network_cost: Arc<NetworkCost>,
    /// Peer caching, when it is on.
    peers: OnceLock<Arc<dyn PeerCache>>,
    /// The machine's broker (a worker of the system-wide daemon).
    machine: OnceLock<Arc<dyn Machine>>,
    /// What the metrics count that nothing else keeps.
    counters: counters::Counters,
    /// This service, for the tasks it starts.
    this: Weak<Service>,
}

impl Service {
    /// Loads the store and re-queues jobs that were transferring when the daemon stopped.
    pub fn open(config: Config, store: Store, uid: u32) -> Result<Arc<Service>, ServiceError> {
        let snapshot = store
            .load()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let store = Arc::new(store);
        let engine = Engine::new(&config);
        let mut inner = Inner::new(engine.clone(), store.clone());
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
        // outbox (the delivery decides what to do with it and looks the job up) or their
        // cancel was cut short (`finish_interrupted` deletes their part files).
        let notified: std::collections::HashSet<Uuid> =
            snapshot.outbox.iter().map(|o| o.job_id).collect();
        let live = snapshot
            .jobs
            .iter()
            .filter(|j| !j.state.is_final() || notified.contains(&j.id) || j.finishing.is_some())
            .count();
        inner.jobs.reserve(live);
        inner
            .archived
            .reserve(snapshot.jobs.len() - live + snapshot.archived.len());
        for row in &snapshot.archived {
            inner.insert_stored(row);
        }
        drop(snapshot.archived);
        let mut requeued = Vec::new();
        for job in snapshot.jobs {
            let id = job.id;
            let state = job.state;
            let files = files_by_job.remove(&id).unwrap_or_default();
            if state.is_final() && !notified.contains(&id) && job.finishing.is_none() {
                inner.insert_archived(&job, &files);
                continue;
            }
            let finishing = job.finishing.is_some();
            inner.insert(Entry::new(job, files));
            match state {
                // A complete cut short took the job from the engine first; it stays out.
                _ if finishing && state.is_active() => {
                    inner.set_state(id, JobState::Suspended);
                    requeued.push(id);
                }
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
        let state_dir: PathBuf = store
            .path()
            .parent()
            .map(|p| p.to_owned())
            .unwrap_or_default();
        let (events, _) = broadcast::channel(4096);
        let notifier = Notifier::new(
            crate::notify::Settings {
                callback_timeout: config.callback_timeout,
                activation_timeout: config.activation_timeout,
                socket_path: config.socket_path.clone(),
                handler_log: state_dir.join("handlers.log"),
                command_log: state_dir.join("notify-commands.log"),
                max_per_user: config.max_notifications_per_user,
                command_timeout: config.notify_command_timeout,
            },
            snapshot.outbox,
        );
        let (owners, admin_gid) = if config.is_system() {
            let gid = crate::owner::group_id(&config.admin_group);
            match gid {
                Some(gid) => {
                    tracing::info!(group = %config.admin_group, gid, "administrators: root and the members of the admin group")
                }
                None => {
                    tracing::info!(group = %config.admin_group, "the admin group does not exist: root is the only administrator")
                }
            }
            (Owners::worker(uid, state_dir.clone()), gid)
        } else {
            (Owners::per_user(uid, state_dir.clone()), None)
        };
        let svc = Arc::new_cyclic(|this| Service {
            config,
            store,
            inner: Mutex::new(inner),
            events,
            shutdown: CancellationToken::new(),
            uid,
            started_ms: now_ms(),
            engine,
            notifier,
            owners,
            admin_gid,
            finish_locks: finish::FinishLocks::default(),
            connectivity: Arc::new(Connectivity::new()),
            network_cost: Arc::new(NetworkCost::new()),
            peers: OnceLock::new(),
            machine: OnceLock::new(),
            counters: counters::Counters::default(),
            this: this.clone(),
        });
        let weak = Arc::downgrade(&svc);
        svc.engine
            .attach(weak.clone() as Weak<dyn crate::engine::Host>);
        svc.notifier
            .attach(weak as Weak<dyn crate::notify::NotifyHost>);
        svc.notifier.start();
        Ok(svc)
    }

    /// What the network watcher keeps up to date.
    pub fn connectivity(&self) -> Arc<Connectivity> {
        self.connectivity.clone()
    }

    /// Runs the engine (the scheduler and its workers) until the daemon shuts down.
    pub fn run_engine(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.engine.clone().run(self.shutdown.clone()))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// The store, shared with the peer cache's index (start-up wiring).
    pub fn shared_store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Stops peer caching (shutdown).
    pub fn stop_peers(&self) {
        if let Some(p) = self.peers.get() {
            p.shutdown();
        }
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
            self.notifier.modified(current.job.id);
        }
        let _ = self.events.send(JobEvent {
            kind,
            current: Arc::new(current),
            previous: previous.map(Arc::new),
        });
    }

    /// Stops a job's run, if one runs, and waits (bounded) until it has checkpointed.
    pub(crate) async fn stop_run(&self, id: Uuid) {
        self.engine.stop(id).await;
    }

    /// Stops every run (shutdown), bounded by the drain timeout.
    pub async fn stop_all(&self) {
        self.engine.stop_all().await;
    }

    /// Flushes and closes the store (the last step of a shutdown).
    pub fn close(&self) {
        self.store.close();
    }

    /// The bandwidth schedule entries in force now.
    pub fn limits_in_force(&self) -> Vec<LimitInForce> {
        self.engine.limits_in_force()
    }

    /// Number of jobs transferring now.
    pub fn active_transfers(&self) -> usize {
        self.engine.active()
    }

    /// Bytes per second of every run together, over the last few seconds.
    pub fn bytes_per_second(&self) -> u64 {
        let now = mono_ms();
        let inner = self.lock();
        inner.jobs.values().map(|e| e.bytes_per_second(now)).sum()
    }

    /// Number of jobs stored.
    pub fn job_count(&self) -> usize {
        let inner = self.lock();
        inner.jobs.len() + inner.archived.len()
    }

    /// Removes final jobs past the retention period, cancels jobs left alone longer
    /// than the inactivity timeout, and archives final jobs.
    pub async fn housekeeping(&self) {
        // Ages on the monotonic clock: a wall clock set forward cancels and purges nothing.
        let now = mono_ms();
        let retention = self.config.retention.as_millis() as i64;
        let inactivity = self.config.job_inactivity_timeout.as_millis() as i64;
        let (purge, stale): (Vec<Uuid>, Vec<(Uuid, u32)>) = {
            let inner = self.lock();
            let purge = inner
                .jobs
                .values()
                .filter(|e| e.job.state.is_final() && now - e.clock.touched > retention)
                .map(|e| e.job.id)
                .chain(
                    inner
                        .archived
                        .iter()
                        .filter(|(_, a)| now - a.touched > retention)
                        .map(|(id, _)| *id),
                )
                .collect();
            let stale = inner
                .jobs
                .values()
                .filter(|e| !e.job.state.is_final() && now - e.clock.touched > inactivity)
                .map(|e| (e.job.id, e.job.owner_uid))
                .collect();
            (purge, stale)
        };
        for (id, owner) in stale {
            tracing::info!(%id, "cancelling a job left alone past the inactivity timeout");
            let _ = self.cancel(owner, id).await;
        }
        self.purge(purge).await;
        self.trim_final_jobs().await;
        self.archive_final_jobs(now);
    }

    /// Removes final jobs from memory and the store, telling subscribers.
    pub(crate) async fn purge(&self, purge: Vec<Uuid>) {
        if purge.is_empty() {
            return;
        }
        let removed: Vec<_> = {
            let mut inner = self.lock();
            purge.iter().filter_map(|id| inner.remove(*id)).collect()
        };
        // Archived jobs only in the store are read back for the Deleted events
        // before their rows go (outside the lock: there may be many).
        let store = self.store.clone();
        let removed: Vec<JobView> = tokio::task::spawn_blocking(move || {
            removed.into_iter().filter_map(|r| r.view(&store)).collect()
        })
        .await
        .unwrap_or_default();
        let _ = Store::committed(self.store.delete_jobs(purge)).await;
        for v in removed {
            self.emit(ChangeKind::Deleted, v, None);
        }
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
                    && now - e.clock.touched >= ARCHIVE_AFTER_MS
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

    /// As whom the work of `job` is done: its owner, with the umask it was created with.
    pub(crate) fn owner_of(&self, job: &JobRecord) -> crate::owner::Owner {
        self.owners.with_umask(job.owner_uid, job.options.umask)
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
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{JobRecord, JobType, Priority};
    use crate::query::exec::{prefilter, Source};

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
            peer: Default::default(),
            mirrors: Vec::new(),
            mirror_in_use: 0,
            response_headers: Vec::new(),
            ranges: Default::default(),
        }
    }

    /// The counts by state kept as jobs change, checked against a count of every job.
    fn assert_counts_by_state(svc: &Service) {
        let inner = svc.lock();
        let mut counted: HashMap<JobState, usize> = HashMap::new();
        for e in inner.jobs.values() {
            *counted.entry(e.job.state).or_default() += 1;
        }
        for a in inner.archived.values() {
            *counted.entry(a.state).or_default() += 1;
        }
        for (state, n) in inner.jobs_by_state() {
            assert_eq!(n, counted.get(&state).copied().unwrap_or(0), "{state}");
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
    async fn many_stored_final_jobs_are_read_in_one_pass_for_a_query() {
        let dir = tempfile::tempdir().unwrap();
        let mut states = vec![JobState::Acknowledged; 300];
        states.push(JobState::Suspended);
        let jobs = store_with(dir.path(), &states).await;
        let svc = Service::open(Config::default(), Store::open(dir.path()).unwrap(), 7).unwrap();
        let all = Source::jobs(&*svc, Scope::Uid(7), &prefilter(None));
        assert_eq!(
            all.iter().map(|v| v.job.clone()).collect::<Vec<_>>(),
            jobs,
            "every job, whole and in order"
        );
        assert!(all[..300].iter().all(|v| v.totals.files_transferred == 1));
        assert_eq!(Source::files(&*svc, Scope::Uid(7)).len(), 301);
        assert!(Source::jobs(&*svc, Scope::Uid(8), &prefilter(None)).is_empty());
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
            assert!(
                inner.archived.values().all(|a| a.only_stored()),
                "final jobs found at start-up are kept as an index, read from the store"
            );
            assert_eq!(inner.jobs.len(), 2);
            assert_eq!(
                inner.unfinished_of(7),
                2,
                "suspended and error count, final jobs not"
            );
            assert_eq!(inner.unfinished_total(), 2);
        }
        assert_eq!(svc.job_count(), 4);
        assert_counts_by_state(&svc);

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
        let e = svc.get_job(8, ack.id).unwrap_err();
        assert_eq!(e.reason(), Some(ErrorReason::JobNotFound), "{e:?}");
        assert!(svc.archived_state(8, ack.id).is_none());

        let all: Vec<Uuid> = svc.list_jobs(7, true).iter().map(|v| v.job.id).collect();
        assert_eq!(all, jobs.iter().map(|j| j.id).collect::<Vec<_>>());
        assert_eq!(svc.list_jobs(7, false).len(), 2);
        // Queries see archived jobs too; a prefilter on the state finds them without
        // decoding the others.
        let plan = svc
            .plan_select("SELECT * FROM Job WHERE state = 'cancelled'")
            .unwrap();
        let cancelled = Source::jobs(&*svc, Scope::Uid(7), &prefilter(plan.filter.as_ref()));
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].job.id, jobs[1].id);
        assert_eq!(Source::files(&*svc, Scope::Uid(7)).len(), 4);
        assert!(Source::files(&*svc, Scope::Uid(8)).is_empty());

        // Commands on archived jobs are refused as on any final job…
        for r in [
            svc.resume(7, ack.id).await,
            svc.suspend(7, ack.id).await,
            svc.cancel(7, ack.id).await,
        ] {
            match r {
                Err(ServiceError::FailedPrecondition(m)) => assert!(m.contains("final"), "{m}"),
                other => panic!("expected FailedPrecondition, got {other:?}"),
            }
        }
        assert!(matches!(
            svc.complete(7, jobs[1].id).await,
            Err(ServiceError::FailedPrecondition(_))
        ));
        // …but the one that made the job final answers again, with how it ended (a client
        // whose call was cut off calls again).
        let again = svc.complete(7, ack.id).await.unwrap();
        assert_eq!(again.view.job, *ack);
        assert_eq!((again.committed, again.discarded), (1, 0));
        assert_eq!(
            svc.cancel(7, jobs[1].id).await.unwrap().job.state,
            JobState::Cancelled
        );
        let add = svc
            .add_files(
                &Caller::user(7, 7),
                ack.id,
                vec![FileSpec {
                    remote_url: "http://h/y".into(),
                    local_path: "/tmp/ferry-archive-test-y".into(),
                    expected_sha256: None,
                    mirrors: Vec::new(),
                    ranges: Vec::new(),
                    on_demand: false,
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
        assert_eq!(svc.lock().unfinished_of(7), 2);
        assert_counts_by_state(&svc);
        svc.cancel(7, ids[0]).await.unwrap();
        svc.cancel(7, ids[1]).await.unwrap();
        assert_counts_by_state(&svc);
        assert_eq!(
            svc.lock()
                .jobs_by_state()
                .iter()
                .find(|(s, _)| *s == JobState::Cancelled),
            Some(&(JobState::Cancelled, 2))
        );
        // Just made final: left alone.
        svc.housekeeping().await;
        assert_eq!(svc.lock().archived.len(), 0);
        // Unchanged for longer than ARCHIVE_AFTER_MS: archived; past retention: purged.
        {
            let mut inner = svc.lock();
            inner.jobs.get_mut(&ids[0]).unwrap().clock.touched -= ARCHIVE_AFTER_MS;
            inner.jobs.get_mut(&ids[1]).unwrap().clock.touched -= 2 * 3600 * 1000;
        }
        svc.housekeeping().await;
        assert_counts_by_state(&svc);
        {
            let inner = svc.lock();
            assert_eq!(inner.jobs.len(), 0);
            assert_eq!(inner.archived.len(), 1);
            assert_eq!(inner.unfinished_of(7), 0, "cancelled jobs do not count");
        }
        assert_eq!(
            svc.get_job(7, ids[0]).unwrap().job.state,
            JobState::Cancelled
        );
        assert!(svc.get_job(7, ids[1]).is_err());
        // Archived, then past retention: purged from the archive and the store.
        svc.lock().archived.get_mut(&ids[0]).unwrap().touched -= 2 * 3600 * 1000;
        svc.housekeeping().await;
        assert_eq!(svc.job_count(), 0);
        assert_counts_by_state(&svc);
        assert!(svc.lock().jobs_by_state().iter().all(|(_, n)| *n == 0));
        assert_eq!(svc.lock().unfinished_total(), 0);
        let left = svc.store.load().unwrap();
        assert!(left.jobs.is_empty());
        svc.store.close();
    }
}
