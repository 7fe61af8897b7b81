//! Finishing a job: `complete` (the transferred part files are moved over their
//! destinations) and `cancel` (every part file is deleted), both safe against a crash.
//!
//! The intent (`JobRecord::finishing`) is durable before the first file is renamed or
//! deleted, and cleared in the same write that makes the job `acknowledged` (or after the
//! last delete). A ferryd that starts with a job still finishing finishes it
//! ([`Service::finish_interrupted`]); both operations are idempotent (a part already
//! moved, or already gone, counts as done), and one job is finished by one call at a time.
//! Completing an acknowledged job again answers with its outcome, and cancelling a
//! cancelled job again answers with the job: a client whose call a crash cut off calls
//! again and learns how it ended.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::commands::{final_state_error, CompleteOutcome};
use super::{JobView, Service, ServiceError};
use crate::model::{
    now_ms, ErrorContext, ErrorKind, FileRecord, Finishing, JobErrorRecord, JobState, JobType,
};
use crate::owner::{CommitError, Owner};

/// One lock per job being finished, so a complete or cancel runs once at a time per job
/// (a call again while the start-up recovery runs waits for it, then answers).
#[derive(Default)]
pub(crate) struct FinishLocks {
    locks: parking_lot::Mutex<HashMap<Uuid, Weak<tokio::sync::Mutex<()>>>>,
}

impl FinishLocks {
    async fn lock(&self, id: Uuid) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock();
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(&id).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(id, Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

/// What `complete` reports for a job and its files: files committed and discarded.
/// A file `complete` moves into place: a transferred one, or an on-demand one with
/// ranges on disk (BITS: an on-demand job is completed with the ranges it holds).
fn kept(f: &FileRecord) -> bool {
    f.completed || (f.ranges.on_demand && f.segments.iter().any(|s| s.done > 0))
}

fn outcome_counts(job_type: JobType, files: &[FileRecord]) -> (u32, u32) {
    let committed = files
        .iter()
        .filter(|f| kept(f) && (job_type != JobType::Download || f.validated != Some(false)))
        .count() as u32;
    (committed, files.len() as u32 - committed)
}

/// How the failed moves of a commit read: every file (up to ten named), and why.
fn describe(failures: &[CommitError]) -> String {
    const NAMED: usize = 10;
    let mut text = failures
        .iter()
        .take(NAMED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > NAMED {
        text.push_str(&format!("; and {} more", failures.len() - NAMED));
    }
    format!(
        "{} of the job's files could not be put in place: {text}",
        failures.len()
    )
}

impl Service {
    /// Cancels a job: its temporary files are deleted, no destination is written. A job
    /// already cancelled is answered as it is (after its clean-up, if a crash cut that
    /// short).
    pub async fn cancel(&self, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        let _one = self.finish_locks.lock(id).await;
        if self.archived_state(owner, id) == Some(JobState::Cancelled) {
            return self.get_job(owner, id);
        }
        self.mutate(owner, id, "cancel", |inner, id| {
            match inner.jobs[&id].job.state {
                // Cancelled before: its clean-up is done unless `finishing` says otherwise.
                JobState::Cancelled => Ok(false),
                s if s.is_final() => Err(final_state_error(id, s, "cancel")),
                _ => {
                    inner.set_state(id, JobState::Cancelled);
                    inner.jobs.get_mut(&id).expect("exists").job.finishing =
                        Some(Finishing::Cancel);
                    Ok(true)
                }
            }
        })
        .await?;
        self.stop_run(id).await;
        let parts: Option<(Owner, Vec<_>)> = {
            let inner = self.lock();
            inner
                .jobs
                .get(&id)
                .filter(|e| e.job.finishing == Some(Finishing::Cancel))
                .map(|e| {
                    let parts = e.files.iter().map(|f| f.temporary_path()).collect();
                    (self.owner_of(&e.job), parts)
                })
        };
        let Some((job_owner, parts)) = parts else {
            return self.get_job(owner, id);
        };
        match job_owner.remove_files(parts).await {
            Ok(()) => {
                self.mutate(owner, id, "cancel", |inner, id| {
                    inner.jobs.get_mut(&id).expect("exists").job.finishing = None;
                    Ok(true)
                })
                .await
            }
            Err(e) => {
                // The job stays marked: the next start tries again.
                tracing::warn!(%id, "removing the part files of a cancelled job: {e}");
                self.get_job(owner, id)
            }
        }
    }

    /// Commits the files fully transferred (atomic rename over the destination), discards
    /// the rest, and ends the job in `acknowledged`. An acknowledged job is answered with
    /// its outcome.
    pub async fn complete(&self, owner: u32, id: Uuid) -> Result<CompleteOutcome, ServiceError> {
        let _one = self.finish_locks.lock(id).await;
        if let Some(done) = self.completed_outcome(owner, id) {
            return Ok(done);
        }
        // A complete a crash (or a failed move) cut short goes on where it was.
        let resuming = self.lock().jobs.get(&id).is_some_and(|e| {
            e.job.owner_uid == owner && e.job.finishing == Some(Finishing::Complete)
        });
        // The intent is durable before anything moves; the job is taken away from the
        // engine so nothing writes its part files meanwhile.
        self.mutate(owner, id, "complete", |inner, id| {
            match inner.jobs[&id].job.state {
                s if s.is_final() => Err(final_state_error(id, s, "complete")),
                s => {
                    if s.is_active() {
                        inner.set_state(id, JobState::Suspended);
                    }
                    inner.jobs.get_mut(&id).expect("exists").job.finishing =
                        Some(Finishing::Complete);
                    Ok(true)
                }
            }
        })
        .await?;
        self.stop_run(id).await;

        let (files, job, job_owner) = {
            let inner = self.lock();
            let e = inner
                .jobs
                .get(&id)
                .ok_or_else(|| super::commands::not_found(id))?;
            (e.files.clone(), e.job.clone(), self.owner_of(&e.job))
        };
        let (job_type, umask) = (job.job_type, job.options.umask);
        let (committed, discarded) = outcome_counts(job_type, &files);
        if job_type == JobType::Download {
            let (keep, drop): (Vec<&FileRecord>, Vec<&FileRecord>) = files
                .iter()
                .partition(|f| kept(f) && f.validated != Some(false));
            // Completed files are offered to the fleet before they move: the cache keeps
            // its own copy (the user may change the destination later).
            for f in &keep {
                self.offer_to_peers(&job, f).await;
            }
            let moves = keep
                .iter()
                .map(|f| (f.temporary_path(), f.local_path.clone().into()))
                .collect();
            let discard = drop.iter().map(|f| f.temporary_path()).collect();
            if let Err(failures) = job_owner.commit(moves, discard, umask, resuming).await {
                let message = describe(&failures);
                tracing::warn!(%id, "complete: {message}");
                let record = JobErrorRecord {
                    context: ErrorContext::LocalFile,
                    code: ErrorKind::CommitFailed.code().into_owned(),
                    message: message.clone(),
                    file_index: failures
                        .first()
                        .and_then(|f| keep.get(f.position))
                        .map(|f| f.index),
                    time_ms: now_ms(),
                };
                // The intent stays: a restart (or the next complete) tries again.
                self.mutate(owner, id, "complete", |inner, id| {
                    let e = inner.jobs.get_mut(&id).expect("exists");
                    e.job.error = Some(record);
                    e.job.error_count += 1;
                    Ok(true)
                })
                .await?;
                return Err(ServiceError::FailedPrecondition(format!(
                    "{message}; fix the destination and complete again"
                )));
            }
        }
        let view = self
            .mutate(owner, id, "complete", |inner, id| {
                inner.set_state(id, JobState::Acknowledged);
                let e = inner.jobs.get_mut(&id).expect("exists");
                e.job.partial = if job_type == JobType::Download {
                    discarded > 0
                } else {
                    committed == 0
                };
                e.job.finishing = None;
                if e.job
                    .error
                    .as_ref()
                    .is_some_and(|r| r.code == ErrorKind::CommitFailed.code())
                {
                    e.job.error = None;
                }
                Ok(true)
            })
            .await?;
        Ok(CompleteOutcome {
            view,
            committed,
            discarded,
        })
    }

    /// The outcome of an acknowledged job of `owner` (live or archived), as `complete`
    /// reported it.
    fn completed_outcome(&self, owner: u32, id: Uuid) -> Option<CompleteOutcome> {
        let inner = self.lock();
        let (view, files) = match inner.archived_of(owner, id) {
            Some(a) => match a.decode(id, &self.store) {
                Some((job, files)) => (super::state::final_view(job, &files), files),
                None => return None,
            },
            None => {
                let e = inner.jobs.get(&id).filter(|e| e.job.owner_uid == owner)?;
                (e.view(), e.files.clone())
            }
        };
        if view.job.state != JobState::Acknowledged {
            return None;
        }
        let (committed, discarded) = outcome_counts(view.job.job_type, &files);
        Some(CompleteOutcome {
            view,
            committed,
            discarded,
        })
    }

    /// Finishes every `complete` and `cancel` a stop interrupted (start-up): each job
    /// ends `acknowledged` with its files in place, or `cancelled` with its part files
    /// gone; a file that cannot be placed is named in the job's error.
    pub async fn finish_interrupted(&self) {
        let pending: Vec<(Uuid, u32, Finishing)> = self
            .lock()
            .jobs
            .values()
            .filter_map(|e| e.job.finishing.map(|f| (e.job.id, e.job.owner_uid, f)))
            .collect();
        for (id, owner, finishing) in pending {
            tracing::info!(%id, "finishing the {finishing} a stop interrupted");
            let result = match finishing {
                Finishing::Complete => self
                    .complete(owner, id)
                    .await
                    .map(|o| format!("{} committed, {} discarded", o.committed, o.discarded)),
                Finishing::Cancel => self.cancel(owner, id).await.map(|_| "cancelled".into()),
            };
            match result {
                Ok(how) => tracing::info!(%id, "{finishing} finished: {how}"),
                Err(e) => tracing::error!(%id, "the interrupted {finishing} cannot finish: {e}"),
            }
        }
    }
}
