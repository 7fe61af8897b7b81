//! The scheduling policy: which queued jobs run now. Foreground jobs start at once; the
//! others take up to `max_concurrent_jobs` slots, higher priority first, in arrival order
//! within one priority. Queued jobs held back by the network's cost (their cost flags do
//! not allow its state: metered, roaming) stay in the queue without starting and take no
//! slot. Jobs in `transient_error` wait in a retry index until their time
//! (on the monotonic clock: a change of the wall clock moves no retry), then the host puts
//! them back in the queue.
//!
//! The scheduler's lock is never held while the host is called, and the host may call the
//! scheduler while holding its own lock (lock order: host, then scheduler).
//!
//! In a worker of the system-wide daemon, background runs also need one of the machine's
//! slots, which the broker grants among the users with work (`set_machine_slots`); the
//! scheduler says how many it would use ([`Scheduler::slots_wanted`]). Foreground jobs
//! need none, as they need no local slot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::host::{Host, RunId};
use crate::model::{mono_ms, Priority};

/// A run in progress.
struct Slot {
    job: Uuid,
    /// Not a foreground job: it holds one of the slots.
    background: bool,
    /// Fires to stop the run.
    cancel: CancellationToken,
    /// Fires when the run's worker has returned.
    done: CancellationToken,
}

#[derive(Default)]
struct Queues {
    /// Runnable jobs by (priority rank, arrival).
    queue: BTreeMap<(u8, u64), Uuid>,
    queued: HashMap<Uuid, (u8, u64)>,
    /// Queued jobs that do not start: the network's cost state holds them back.
    held_by_cost: HashSet<Uuid>,
    /// `transient_error` jobs by retry time (monotonic ms, [`mono_ms`]).
    retries: BTreeSet<(i64, Uuid)>,
    retry_of: HashMap<Uuid, i64>,
    runs: HashMap<RunId, Slot>,
    /// The newest run of each job.
    run_of: HashMap<Uuid, RunId>,
    seq: u64,
    next_run: RunId,
    /// The machine's slots granted to this daemon (a worker of the system-wide daemon);
    /// `None`: no one but this daemon shares the machine.
    machine_slots: Option<u32>,
}

impl Queues {
    fn unqueue(&mut self, job: Uuid) {
        if let Some(key) = self.queued.remove(&job) {
            self.queue.remove(&key);
        }
        self.held_by_cost.remove(&job);
        if let Some(at) = self.retry_of.remove(&job) {
            self.retries.remove(&(at, job));
        }
    }
}

/// A run the scheduler decided to start.
pub(super) struct Start {
    pub job: Uuid,
    pub run: RunId,
    pub cancel: CancellationToken,
}

/// The queue, the retry index and the runs in progress.
pub struct Scheduler {
    max_concurrent: usize,
    state: Mutex<Queues>,
    wake: Notify,
    /// Background slots this daemon would use now (see the module documentation).
    wanted: tokio::sync::watch::Sender<u32>,
}

impl Scheduler {
    pub(super) fn new(max_concurrent: usize) -> Scheduler {
        Scheduler {
            max_concurrent: max_concurrent.max(1),
            state: Mutex::new(Queues::default()),
            wake: Notify::new(),
            wanted: tokio::sync::watch::channel(0).0,
        }
    }

    /// Background runs start only within `granted` of the machine's slots from now on (a
    /// worker of the system-wide daemon). Runs past a smaller grant are stopped, the ones
    /// started last first: their jobs go back to the queue (the host requeues a job whose
    /// run ended without a verdict) and resume with ranges when slots come back, so
    /// another user waits for at most one slot turn however long this user's transfers
    /// stall.
    pub fn set_machine_slots(&self, granted: u32) {
        {
            let mut s = self.state.lock();
            s.machine_slots = Some(granted);
            let mut background: Vec<(RunId, &Slot)> = s
                .runs
                .iter()
                .filter(|(_, slot)| slot.background && !slot.cancel.is_cancelled())
                .map(|(r, slot)| (*r, slot))
                .collect();
            background.sort_unstable_by_key(|(r, _)| std::cmp::Reverse(*r));
            let excess = background.len().saturating_sub(granted as usize);
            for (_, slot) in background.into_iter().take(excess) {
                tracing::debug!(job = %slot.job, "the machine's slots were shared out again: this run yields its slot");
                slot.cancel.cancel();
            }
        }
        self.wake.notify_one();
    }

    /// How many background slots this daemon would use now, as it changes.
    pub fn slots_wanted(&self) -> tokio::sync::watch::Receiver<u32> {
        self.wanted.subscribe()
    }

    /// Puts `job` at the back of its priority's queue (out of the retry index); one
    /// `held_by_cost` waits there (see [`Scheduler::set_held_by_cost`]).
    pub fn queue(&self, job: Uuid, priority: Priority, held_by_cost: bool) {
        {
            let mut s = self.state.lock();
            s.unqueue(job);
            s.seq += 1;
            let key = (priority.rank(), s.seq);
            s.queue.insert(key, job);
            s.queued.insert(job, key);
            if held_by_cost {
                s.held_by_cost.insert(job);
            }
        }
        self.wake.notify_one();
    }

    /// Changes whether `job`, if queued, is held back by the network's cost (it keeps its
    /// place; released, it may start at once).
    pub fn set_held_by_cost(&self, job: Uuid, held: bool) {
        {
            let mut s = self.state.lock();
            if !s.queued.contains_key(&job) {
                return;
            }
            if held {
                s.held_by_cost.insert(job);
            } else {
                s.held_by_cost.remove(&job);
            }
        }
        self.wake.notify_one();
    }

    /// Takes `job` out of the queue; it is retried at `at_ms` (monotonic, [`mono_ms`]).
    pub fn retry_at(&self, job: Uuid, at_ms: i64) {
        {
            let mut s = self.state.lock();
            s.unqueue(job);
            s.retries.insert((at_ms, job));
            s.retry_of.insert(job, at_ms);
        }
        self.wake.notify_one();
    }

    /// Takes `job` out of the queue and the retry index (its run, if any, goes on until
    /// stopped).
    pub fn forget(&self, job: Uuid) {
        self.state.lock().unqueue(job);
    }

    /// Tells the current run of `job`, if one runs, to stop (without waiting for it).
    pub fn cancel(&self, job: Uuid) {
        let s = self.state.lock();
        if let Some(slot) = s.run_of.get(&job).and_then(|r| s.runs.get(r)) {
            slot.cancel.cancel();
        }
    }

    /// Stops the current run of `job`, if one runs, and waits (at most `timeout`) until
    /// its worker has returned — so its progress is checkpointed and it writes nothing
    /// more.
    pub async fn stop(&self, job: Uuid, timeout: Duration) {
        let done = {
            let s = self.state.lock();
            let Some(slot) = s.run_of.get(&job).and_then(|r| s.runs.get(r)) else {
                return;
            };
            slot.cancel.cancel();
            slot.done.clone()
        };
        if tokio::time::timeout(timeout, done.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(%job, "worker did not stop in time");
        }
    }

    /// Stops every run, waiting at most `timeout` for all of them.
    pub async fn stop_all(&self, timeout: Duration) {
        let done: Vec<CancellationToken> = {
            let s = self.state.lock();
            s.runs
                .values()
                .map(|slot| {
                    slot.cancel.cancel();
                    slot.done.clone()
                })
                .collect()
        };
        let all = futures::future::join_all(done.iter().map(|d| d.cancelled()));
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("some workers did not stop within the drain timeout");
        }
    }

    /// Runs in progress.
    pub fn active(&self) -> usize {
        self.state.lock().runs.len()
    }

    /// Wakes the scheduling loop.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until woken or until `at_most` has passed.
    pub(super) async fn wait(&self, at_most: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(at_most) => {}
        }
    }

    /// Takes the jobs whose retry time has come out of the retry index.
    pub(super) fn due_retries(&self) -> Vec<Uuid> {
        let now = mono_ms();
        let mut s = self.state.lock();
        let due: Vec<(i64, Uuid)> = s
            .retries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .copied()
            .collect();
        for (at, job) in &due {
            s.retries.remove(&(*at, *job));
            s.retry_of.remove(job);
        }
        due.into_iter().map(|(_, job)| job).collect()
    }

    /// [`Scheduler::due_retries`], or none while `paused`.
    pub(super) fn due_retries_unless(&self, paused: bool) -> Vec<Uuid> {
        if paused {
            Vec::new()
        } else {
            self.due_retries()
        }
    }

    /// [`Scheduler::starts`], or none while `paused`.
    pub(super) fn starts_unless(&self, paused: bool) -> Vec<Start> {
        if paused {
            Vec::new()
        } else {
            self.starts()
        }
    }

    /// How long until the next retry is due.
    pub(super) fn next_retry_in(&self) -> Option<Duration> {
        let now = mono_ms();
        self.state
            .lock()
            .retries
            .iter()
            .next()
            .map(|(at, _)| Duration::from_millis((*at - now).max(0) as u64))
    }

    /// Takes the jobs to start now out of the queue, each with a new run. A job whose
    /// previous run has not returned yet waits in the queue (two runs never write the
    /// same part files).
    pub(super) fn starts(&self) -> Vec<Start> {
        let mut s = self.state.lock();
        let mut running = s.runs.len();
        let mut background = s.runs.values().filter(|r| r.background).count();
        let granted = s.machine_slots.map_or(usize::MAX, |g| g as usize);
        // Background jobs that would run if the machine granted the slots.
        let mut would_run = background;
        // Walk the queue in order only as far as there are slots (foreground jobs come
        // first and take no slot limit): a long queue costs nothing per pass.
        let mut chosen = Vec::new();
        {
            let Queues {
                queue,
                run_of,
                runs,
                held_by_cost,
                ..
            } = &*s;
            for (&key, &job) in queue {
                let foreground = key.0 == Priority::Foreground.rank();
                if !foreground
                    && (running >= self.max_concurrent || would_run >= self.max_concurrent)
                {
                    break;
                }
                if run_of.get(&job).is_some_and(|r| runs.contains_key(r))
                    || held_by_cost.contains(&job)
                {
                    continue;
                }
                if !foreground {
                    would_run += 1;
                    if background >= granted {
                        continue;
                    }
                    background += 1;
                }
                chosen.push((key, job, !foreground));
                running += 1;
            }
        }
        self.wanted.send_if_modified(|w| {
            let now = would_run.min(self.max_concurrent) as u32;
            std::mem::replace(w, now) != now
        });
        let mut out = Vec::with_capacity(chosen.len());
        for (key, job, background) in chosen {
            s.queue.remove(&key);
            s.queued.remove(&job);
            s.held_by_cost.remove(&job);
            s.next_run += 1;
            let run = s.next_run;
            let cancel = CancellationToken::new();
            s.runs.insert(
                run,
                Slot {
                    job,
                    background,
                    cancel: cancel.clone(),
                    done: CancellationToken::new(),
                },
            );
            s.run_of.insert(job, run);
            out.push(Start { job, run, cancel });
        }
        out
    }

    /// The worker of `run` has returned: its slot is free.
    pub(super) fn finished(&self, run: RunId) {
        {
            let mut s = self.state.lock();
            if let Some(slot) = s.runs.remove(&run) {
                if s.run_of.get(&slot.job) == Some(&run) {
                    s.run_of.remove(&slot.job);
                }
                slot.done.cancel();
            }
        }
        self.wake.notify_one();
    }
}

/// Frees a run's slot and tells the host when the worker returns, also when it panics.
pub(super) struct RunGuard {
    pub scheduler: Arc<Scheduler>,
    pub host: Arc<dyn Host>,
    pub job: Uuid,
    pub run: RunId,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.host.run_finished(self.job, self.run);
        self.scheduler.finished(self.run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_arrival_and_the_limit() {
        let s = Scheduler::new(1);
        let (low, normal, fg1, fg2) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        s.queue(low, Priority::Low, false);
        s.queue(normal, Priority::Normal, false);
        s.queue(fg1, Priority::Foreground, false);
        s.queue(fg2, Priority::Foreground, false);
        let started: Vec<Uuid> = s.starts().iter().map(|x| x.job).collect();
        // Foreground jobs start whatever the limit, and count toward it: the background
        // jobs wait.
        assert_eq!(started, vec![fg1, fg2]);
        let runs: Vec<RunId> = s.state.lock().runs.keys().copied().collect();
        for r in runs {
            s.finished(r);
        }
        let started: Vec<Uuid> = s.starts().iter().map(|x| x.job).collect();
        assert_eq!(started, vec![normal], "higher priority first, one slot");
    }

    #[test]
    fn the_machines_slots_bound_background_runs_and_a_smaller_grant_stops_the_last_started() {
        let s = Scheduler::new(8);
        s.set_machine_slots(2);
        let jobs: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        for j in &jobs {
            s.queue(*j, Priority::Normal, false);
        }
        let fg = Uuid::now_v7();
        s.queue(fg, Priority::Foreground, false);
        let started = s.starts();
        let ids: Vec<Uuid> = started.iter().map(|x| x.job).collect();
        assert_eq!(ids, vec![fg, jobs[0], jobs[1]], "foreground needs no slot");
        assert_eq!(*s.slots_wanted().borrow(), 4, "it would run all four");
        s.set_machine_slots(1);
        let cancelled: Vec<Uuid> = started
            .iter()
            .filter(|x| x.cancel.is_cancelled())
            .map(|x| x.job)
            .collect();
        assert_eq!(cancelled, vec![jobs[1]], "the run started last yields");
        assert!(
            s.starts().is_empty(),
            "no new background run within one slot"
        );
    }

    #[test]
    fn a_job_is_not_started_twice() {
        let s = Scheduler::new(4);
        let job = Uuid::now_v7();
        s.queue(job, Priority::Normal, false);
        let first = s.starts();
        assert_eq!(first.len(), 1);
        s.queue(job, Priority::Normal, false);
        assert!(s.starts().is_empty(), "its earlier run has not returned");
        s.finished(first[0].run);
        assert_eq!(s.starts().len(), 1);
    }

    #[test]
    fn jobs_held_by_cost_keep_their_place_and_take_no_slot() {
        let s = Scheduler::new(1);
        let (paused, goes_on, later) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        s.queue(paused, Priority::Normal, true);
        s.queue(goes_on, Priority::Normal, false);
        s.queue(later, Priority::Low, true);
        let started: Vec<Uuid> = s.starts().iter().map(|x| x.job).collect();
        assert_eq!(started, vec![goes_on], "the held job takes no slot");
        let run = s.state.lock().run_of[&goes_on];
        s.finished(run);
        assert!(s.starts().is_empty(), "still held");
        s.set_held_by_cost(later, false);
        assert_eq!(
            s.starts().iter().map(|x| x.job).collect::<Vec<_>>(),
            vec![later]
        );
        let run = s.state.lock().run_of[&later];
        s.finished(run);
        s.set_held_by_cost(paused, false);
        let started: Vec<Uuid> = s.starts().iter().map(|x| x.job).collect();
        assert_eq!(started, vec![paused], "released: it starts by itself");
    }

    #[test]
    fn retries_come_due() {
        let s = Scheduler::new(4);
        let (soon, later) = (Uuid::now_v7(), Uuid::now_v7());
        s.retry_at(soon, mono_ms() - 1);
        s.retry_at(later, mono_ms() + 60_000);
        assert_eq!(s.due_retries(), vec![soon]);
        assert!(s.due_retries().is_empty());
        assert!(s.next_retry_in().unwrap() > Duration::from_secs(50));
        s.forget(later);
        assert!(s.next_retry_in().is_none());
    }
}
