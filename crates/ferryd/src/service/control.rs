//! Commands that move a job through its states: resume, suspend, cancel, complete.

use uuid::Uuid;

use super::commands::{entry, final_state_error, CompleteOutcome};
use super::{ErrorReason, JobView, Service, ServiceError};
use crate::model::{now_ms, FileRecord, JobState, JobType};
use crate::owner::Owner;

impl Service {
    /// Queues a suspended or failed job.
    pub async fn resume(&self, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        // An upload's source is snapshotted (size and modification time) as it is resumed
        // for the first time; it is looked at, as its owner, before the lock is taken.
        let sources: Vec<String> = {
            let inner = self.lock();
            let e = entry(&inner, owner, id, "resume")?;
            if e.job.job_type == JobType::Download {
                Vec::new()
            } else {
                e.files
                    .iter()
                    .filter(|f| !f.completed && f.validator.is_none())
                    .map(|f| f.local_path.clone())
                    .collect()
            }
        };
        let mut snapshots = Vec::with_capacity(sources.len());
        for path in sources {
            let stat = self.owners.of(owner).stat(path.clone().into()).await;
            snapshots.push((path, stat.map_err(|e| e.to_string())));
        }
        let view = self
            .mutate(owner, id, "resume", |inner, id| {
                let e = &inner.jobs[&id];
                match e.job.state {
                    s if s.is_final() => Err(final_state_error(id, s, "resume")),
                    JobState::Suspended | JobState::Error | JobState::TransientError => {
                        // Loaded with a stored column unreadable: it would run on defaults.
                        if let Some(err) = e.job.error.as_ref().filter(|r| r.is_unreadable_column())
                        {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "job {id} cannot be resumed: {}",
                                err.message
                            )));
                        }
                        if e.files.is_empty() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "job {id} has no files: add some with AddFiles first"
                            ))
                            .marked(ErrorReason::JobHasNoFiles));
                        }
                        let e = inner.jobs.get_mut(&id).expect("exists");
                        e.job.error = None;
                        e.job.last_progress_ms = now_ms();
                        e.job.options.first_active_ms.get_or_insert(now_ms());
                        if e.job.job_type != JobType::Download {
                            snapshot_upload_source(&mut e.files, &snapshots)?;
                        }
                        inner.set_state(id, JobState::Queued);
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
        if view.job.job_type != JobType::Download {
            let files = entry(&self.lock(), owner, id, "resume")?.files.clone();
            self.store.put_files_detached(files);
        }
        Ok(view)
    }

    /// Stops a job's transfer and keeps it, with its progress, in `suspended`.
    pub async fn suspend(&self, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        let view = self
            .mutate(owner, id, "suspend", |inner, id| {
                match inner.jobs[&id].job.state {
                    s if s.is_final() => Err(final_state_error(id, s, "suspend")),
                    s if s.is_active() => {
                        inner.set_state(id, JobState::Suspended);
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
        self.stop_run(id).await;
        self.get_job(owner, id).or(Ok(view))
    }

    /// Cancels a job: its temporary files are deleted, no destination is written.
    pub async fn cancel(&self, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        self.mutate(owner, id, "cancel", |inner, id| {
            match inner.jobs[&id].job.state {
                s if s.is_final() => Err(final_state_error(id, s, "cancel")),
                _ => {
                    inner.set_state(id, JobState::Cancelled);
                    Ok(true)
                }
            }
        })
        .await?;
        self.stop_run(id).await;
        let Some((job_owner, parts)) = ({
            let inner = self.lock();
            inner.jobs.get(&id).map(|e| {
                let parts: Vec<_> = e.files.iter().map(|f| f.temporary_path()).collect();
                (self.owner_of(&e.job), parts)
            })
        }) else {
            return self.get_job(owner, id);
        };
        if let Err(e) = job_owner.remove_files(parts).await {
            tracing::warn!(%id, "removing the part files of a cancelled job: {e}");
        }
        self.get_job(owner, id)
    }

    /// Commits the files fully transferred (atomic rename over the destination), discards
    /// the rest, and ends the job in `acknowledged`.
    pub async fn complete(&self, owner: u32, id: Uuid) -> Result<CompleteOutcome, ServiceError> {
        // First take the job away from the engine so nothing writes its part files.
        self.mutate(owner, id, "complete", |inner, id| {
            match inner.jobs[&id].job.state {
                s if s.is_final() => Err(final_state_error(id, s, "complete")),
                s if s.is_active() => {
                    inner.set_state(id, JobState::Suspended);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await?;
        self.stop_run(id).await;

        let (files, upload, job_owner, umask) = {
            let inner = self.lock();
            let e = entry(&inner, owner, id, "complete")?;
            (
                e.files.clone(),
                e.job.job_type != JobType::Download,
                self.owner_of(&e.job),
                e.job.options.umask,
            )
        };
        if upload {
            let transferred = files.iter().filter(|f| f.completed).count() as u32;
            let view = self
                .mutate(owner, id, "complete", |inner, id| {
                    inner.set_state(id, JobState::Acknowledged);
                    inner.jobs.get_mut(&id).expect("exists").job.partial = transferred == 0;
                    Ok(true)
                })
                .await?;
            return Ok(CompleteOutcome {
                view,
                committed: transferred,
                discarded: files.len() as u32 - transferred,
            });
        }
        let (keep, drop): (Vec<FileRecord>, Vec<FileRecord>) = files
            .into_iter()
            .partition(|f| f.completed && f.validated != Some(false));
        let (committed, discarded) = (keep.len() as u32, drop.len() as u32);
        commit_files(&job_owner, &keep, &drop, umask).await?;

        let view = self
            .mutate(owner, id, "complete", |inner, id| {
                if inner.jobs[&id].job.state.is_final() {
                    return Err(final_state_error(id, inner.jobs[&id].job.state, "complete"));
                }
                inner.set_state(id, JobState::Acknowledged);
                inner.jobs.get_mut(&id).expect("exists").job.partial = discarded > 0;
                Ok(true)
            })
            .await?;
        Ok(CompleteOutcome {
            view,
            committed,
            discarded,
        })
    }
}

/// Renames completed part files over their destinations (with the mode a destination
/// gets, see `Owner::commit`), removes the others, and syncs the directories touched — as
/// the job's owner.
async fn commit_files(
    owner: &Owner,
    keep: &[FileRecord],
    drop: &[FileRecord],
    umask: Option<u32>,
) -> Result<(), ServiceError> {
    let moves = keep
        .iter()
        .map(|f| (f.temporary_path(), f.local_path.clone().into()))
        .collect();
    let discard = drop.iter().map(|f| f.temporary_path()).collect();
    owner.commit(moves, discard, umask).await.map_err(|e| {
        ServiceError::FailedPrecondition(format!("{e}; fix the destination and complete again"))
    })
}

/// Records the upload source's size and modification time when an upload is resumed
/// before any byte went out (from `snapshots`, looked at as the owner); the engine
/// refuses to send a file that changed since.
fn snapshot_upload_source(
    files: &mut [FileRecord],
    snapshots: &[(String, Result<std::fs::Metadata, String>)],
) -> Result<(), ServiceError> {
    use std::os::unix::fs::MetadataExt;
    for f in files
        .iter_mut()
        .filter(|f| !f.completed && f.validator.is_none())
    {
        let found = snapshots.iter().find(|(p, _)| *p == f.local_path);
        let m = match found {
            Some((_, Ok(m))) => m,
            Some((_, Err(e))) => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "the file to upload {} cannot be read: {e}",
                    f.local_path
                )))
            }
            None => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "the file to upload {} changed while it was resumed: resume it again",
                    f.local_path
                )))
            }
        };
        f.validator = Some(format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec()));
        f.bytes_total = Some(m.len());
    }
    Ok(())
}
