//! The root broker of the system-wide daemon (`ferryd --system`): it accepts on the
//! machine's socket, reads who connected (`SO_PEERCRED`, `SO_PEERGROUPS`), and hands the
//! connection itself to that user's worker, starting the worker when none runs. It also
//! answers what only the machine can: whether a client is an administrator (and then
//! opens connections for it to every other user's worker), the machine's job count and
//! transfer slots, the machine's metrics (its workers' numbers added up), and stopping
//! everything.
//!
//! It opens no path a user named, makes no network request, speaks no gRPC, and reads
//! nothing of a job: what it knows of a worker is what routing needs (the connections it
//! handed over, the jobs and slots the worker says it has — trusted for nothing but the
//! worker's own share). A worker is its user's process, so everything it says is checked
//! against what the broker itself saw at `accept`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ipc;
use super::protocol::{Call, FromWorker, Refusal, RefusalKind, ToWorker};
use super::spawn;
use crate::config::Config;
use crate::model::{Caller, MetricsSnapshot};
use crate::owner::Account;

/// The capabilities the broker keeps (everything else leaves its bounding set):
/// `CAP_SETUID` and `CAP_SETGID` to start each worker as its user, `CAP_SETPCAP` to empty
/// the worker's bounding set before it runs, `CAP_CHOWN` to give each user their folder
/// under the state folder, `CAP_KILL` to stop a worker that does not stop when asked.
pub const KEPT_CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
];

/// How long a started worker has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait before a worker that keeps crashing is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a scrape waits for the workers' numbers (a worker that has not answered by
/// then counts with the numbers it sent last).
const METRICS_WAIT: Duration = Duration::from_secs(3);

/// What the broker needs to run.
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub config: Config,
    /// The configuration file, passed on to the workers.
    pub config_path: PathBuf,
    /// This program, opened before any privilege was dropped (workers are started from
    /// it, so they run the very same build even if the file is replaced meanwhile).
    pub program: std::fs::File,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Started; connections wait in `pending` until it is ready.
    Starting,
    Ready,
    /// It said it leaves (idle): new connections wait for the next worker.
    Leaving,
}

/// A connection waiting for its worker.
struct Pending {
    id: u64,
    fd: OwnedFd,
    admin: Option<u32>,
}

/// One user's worker as the broker knows it.
struct Worker {
    phase: Phase,
    /// Messages to the worker, in order (a task writes them to its control link).
    mailbox: Option<mpsc::UnboundedSender<(ToWorker, Vec<OwnedFd>)>>,
    pending: Vec<Pending>,
    /// The client connections handed to it and still open, with who made them.
    connections: HashMap<u64, Caller>,
    /// Jobs not yet acknowledged or cancelled, as it last said.
    unfinished: u64,
    /// Transfer slots it would use, and those granted.
    want: u32,
    granted: u32,
    pid: Option<u32>,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            phase: Phase::Starting,
            mailbox: None,
            pending: Vec::new(),
            connections: HashMap::new(),
            unfinished: 0,
            want: 0,
            granted: 0,
            pid: None,
        }
    }

    fn send(&self, msg: ToWorker, fds: Vec<OwnedFd>) {
        if let Some(m) = &self.mailbox {
            let _ = m.send((msg, fds));
        }
    }
}

/// The broker's state.
pub struct Broker {
    opts: Options,
    admin_gid: Option<u32>,
    workers: Mutex<HashMap<u32, Worker>>,
    next_id: AtomicU64,
    stop: CancellationToken,
    /// Supervision tasks still running (shutdown waits for them).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When a refused connection of each uid was last logged.
    refusals_logged: Mutex<HashMap<u32, std::time::Instant>>,
    /// Each user's worker's last numbers for the metrics endpoint, with the round they
    /// answered (kept when the worker leaves: its jobs are still the machine's).
    metrics: Mutex<HashMap<u32, (u64, MetricsSnapshot)>>,
    metrics_round: AtomicU64,
    metrics_answered: tokio::sync::Notify,
}

impl Broker {
    pub fn new(opts: Options) -> Arc<Broker> {
        let admin_gid = crate::owner::group_id(&opts.config.admin_group);
        match admin_gid {
            Some(gid) => {
                tracing::info!(group = %opts.config.admin_group, gid, "administrators: root and the members of the admin group")
            }
            None => {
                tracing::info!(group = %opts.config.admin_group, "the admin group does not exist: root is the only administrator")
            }
        }
        Arc::new(Broker {
            opts,
            admin_gid,
            workers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            refusals_logged: Mutex::new(HashMap::new()),
            metrics: Mutex::new(HashMap::new()),
            metrics_round: AtomicU64::new(0),
            metrics_answered: tokio::sync::Notify::new(),
        })
    }

    /// The machine's numbers for the metrics endpoint: every ready worker is asked for
    /// its own (answers awaited for [`METRICS_WAIT`] at most) and the last numbers of
    /// every user's worker, running or not, are added up.
    pub async fn metrics(&self) -> MetricsSnapshot {
        let round = self.metrics_round.fetch_add(1, Ordering::SeqCst) + 1;
        let asked: Vec<u32> = {
            let workers = self.workers.lock();
            workers
                .iter()
                .filter(|(_, w)| w.phase == Phase::Ready)
                .map(|(uid, w)| {
                    w.send(ToWorker::Metrics { round }, Vec::new());
                    *uid
                })
                .collect()
        };
        let deadline = tokio::time::Instant::now() + METRICS_WAIT;
        loop {
            // Created before the check: an answer between the two still wakes it.
            let answered = self.metrics_answered.notified();
            let all = {
                let m = self.metrics.lock();
                asked
                    .iter()
                    .all(|uid| m.get(uid).is_some_and(|(r, _)| *r >= round))
            };
            if all || tokio::time::timeout_at(deadline, answered).await.is_err() {
                break;
            }
        }
        let mut sum = MetricsSnapshot::empty();
        for (_, s) in self.metrics.lock().values() {
            sum.add(s);
        }
        sum
    }

    /// Fires when the broker stops.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    fn is_admin(&self, c: &Caller) -> bool {
        c.uid == 0 || self.admin_gid.is_some_and(|g| c.in_group(g))
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The folder of user `uid` under the state folder (their worker's store).
    fn user_dir(&self, uid: u32) -> PathBuf {
        self.opts.state_dir.join("users").join(uid.to_string())
    }

    /// Every uid with a folder under `users/`, or a store split from the single store of
    /// an earlier version waiting in `migrate/` (their workers start at boot: BITS runs
    /// jobs with nobody logged on).
    pub fn known_users(&self) -> Vec<u32> {
        let mut uids: Vec<u32> = ["users", "migrate"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(self.opts.state_dir.join(d))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        uids.sort_unstable();
        uids.dedup();
        uids
    }

    /// Starts the workers of every known user.
    pub fn start_known(self: &Arc<Self>) {
        for uid in self.known_users() {
            let new = match self.workers.lock().entry(uid) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Worker::new());
                    true
                }
                std::collections::hash_map::Entry::Occupied(_) => false,
            };
            if new {
                self.supervise(uid);
            }
        }
    }

    /// A client connected: hand the connection to its user's worker.
    pub fn accepted(self: &Arc<Self>, stream: std::os::unix::net::UnixStream) {
        let caller = match crate::rpc::peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("a connection whose credentials could not be read was closed: {e}");
                return;
            }
        };
        if let Some(open) = self.over_connection_limit(caller.uid) {
            // Closed at once: one user's connections must not take the descriptors every
            // user's connections need (the broker's, then their worker's).
            self.refused_connection(caller.uid, open);
            return;
        }
        let id = self.new_id();
        self.route(caller.uid, id, OwnedFd::from(stream), Some(caller), None);
    }

    /// The connections `uid` has open (handed over or waiting), when that is the most
    /// `[system] max_connections_per_user` allows.
    fn over_connection_limit(&self, uid: u32) -> Option<usize> {
        let workers = self.workers.lock();
        let open = workers
            .get(&uid)
            .map_or(0, |w| w.connections.len() + w.pending.len());
        (open >= self.opts.config.system.max_connections_per_user).then_some(open)
    }

    /// Logs a refused connection, once a minute per user at most.
    fn refused_connection(&self, uid: u32, open: usize) {
        let mut last = self.refusals_logged.lock();
        let now = std::time::Instant::now();
        if last
            .get(&uid)
            .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60))
        {
            return;
        }
        last.insert(uid, now);
        tracing::warn!(
            uid,
            open,
            "uid {uid} has {open} connections open, the most max_connections_per_user \
             ([system] in {}) allows: closing the new ones (logged once a minute)",
            self.opts.config.source.display()
        );
    }

    /// Hands connection `id` to the worker of `uid`, starting it if needed. `caller`:
    /// the client's credentials (none for a connection the broker made for an
    /// administrator, `admin`).
    fn route(
        self: &Arc<Self>,
        uid: u32,
        id: u64,
        fd: OwnedFd,
        caller: Option<Caller>,
        admin: Option<u32>,
    ) {
        if self.stop.is_cancelled() {
            return;
        }
        let mut workers = self.workers.lock();
        let start = !workers.contains_key(&uid);
        let w = workers.entry(uid).or_insert_with(Worker::new);
        if let Some(c) = caller {
            w.connections.insert(id, c);
        }
        if w.phase == Phase::Ready {
            w.send(ToWorker::Connection { id, admin }, vec![fd]);
        } else {
            w.pending.push(Pending { id, fd, admin });
        }
        drop(workers);
        if start {
            self.supervise(uid);
        }
    }

    /// Starts the task that runs (and re-runs) the worker of `uid`.
    fn supervise(self: &Arc<Self>, uid: u32) {
        let broker = self.clone();
        let task = tokio::spawn(async move { broker.run_worker(uid).await });
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Runs the worker of `uid` until it leaves for good (idle, or the broker stops),
    /// starting it again after a crash.
    async fn run_worker(self: Arc<Self>, uid: u32) {
        let mut failures = 0u32;
        loop {
            let clean = match self.run_worker_once(uid).await {
                Ok(clean) => clean,
                Err(e) => {
                    tracing::error!(uid, "cannot start the worker of uid {uid}: {e:#}");
                    false
                }
            };
            let again = {
                let mut workers = self.workers.lock();
                let Some(w) = workers.get_mut(&uid) else {
                    return;
                };
                // Everything the process held died with it.
                w.connections.clear();
                w.mailbox = None;
                w.pid = None;
                w.want = 0;
                w.granted = 0;
                let again = !self.stop.is_cancelled() && (!clean || !w.pending.is_empty());
                if again {
                    w.phase = Phase::Starting;
                } else {
                    workers.remove(&uid);
                }
                again
            };
            self.rebalance_slots();
            if !again {
                return;
            }
            if clean {
                failures = 0;
                continue;
            }
            failures += 1;
            let backoff = Duration::from_millis(250 << failures.min(8)).min(MAX_BACKOFF);
            tracing::warn!(
                uid,
                ?backoff,
                "the worker of uid {uid} ended unexpectedly; starting it again"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    /// Runs one worker process of `uid` to its end; `Ok(true)` when it left cleanly
    /// (idle, or stopped because the broker stops).
    async fn run_worker_once(self: &Arc<Self>, uid: u32) -> anyhow::Result<bool> {
        let account = Account::of(uid);
        self.prepare_user_dir(&account)?;
        let (ours, theirs) = ipc::pair()?;
        let program = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.opts.program)
        );
        let mut args: Vec<std::ffi::OsString> = vec![
            "--worker".into(),
            "--state-dir".into(),
            self.user_dir(uid).into(),
            "--config".into(),
            self.opts.config_path.clone().into(),
            "--socket".into(),
            self.opts.socket.clone().into(),
        ];
        let import = super::migrate::import_path(&self.opts.state_dir, uid);
        if import.parent().is_some_and(Path::exists) {
            // The user's jobs from the single store of an earlier version.
            args.extend(["--import".into(), import.into()]);
        }
        let mut cmd = spawn::command(spawn::Start {
            program: Path::new(&program),
            args,
            account: &account,
            control: OwnedFd::from(theirs),
            max_files: self.opts.config.system.worker_max_files,
            env: Vec::new(),
        })?;
        let mut child = cmd.spawn()?;
        drop(cmd);
        let pid = child.id();
        tracing::info!(uid, pid, user = %account.name, "worker started");
        let (tx, mut rx) = ipc::link(ours)?;
        let (mail_tx, mut mail_rx) = mpsc::unbounded_channel::<(ToWorker, Vec<OwnedFd>)>();
        {
            let mut workers = self.workers.lock();
            let w = workers.entry(uid).or_insert_with(Worker::new);
            w.mailbox = Some(mail_tx);
            w.pid = pid;
            w.phase = Phase::Starting;
        }
        let writer = tokio::spawn(async move {
            while let Some((msg, fds)) = mail_rx.recv().await {
                let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
                if let Err(e) = tx.send(&msg, &borrowed).await {
                    tracing::debug!(uid, "the worker's link broke: {e}");
                    return;
                }
            }
        });
        let ready_by = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut stopped = false;
        let mut leaving = false;
        let status = loop {
            let ready = self.workers.lock().get(&uid).map(|w| w.phase) != Some(Phase::Starting);
            tokio::select! {
                status = child.wait() => break status,
                msg = rx.recv::<FromWorker>() => match msg {
                    Ok(Some((msg, _fds))) => {
                        // A worker never hands the broker a descriptor: any it sent are closed here.
                        if let Some(leave) = self.handle(uid, msg) {
                            leaving = leave;
                        }
                    }
                    Ok(None) => {
                        // The worker closed its link: it is ending.
                        break child.wait().await;
                    }
                    Err(e) => {
                        tracing::warn!(uid, "the worker of uid {uid} sent something malformed ({e}); stopping it");
                        let _ = child.start_kill();
                        break child.wait().await;
                    }
                },
                _ = tokio::time::sleep_until(ready_by), if !ready => {
                    tracing::warn!(uid, "the worker of uid {uid} did not get ready within {READY_TIMEOUT:?}; stopping it");
                    let _ = child.start_kill();
                    break child.wait().await;
                }
                _ = self.stop.cancelled(), if !stopped => {
                    stopped = true;
                    if let Some(w) = self.workers.lock().get(&uid) {
                        w.send(ToWorker::Stop, Vec::new());
                    }
                }
            }
        };
        writer.abort();
        let status = status?;
        let clean = status.success() && (leaving || stopped || self.stop.is_cancelled());
        if clean {
            tracing::info!(uid, pid, "worker ended");
        } else {
            tracing::warn!(uid, pid, %status, "the worker of uid {uid} ended unexpectedly");
        }
        Ok(clean)
    }

    /// The user's folder under `users/`: made by root (in a folder only root may write),
    /// then given to the user, 0700. A folder that exists must be the user's.
    fn prepare_user_dir(&self, account: &Account) -> anyhow::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = self.user_dir(account.uid);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() && m.uid() == account.uid => Ok(()),
            Ok(m) if m.is_dir() => {
                // A folder of another owner (made by root before the user's first
                // worker): give it to the user.
                std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                Ok(())
            }
            Ok(_) => anyhow::bail!("{} is not a folder", dir.display()),
            Err(_) => {
                std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
                std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid))?;
                Ok(())
            }
        }
    }

    /// Handles a worker's message; `Some(true)` when it was told it may leave.
    fn handle(self: &Arc<Self>, uid: u32, msg: FromWorker) -> Option<bool> {
        match msg {
            FromWorker::Ready => {
                let mut workers = self.workers.lock();
                let w = workers.get_mut(&uid)?;
                w.phase = Phase::Ready;
                for p in std::mem::take(&mut w.pending) {
                    w.send(
                        ToWorker::Connection {
                            id: p.id,
                            admin: p.admin,
                        },
                        vec![p.fd],
                    );
                }
                None
            }
            FromWorker::Closed { connection } => {
                if let Some(w) = self.workers.lock().get_mut(&uid) {
                    w.connections.remove(&connection);
                }
                None
            }
            FromWorker::Unfinished { jobs } => {
                if let Some(w) = self.workers.lock().get_mut(&uid) {
                    w.unfinished = jobs;
                }
                None
            }
            FromWorker::WantSlots { slots } => {
                if let Some(w) = self.workers.lock().get_mut(&uid) {
                    w.want = slots;
                }
                self.rebalance_slots();
                None
            }
            FromWorker::MayLeave => {
                let mut workers = self.workers.lock();
                let w = workers.get_mut(&uid)?;
                let leave =
                    w.phase == Phase::Ready && w.pending.is_empty() && w.connections.is_empty();
                if leave {
                    w.phase = Phase::Leaving;
                }
                w.send(ToWorker::Leave(leave), Vec::new());
                Some(leave)
            }
            FromWorker::Metrics { round, snapshot } => {
                // The worker is its user's: what it sends is bounded before it is kept. An
                // answer to an older round (scrapes at once) does not replace a newer one.
                let mut kept = self.metrics.lock();
                if kept.get(&uid).is_none_or(|(r, _)| *r <= round) {
                    kept.insert(uid, (round, snapshot.trimmed()));
                }
                drop(kept);
                self.metrics_answered.notify_waiters();
                None
            }
            FromWorker::Request { request, call } => {
                let (result, fds) = self.answer(uid, call);
                if let Some(w) = self.workers.lock().get(&uid) {
                    w.send(ToWorker::Answer { request, result }, fds);
                }
                None
            }
        }
    }

    /// The credentials of connection `id` as the broker saw them at `accept`, when it was
    /// handed to the worker of `uid` and is still open.
    fn client(&self, uid: u32, id: u64) -> Option<Caller> {
        self.workers
            .lock()
            .get(&uid)
            .and_then(|w| w.connections.get(&id).cloned())
    }

    fn answer(self: &Arc<Self>, uid: u32, call: Call) -> (Result<Vec<u32>, Refusal>, Vec<OwnedFd>) {
        match call {
            Call::AdminConnect { connection } => match self.client(uid, connection) {
                Some(c) if self.is_admin(&c) => self.admin_connections(c.uid),
                _ => (Err(self.not_admin()), Vec::new()),
            },
            Call::Reserve { connection, jobs } => (self.reserve(uid, connection, jobs), Vec::new()),
            Call::Shutdown { connection } => match self.client(uid, connection) {
                Some(c) if c.uid == 0 => {
                    tracing::info!("shutdown requested by root");
                    self.stop.cancel();
                    (Ok(Vec::new()), Vec::new())
                }
                _ => (
                    Err(Refusal::new(
                        RefusalKind::PermissionDenied,
                        "only root may stop the system-wide ferryd (`systemctl stop ferryd`)",
                    )),
                    Vec::new(),
                ),
            },
        }
    }

    fn not_admin(&self) -> Refusal {
        Refusal::new(
            RefusalKind::PermissionDenied,
            format!(
                "only root and the members of group '{}' may see or manage every user's jobs",
                self.opts.config.admin_group
            ),
        )
    }

    /// A new connection to every other known user's worker (started when needed), each
    /// vouched as administrator `admin`'s; the uids, and the administrator's ends.
    fn admin_connections(
        self: &Arc<Self>,
        admin: u32,
    ) -> (Result<Vec<u32>, Refusal>, Vec<OwnedFd>) {
        let mut uids: Vec<u32> = self.workers.lock().keys().copied().collect();
        uids.extend(self.known_users());
        uids.sort_unstable();
        uids.dedup();
        uids.retain(|&u| u != admin);
        let mut ours = Vec::new();
        let mut theirs_uids = Vec::new();
        for uid in uids {
            let (a, b) = match ipc::pair() {
                Ok(p) => p,
                Err(e) => {
                    return (
                        Err(Refusal::new(
                            RefusalKind::Unavailable,
                            format!("the broker could not open a connection: {e}"),
                        )),
                        Vec::new(),
                    )
                }
            };
            let id = self.new_id();
            self.route(uid, id, OwnedFd::from(b), None, Some(admin));
            ours.push(OwnedFd::from(a));
            theirs_uids.push(uid);
        }
        (Ok(theirs_uids), ours)
    }

    /// Counts `jobs` more jobs of `uid` against `max_jobs_per_machine`, unless the client
    /// is exempt (root, administrators), whose jobs count but are never refused.
    fn reserve(&self, uid: u32, connection: u64, jobs: u32) -> Result<Vec<u32>, Refusal> {
        let exempt = self
            .client(uid, connection)
            .is_some_and(|c| self.is_admin(&c));
        let mut workers = self.workers.lock();
        let total: u64 = workers.values().map(|w| w.unfinished).sum();
        let limit = self.opts.config.max_jobs_per_machine as u64;
        if !exempt && total + u64::from(jobs) > limit {
            return Err(Refusal::new(
                RefusalKind::ResourceExhausted,
                format!(
                    "this machine has {total} jobs not yet completed or cancelled, the limit is \
                     {limit} (max_jobs_per_machine in {}): try again once some are done, or \
                     have max_jobs_per_machine raised there",
                    self.opts.config.source.display()
                ),
            ));
        }
        if let Some(w) = workers.get_mut(&uid) {
            // Counted now, so that another user's create right after sees them; the
            // worker's next count replaces this.
            w.unfinished += u64::from(jobs);
        }
        Ok(Vec::new())
    }

    /// Shares the machine's transfer slots (`max_concurrent_jobs`) among the workers that
    /// want some, one at a time to each in turn (so each user gets an equal share when
    /// all want more than that), and tells each worker whose grant changed.
    fn rebalance_slots(&self) {
        let total = self.opts.config.max_concurrent_jobs as u32;
        let mut workers = self.workers.lock();
        let mut uids: Vec<u32> = workers.keys().copied().collect();
        uids.sort_unstable();
        let mut grant: HashMap<u32, u32> = uids.iter().map(|u| (*u, 0)).collect();
        let mut left = total;
        loop {
            let mut gave = false;
            for uid in &uids {
                if left == 0 {
                    break;
                }
                let g = grant.get_mut(uid).expect("every uid");
                if *g < workers[uid].want {
                    *g += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave || left == 0 {
                break;
            }
        }
        for uid in uids {
            let w = workers.get_mut(&uid).expect("listed");
            let g = grant[&uid];
            if w.granted != g && w.phase == Phase::Ready {
                w.granted = g;
                w.send(ToWorker::Slots { granted: g }, Vec::new());
            }
        }
    }

    /// Stops every worker (each checkpoints and exits), waiting at most `drain`; kills
    /// what is left.
    pub async fn shutdown(&self, drain: Duration) {
        self.stop.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(drain + Duration::from_secs(5), all)
            .await
            .is_err()
        {
            let pids: Vec<u32> = self.workers.lock().values().filter_map(|w| w.pid).collect();
            for pid in pids {
                tracing::warn!(pid, "a worker did not stop in time; killing it");
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}
