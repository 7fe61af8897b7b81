//! The jobs the service holds: live entries (with their current run), final jobs kept
//! compact, the counts of unfinished jobs (per owner and in all, for the limits) and
//! handlers. State changes go through [`Inner::set_state`],
//! which keeps the engine's queue and retry index in step.
//!
//! Each job's times that drive a timeout are kept twice: on the wall clock in its record
//! (for people and the store) and on the monotonic clock in its [`JobClock`] (for the
//! decisions), so a change of the wall clock moves no timeout.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::engine::{Engine, LiveRun, RunId};
use crate::model::{
    mono_ms, mono_since, mono_until, now_ms, CostFlags, FileRecord, FileView, HandlerRecord,
    JobRecord, JobState, JobView, Priority, Scope, Totals,
};
use crate::store::{ArchivedRow, Store};

/// The longest a retry time loaded from the store is waited for, unless the job's own
/// retry delay is longer (a wall clock set back between two runs would otherwise hold it).
const MAX_LOADED_RETRY_MS: i64 = 24 * 3600 * 1000;

/// A job's times on the monotonic clock (ms, [`mono_ms`]): what its timeouts are measured
/// from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobClock {
    /// Last changed (inactivity timeout, retention, archiving).
    pub(crate) touched: i64,
    /// A byte last moved, or the job was resumed (no-progress timeout).
    pub(crate) last_progress: i64,
    /// When a job in `transient_error` is retried.
    pub(crate) retry_at: Option<i64>,
    /// Last resumed (`max_transfer_time`).
    pub(crate) first_active: Option<i64>,
    /// Transient errors in a row since a byte last moved (the retry's backoff, and
    /// whether the log hears of it).
    pub(crate) failures_in_a_row: u32,
}

impl JobClock {
    /// The clock of a job loaded from the store: each wall-clock time placed as far from
    /// now as the wall clock says.
    pub(crate) fn of(job: &JobRecord) -> JobClock {
        let retry_cap = MAX_LOADED_RETRY_MS.max(job.min_retry_delay_secs as i64 * 1000);
        JobClock {
            touched: mono_since(job.modified_ms),
            last_progress: mono_since(job.last_progress_ms),
            retry_at: job.retry_at_ms.map(|at| mono_until(at, retry_cap)),
            first_active: job.options.first_active_ms.map(mono_since),
            failures_in_a_row: 0,
        }
    }
}

/// A job that can still change, with its files and what its current run shares.
pub(crate) struct Entry {
    pub(crate) job: JobRecord,
    pub(crate) files: Vec<FileRecord>,
    /// The run transferring the job now, and its byte counters.
    pub(crate) run: Option<(RunId, Arc<LiveRun>)>,
    /// Its times on the monotonic clock.
    pub(crate) clock: JobClock,
    /// The peers that sent bytes of each file (by index), as far as this daemon saw it
    /// run: banned if the application rejects the file.
    pub(crate) peers_used: HashMap<u32, Vec<String>>,
    /// Queued and held back by the network's cost state (kept by [`Inner::set_state`] and
    /// [`Inner::set_cost`]).
    pub(crate) held_by_cost: bool,
}

impl Entry {
    /// A job at rest: no run.
    pub(crate) fn new(job: JobRecord, files: Vec<FileRecord>) -> Entry {
        Entry {
            clock: JobClock::of(&job),
            job,
            files,
            run: None,
            peers_used: HashMap::new(),
            held_by_cost: false,
        }
    }

    /// The job changed now (`modified_ms` and the inactivity clock).
    pub(crate) fn touch(&mut self) {
        self.job.modified_ms = now_ms();
        self.clock.touched = mono_ms();
    }

    /// Where the bytes of file `f` came from, as users see it: live while a run writes it.
    fn sources_of(&self, f: &FileRecord) -> crate::model::FilePeerInfo {
        let live = (!f.completed)
            .then(|| {
                self.run
                    .as_ref()
                    .and_then(|(_, live)| live.sources(f.index))
            })
            .flatten();
        match live {
            Some((from_origin, from_peers)) => crate::model::FilePeerInfo {
                from_origin,
                from_peers,
                ..f.peer
            },
            None => f.peer,
        }
    }

    /// The bytes of file `f` as users see them: live while a run writes it.
    fn bytes_of(&self, f: &FileRecord) -> Option<u64> {
        if f.completed {
            return None;
        }
        self.run
            .as_ref()
            .and_then(|(_, live)| live.written(f.index))
    }

    pub(crate) fn view(&self) -> JobView {
        let mut totals = Totals::of(&self.files, |f| self.bytes_of(f));
        if self.run.is_some() {
            (totals.bytes_from_origin, totals.bytes_from_peers) =
                self.files.iter().fold((0, 0), |(o, p), f| {
                    let s = self.sources_of(f);
                    (o + s.from_origin, p + s.from_peers)
                });
        }
        JobView {
            job: self.job.clone(),
            totals,
            bytes_per_second: self.bytes_per_second(mono_ms()),
            waiting_for_unmetered: self.held_by_cost,
            yielding: self.run.as_ref().is_some_and(|(_, live)| live.yielding()),
        }
    }

    /// The current rate of the job's run, as of `now`; 0 when none runs.
    pub(crate) fn bytes_per_second(&self, now: i64) -> u64 {
        self.run.as_ref().map_or(0, |(_, live)| live.rate(now))
    }

    pub(crate) fn file_views(&self) -> Vec<FileView> {
        self.files
            .iter()
            .map(|f| {
                let mut file = f.clone();
                file.peer = self.sources_of(f);
                FileView {
                    bytes_transferred: self.bytes_of(f).unwrap_or(f.bytes_transferred),
                    file,
                }
            })
            .collect()
    }

    /// The live counters of run `run`, if it is this job's current run.
    pub(crate) fn live(&self, run: RunId) -> Option<&Arc<LiveRun>> {
        self.run
            .as_ref()
            .filter(|(id, _)| *id == run)
            .map(|(_, live)| live)
    }
}

/// A final job (`acknowledged` or `cancelled`): nothing changes it any more until it is
/// purged. Archived while the daemon runs, it is kept compact in memory and decoded only
/// when someone looks at it; found final in the store at start-up, only what finds and
/// filters it is kept, and the rest is read from the store when someone looks at it (a
/// million stored jobs start in a second and take tens of megabytes).
pub(crate) struct Archived {
    pub(crate) owner_uid: u32,
    pub(crate) state: JobState,
    pub(crate) priority: Priority,
    pub(crate) created_ms: i64,
    /// Last changed, on the monotonic clock (retention).
    pub(crate) touched: i64,
    /// `store::compact` encoding of the job and its files; `None`: in the store only.
    data: Option<Box<[u8]>>,
}

impl Archived {
    pub(crate) fn new(job: &JobRecord, files: &[FileRecord], touched: i64) -> Archived {
        Archived {
            owner_uid: job.owner_uid,
            state: job.state,
            priority: job.priority,
            created_ms: job.created_ms,
            touched,
            data: Some(crate::store::compact::encode(job, files)),
        }
    }

    /// A final job left in the store at start-up.
    pub(crate) fn stored(row: &ArchivedRow) -> Archived {
        Archived {
            owner_uid: row.owner_uid,
            state: row.state,
            priority: row.priority,
            created_ms: row.created_ms,
            touched: mono_since(row.modified_ms),
            data: None,
        }
    }

    /// The job `id` (this one) and its files, from memory or from the store; `None` when
    /// the store cannot give it (purged meanwhile, or unreadable: logged).
    pub(crate) fn decode(&self, id: Uuid, store: &Store) -> Option<(JobRecord, Vec<FileRecord>)> {
        match &self.data {
            Some(data) => Some(crate::store::compact::decode(data)),
            None => match store.load_job(id) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(job = %id, "reading a final job from the store failed: {e}");
                    None
                }
            },
        }
    }

    pub(crate) fn view(&self, id: Uuid, store: &Store) -> Option<JobView> {
        let (job, files) = self.decode(id, store)?;
        Some(final_view(job, &files))
    }

    /// True when the job is only in the store (found final at start-up).
    pub(crate) fn only_stored(&self) -> bool {
        self.data.is_none()
    }

    pub(crate) fn file_views(&self, id: Uuid, store: &Store) -> Vec<FileView> {
        self.decode(id, store)
            .map(|(_, files)| files)
            .unwrap_or_default()
            .into_iter()
            .map(|f| FileView {
                bytes_transferred: f.bytes_transferred,
                file: f,
            })
            .collect()
    }
}

/// How clients see a final job with `files` (nothing runs it).
pub(crate) fn final_view(job: JobRecord, files: &[FileRecord]) -> JobView {
    JobView {
        totals: Totals::of(files, |_| None),
        job,
        bytes_per_second: 0,
        waiting_for_unmetered: false,
        yielding: false,
    }
}

/// A job taken out of the service's jobs.
pub(crate) enum Removed {
    Live(Box<JobView>),
    Archived(Uuid, Archived),
}

impl Removed {
    /// How the job was, read from the store for an archived job that is only there: call
    /// it without the service's lock held, and before the store's row is deleted.
    pub(crate) fn view(self, store: &Store) -> Option<JobView> {
        match self {
            Removed::Live(view) => Some(*view),
            Removed::Archived(id, a) => a.view(id, store),
        }
    }
}

/// Final jobs are archived once they have not changed for this long (so a command that
/// just made a job final, and is still finishing, finds it where it left it).
pub(crate) const ARCHIVE_AFTER_MS: i64 = 60_000;

pub(crate) struct Inner {
    /// Jobs that can still change (and final jobs not archived yet).
    pub(crate) jobs: HashMap<Uuid, Entry>,
    /// Final jobs, compact (see [`Archived`]).
    pub(crate) archived: HashMap<Uuid, Archived>,
    /// Unfinished jobs (not acknowledged or cancelled) per owner: the
    /// `max_jobs_per_user` check.
    unfinished: HashMap<u32, usize>,
    /// Unfinished jobs of every owner: the `max_jobs_per_machine` check.
    unfinished_total: usize,
    /// Jobs in each state, live and archived (the metrics' gauge).
    by_state: HashMap<JobState, usize>,
    pub(crate) handlers: HashMap<(Uuid, u32), HandlerRecord>,
    /// Where queued and retrying jobs wait for a run.
    engine: Arc<Engine>,
    /// Where archived jobs found at start-up are read from.
    pub(crate) store: Arc<Store>,
    /// The network's cost state now (one BITS cost state): queued jobs whose cost flags
    /// do not allow it are held back.
    cost: CostFlags,
}

impl Inner {
    pub(crate) fn new(engine: Arc<Engine>, store: Arc<Store>) -> Inner {
        Inner {
            store,
            jobs: HashMap::new(),
            archived: HashMap::new(),
            unfinished: HashMap::new(),
            unfinished_total: 0,
            by_state: HashMap::new(),
            handlers: HashMap::new(),
            engine,
            cost: CostFlags::UNRESTRICTED,
        }
    }

    /// Adds a job to the live jobs.
    pub(crate) fn insert(&mut self, entry: Entry) {
        if !entry.job.state.is_final() {
            self.count_unfinished(entry.job.owner_uid, true);
        }
        self.count_state(entry.job.state, true);
        self.jobs.insert(entry.job.id, entry);
    }

    /// Adds a final job straight to the archive.
    pub(crate) fn insert_archived(&mut self, job: &JobRecord, files: &[FileRecord]) {
        debug_assert!(job.state.is_final());
        let touched = mono_since(job.modified_ms);
        self.count_state(job.state, true);
        self.archived
            .insert(job.id, Archived::new(job, files, touched));
    }

    /// Adds a final job left in the store to the archive (its index only).
    pub(crate) fn insert_stored(&mut self, row: &ArchivedRow) {
        debug_assert!(row.state.is_final());
        self.count_state(row.state, true);
        self.archived.insert(row.id, Archived::stored(row));
    }

    /// Counts one more (or one fewer) unfinished job of `owner`.
    fn count_unfinished(&mut self, owner: u32, more: bool) {
        if more {
            *self.unfinished.entry(owner).or_default() += 1;
            self.unfinished_total += 1;
        } else if let Some(n) = self.unfinished.get_mut(&owner) {
            *n -= 1;
            self.unfinished_total -= 1;
            if *n == 0 {
                self.unfinished.remove(&owner);
            }
        }
    }

    /// Counts one more (or one fewer) job in `state`.
    fn count_state(&mut self, state: JobState, more: bool) {
        let n = self.by_state.entry(state).or_default();
        if more {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
    }

    /// How many jobs, live and archived, are in each state (every state, 0s included).
    pub(crate) fn jobs_by_state(&self) -> Vec<(JobState, usize)> {
        JobState::ALL
            .iter()
            .map(|s| (*s, self.by_state.get(s).copied().unwrap_or(0)))
            .collect()
    }

    /// Removes a job, live or archived, returning what it was (see [`Removed::view`]).
    pub(crate) fn remove(&mut self, id: Uuid) -> Option<Removed> {
        match self.jobs.remove(&id) {
            Some(e) => {
                self.engine.forget(id);
                if !e.job.state.is_final() {
                    self.count_unfinished(e.job.owner_uid, false);
                }
                self.count_state(e.job.state, false);
                Some(Removed::Live(Box::new(e.view())))
            }
            None => {
                let a = self.archived.remove(&id)?;
                self.count_state(a.state, false);
                Some(Removed::Archived(id, a))
            }
        }
    }

    /// How many unfinished jobs `owner` has.
    pub(crate) fn unfinished_of(&self, owner: u32) -> usize {
        self.unfinished.get(&owner).copied().unwrap_or(0)
    }

    /// How many unfinished jobs all owners have together.
    pub(crate) fn unfinished_total(&self) -> usize {
        self.unfinished_total
    }

    /// Moves a final job that nothing runs to the archive; false if it is not one.
    pub(crate) fn archive(&mut self, id: Uuid) -> bool {
        let Some(e) = self
            .jobs
            .get(&id)
            .filter(|e| e.job.state.is_final() && e.run.is_none() && e.job.finishing.is_none())
        else {
            return false;
        };
        let a = Archived::new(&e.job, &e.files, e.clock.touched);
        self.jobs.remove(&id);
        self.archived.insert(id, a);
        true
    }

    /// The archived jobs `keep` admits, split in two: those compact in memory (with their
    /// ids) and the ids of those only in the store, to be read outside the lock
    /// ([`super::Service::stored_jobs`]).
    pub(crate) fn archived_split(
        &self,
        keep: impl Fn(&Archived) -> bool,
    ) -> (Vec<(Uuid, &Archived)>, Vec<Uuid>) {
        let (mut in_memory, mut stored) = (Vec::new(), Vec::new());
        for (id, a) in self.archived.iter().filter(|(_, a)| keep(a)) {
            if a.only_stored() {
                stored.push(*id);
            } else {
                in_memory.push((*id, a));
            }
        }
        (in_memory, stored)
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
    pub(crate) fn view_of(&self, owner: u32, id: Uuid) -> Option<JobView> {
        self.view_in(Scope::Uid(owner), id)
    }

    /// A job in `scope` as clients see it, live or archived.
    pub(crate) fn view_in(&self, scope: Scope, id: Uuid) -> Option<JobView> {
        match self.jobs.get(&id) {
            Some(e) => scope.admits(e.job.owner_uid).then(|| e.view()),
            None => self
                .archived
                .get(&id)
                .filter(|a| scope.admits(a.owner_uid))
                .and_then(|a| a.view(id, &self.store)),
        }
    }

    /// Moves a job to `state`, and tells the engine: a queued job joins the back of its
    /// priority's queue, a job in `transient_error` waits for its retry time, any other
    /// state leaves both.
    pub(crate) fn set_state(&mut self, id: Uuid, state: JobState) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        let finishes = !entry.job.state.is_final() && state.is_final();
        let owner = entry.job.owner_uid;
        let was = std::mem::replace(&mut entry.job.state, state);
        entry.touch();
        match state {
            JobState::Queued => {
                entry.job.retry_at_ms = None;
                entry.clock.retry_at = None;
                self.engine
                    .queue(id, entry.job.priority, entry.job.waits_in(self.cost));
            }
            JobState::TransientError => match entry.clock.retry_at {
                Some(at) => self.engine.retry_at(id, at),
                None => self.engine.forget(id),
            },
            _ => {
                entry.job.retry_at_ms = None;
                entry.clock.retry_at = None;
                self.engine.forget(id);
            }
        }
        if finishes {
            self.count_unfinished(owner, false);
        }
        self.count_state(was, false);
        self.count_state(state, true);
        self.refresh_hold(id);
    }

    /// The network's cost state now.
    pub(crate) fn cost(&self) -> CostFlags {
        self.cost
    }

    /// The network's cost state changed: the engine holds back (or releases) the queued
    /// jobs whose cost flags do not (or do) allow it. Returns the jobs whose hold changed.
    pub(crate) fn set_cost(&mut self, cost: CostFlags) -> Vec<Uuid> {
        self.cost = cost;
        let ids: Vec<Uuid> = self.jobs.keys().copied().collect();
        ids.into_iter()
            .filter(|id| self.refresh_hold(*id))
            .collect()
    }

    /// Brings the job's hold up to date with its state, its cost flags and the network
    /// (after a change of any of them); true when it changed.
    pub(crate) fn refresh_hold(&mut self, id: Uuid) -> bool {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return false;
        };
        let waits = entry.job.waits_in(self.cost);
        let held = waits && entry.job.state == JobState::Queued;
        if entry.job.state == JobState::Queued {
            self.engine.set_held_by_cost(id, waits);
        }
        std::mem::replace(&mut entry.held_by_cost, held) != held
    }
}
