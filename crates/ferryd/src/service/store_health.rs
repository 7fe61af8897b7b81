//! The service when its store cannot be written (the state folder's disk is full, over
//! quota, or failing): commands that would change something are refused with an error
//! that names the state folder; transfers pause in `transient_error` (code
//! `state_unwritable`) with their durable offsets as the store last recorded them; every
//! few seconds, once the disk shows room, the whole state in memory is written back in one
//! transaction, and when that commits the paused jobs are queued again. Nothing is lost:
//! memory holds the truth meanwhile, and a failed transaction leaves the file as it was.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::state::JobClock;
use super::{ChangeKind, Service, ServiceError};
use crate::model::{now_ms, ErrorContext, ErrorKind, JobErrorRecord, JobRecord, JobState};
use crate::store::{Store, Unwritable, WriteError};

/// How often an unwritable store is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Free bytes the state folder's disk must show before the state is written back.
const ROOM_NEEDED: u64 = 1 << 20;

impl Service {
    /// Refuses a change while the store cannot be written.
    pub(super) fn check_writable(&self) -> Result<(), ServiceError> {
        self.store.writable().map_err(ServiceError::from)
    }

    /// Undoes a command's change of job `id` whose write did not commit because the store
    /// cannot be written, so the job is as the store (and the refused client) knows it. A
    /// job changed again meanwhile is left alone (the write-back records it).
    pub(super) fn revert(&self, id: Uuid, after: &JobRecord, job: JobRecord, clock: JobClock) {
        let mut inner = self.lock();
        let Some(e) = inner.jobs.get(&id).filter(|e| e.job == *after) else {
            return;
        };
        let before = e.view();
        if e.job.state != job.state {
            inner.jobs.get_mut(&id).expect("exists").clock = clock;
            inner.set_state(id, job.state);
        }
        let e = inner.jobs.get_mut(&id).expect("exists");
        e.job = job;
        e.clock = clock;
        let view = e.view();
        self.emit(ChangeKind::Modified, view, Some(before));
    }

    /// Follows the store's health until shutdown: pauses transfers when it cannot be
    /// written, writes everything back once it can, then lets them go on.
    pub async fn watch_store(self: Arc<Self>) {
        let mut health = self.store.health();
        loop {
            let unwritable = tokio::select! {
                h = health.wait_for(Option::is_some) => match h {
                    Ok(h) => h.clone().expect("waited for Some"),
                    Err(_) => return,
                },
                _ = self.shutting_down() => return,
            };
            self.pause_for_store(&unwritable).await;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_EVERY) => {}
                    _ = self.shutting_down() => return,
                }
                match self.store.free_bytes() {
                    Ok(free) if free >= ROOM_NEEDED => {}
                    Ok(_) => continue,
                    Err(e) => tracing::debug!("statvfs of the state folder: {e}"),
                }
                match Store::committed(self.write_back()).await {
                    Ok(()) if self.store.writable().is_ok() => break,
                    Ok(()) => {}
                    Err(WriteError::Unwritable(_)) => {}
                    Err(e) => tracing::warn!("writing the state back failed: {e}"),
                }
            }
            self.resume_after_store();
        }
    }

    /// Writes every live job with its files, the outbox and the handlers, in one
    /// transaction (queued under the lock, so later changes are written after it).
    fn write_back(&self) -> crate::store::Committed {
        let outbox = self.notifier.outbox();
        let inner = self.lock();
        let jobs = inner
            .jobs
            .values()
            .map(|e| (e.job.clone(), e.files.clone()))
            .collect();
        let handlers = inner.handlers.values().cloned().collect();
        self.store.write_back(jobs, outbox, handlers)
    }

    /// The store cannot be written: no run starts, the runs stop (bounded by the drain
    /// timeout), and every job that was queued or transferring waits in `transient_error`
    /// (no retry time: the recovery queues it). Jobs already waiting to retry keep their
    /// own error and wait until the engine goes on.
    async fn pause_for_store(&self, why: &Unwritable) {
        tracing::warn!("pausing transfers: {why}");
        self.engine.pause();
        self.engine.stop_all().await;
        let mut inner = self.lock();
        let active: Vec<Uuid> = inner
            .jobs
            .values()
            .filter(|e| {
                matches!(
                    e.job.state,
                    JobState::Queued | JobState::Connecting | JobState::Transferring
                )
            })
            .map(|e| e.job.id)
            .collect();
        for id in &active {
            let e = inner.jobs.get_mut(id).expect("listed above");
            let before = e.view();
            e.job.error = Some(JobErrorRecord {
                context: ErrorContext::Daemon,
                code: ErrorKind::StateUnwritable.code().into_owned(),
                message: format!("{why}; the transfer goes on from where it was then"),
                file_index: None,
                time_ms: now_ms(),
            });
            e.job.retry_at_ms = None;
            e.clock.retry_at = None;
            inner.set_state(*id, JobState::TransientError);
            let after = inner.jobs[id].view();
            self.emit(ChangeKind::Modified, after, Some(before));
        }
    }

    /// The store can be written again: the paused jobs are queued, runs start again.
    fn resume_after_store(&self) {
        let mut inner = self.lock();
        let paused: Vec<Uuid> = inner
            .jobs
            .values()
            .filter(|e| {
                e.job.state == JobState::TransientError
                    && e.job
                        .error
                        .as_ref()
                        .is_some_and(|r| r.code == ErrorKind::StateUnwritable.code())
            })
            .map(|e| e.job.id)
            .collect();
        for id in &paused {
            let before = inner.jobs[id].view();
            inner.jobs.get_mut(id).expect("listed above").job.error = None;
            inner.set_state(*id, JobState::Queued);
            let after = inner.jobs[id].view();
            self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after, Some(before));
        }
        drop(inner);
        self.engine.unpause();
        tracing::info!(
            jobs = paused.len(),
            "the job store can be written again: transfers go on"
        );
    }
}
