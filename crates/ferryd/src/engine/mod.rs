//! The transfer engine: the scheduling policy (`scheduler`), the worker that runs one
//! job's files (`worker`), the transfers per scheme (`download` for http and https,
//! `file`, `upload`), the part-file writer (`partfile`), and what a run shares while it
//! runs (`live`).
//!
//! An http(s) download is planned, then run: `planner` picks a strategy (a pure function
//! of the file's state, the job's options, one probe of the origin, `probe`, and what the
//! fleet's peers said), and the strategies (`frompeers`, `swarm`, `segmented`, `single`)
//! are leaves over the range connection (`rangeconn`), the connections over a segment
//! table (`multisource`) and the HTTP metadata (`httpmeta`). The files of the engine
//! import each other in no circle (`tests/layers.rs`); this file names its modules and
//! owns the [`Engine`], and nothing below names it.
//!
//! The engine reports to whoever owns the jobs through the [`Host`] trait it defines
//! (`host`); it never names the service. Byte counters are per run (atomics in
//! [`LiveRun`]); the host hears of progress at most twice a second per job.
//!
//! May use: `model`, `config`, `owner`, and its own modules. Not `service`, `notify`,
//! `query`, `rpc` or `store`.

pub mod digest;
pub mod download;
pub mod error;
pub mod events;
pub mod file;
pub mod fleet;
pub mod frompeers;
pub mod gssapi;
pub mod host;
pub mod httpmeta;
pub mod live;
pub mod mirrors;
pub mod multisource;
pub mod negotiate;
pub mod netclient;
pub mod partfile;
pub mod planner;
pub mod probe;
pub mod rangeconn;
pub mod ranged;
pub mod ratelimit;
pub mod redirect;
pub mod schedule;
pub mod scheduler;
pub mod segmented;
pub mod segtable;
pub mod single;
pub mod sizecap;
pub mod sources;
pub mod swarm;
pub mod task;
pub mod tls;
pub mod upload;
pub mod worker;
pub mod yielding;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::model::Priority;
pub use events::FileEvents;
pub use fleet::{ContentQuery, PeerFinder, PeerOffer};
pub use host::{FileStart, Host, Report, RunId, RunPlan};
pub use live::{Durable, LiveRun, OnDemand};
pub use sources::{Received, SourceBytes};
pub use task::{FileTask, Outcome};

/// Schemes ferry transfers.
pub const SCHEMES: &[&str] = &["http", "https", "file"];

/// The engine: its scheduler, and what its runs share (the configuration, the shared
/// HTTP client, the daemon-wide bandwidth limit, the schedules, the fleet's peers).
pub struct Engine {
    shared: Arc<worker::Shared>,
    scheduler: Arc<scheduler::Scheduler>,
    host: OnceLock<Weak<dyn Host>>,
    /// No run starts and no retry comes due while set (the store cannot be written).
    paused: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine with `config`'s limits; [`Engine::attach`] gives it its host.
    pub fn new(config: &Config) -> Arc<Engine> {
        let global_limit = (config.bandwidth_limit > 0)
            .then(|| Arc::new(ratelimit::RateLimiter::new(config.bandwidth_limit)));
        Arc::new(Engine {
            shared: Arc::new(worker::Shared {
                config: config.clone(),
                http: netclient::shared(),
                global_limit,
                schedules: Arc::new(schedule::Schedules::new(&config.schedules)),
                peers: OnceLock::new(),
                received: Arc::default(),
            }),
            scheduler: Arc::new(scheduler::Scheduler::new(config.max_concurrent_jobs)),
            host: OnceLock::new(),
            paused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Bytes every run received since the daemon started: (from origins, from peers).
    pub fn received(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = &self.shared.received;
        (r.origin.load(Relaxed), r.peers.load(Relaxed))
    }

    /// Gives the engine the fleet's peers (once, at start-up, when peer caching is on).
    pub fn attach_peers(&self, peers: Arc<dyn fleet::PeerFinder>) {
        let _ = self.shared.peers.set(peers);
    }

    /// Sets the host the engine reports to (once, at start-up).
    pub fn attach(&self, host: Weak<dyn Host>) {
        let _ = self.host.set(host);
    }

    fn host(&self) -> Option<Arc<dyn Host>> {
        self.host.get().and_then(Weak::upgrade)
    }

    /// Queues `job` at the back of its priority; one `held_by_cost` does not start until
    /// released ([`Engine::set_held_by_cost`]).
    pub fn queue(&self, job: Uuid, priority: Priority, held_by_cost: bool) {
        self.scheduler.queue(job, priority, held_by_cost);
    }

    /// Changes whether queued `job` is held back by the network's cost state.
    pub fn set_held_by_cost(&self, job: Uuid, held: bool) {
        self.scheduler.set_held_by_cost(job, held);
    }

    /// `job` waits in `transient_error` until `at_ms` (monotonic, [`crate::model::mono_ms`]).
    pub fn retry_at(&self, job: Uuid, at_ms: i64) {
        self.scheduler.retry_at(job, at_ms);
    }

    /// `job` is neither queued nor waiting to retry.
    pub fn forget(&self, job: Uuid) {
        self.scheduler.forget(job);
    }

    /// Tells the run of `job`, if one runs, to stop, without waiting.
    pub fn cancel(&self, job: Uuid) {
        self.scheduler.cancel(job);
    }

    /// Stops the run of `job`, if one runs, and waits (bounded by the drain timeout)
    /// until it has checkpointed.
    pub async fn stop(&self, job: Uuid) {
        self.scheduler
            .stop(job, self.shared.config.drain_timeout)
            .await;
    }

    /// Stops every run (shutdown), bounded by the drain timeout.
    pub async fn stop_all(&self) {
        self.scheduler
            .stop_all(self.shared.config.drain_timeout)
            .await;
    }

    /// Runs in progress.
    pub fn active(&self) -> usize {
        self.scheduler.active()
    }

    /// Background runs start only within `granted` of the machine's slots (a worker of
    /// the system-wide daemon: the broker grants them).
    pub fn set_machine_slots(&self, granted: u32) {
        self.scheduler.set_machine_slots(granted);
    }

    /// How many of the machine's slots this daemon would use now, as it changes.
    pub fn slots_wanted(&self) -> tokio::sync::watch::Receiver<u32> {
        self.scheduler.slots_wanted()
    }

    /// Starts no run and lets no retry come due until [`Engine::unpause`] (runs under way
    /// go on until stopped).
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Undoes [`Engine::pause`]: queued jobs start, due retries are queued.
    pub fn unpause(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.scheduler.wake();
    }

    fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The schedule entries in force now.
    pub fn limits_in_force(&self) -> Vec<schedule::LimitInForce> {
        self.shared.schedules.in_force()
    }

    /// Starts runnable jobs and retries due ones until `shutdown` fires.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let clock = tokio::spawn(self.shared.schedules.clone().follow_the_clock());
        self.schedule_loop(shutdown).await;
        clock.abort();
    }

    async fn schedule_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let Some(host) = self.host() else {
                return;
            };
            let paused = self.is_paused();
            for job in self.scheduler.due_retries_unless(paused) {
                host.retry_due(job);
            }
            for start in self.scheduler.starts_unless(paused) {
                let guard = scheduler::RunGuard {
                    scheduler: self.scheduler.clone(),
                    host: host.clone(),
                    job: start.job,
                    run: start.run,
                };
                tokio::spawn(worker::run(guard, self.shared.clone(), start.cancel));
            }
            drop(host);
            let sleep = self
                .scheduler
                .next_retry_in()
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = self.scheduler.wait(sleep) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
