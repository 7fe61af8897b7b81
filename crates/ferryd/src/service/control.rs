//! Commands that move a job through its states: resume and suspend (`finish.rs` has
//! cancel and complete).

use uuid::Uuid;

use super::commands::{entry, final_state_error};
use super::state::Entry;
use super::{ErrorReason, JobView, Service, ServiceError};
use crate::model::{mono_ms, now_ms, FileRecord, JobState, JobType};

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
        let snapshots = self.upload_snapshots(owner, sources).await;
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
                        if let Some(f) = e.job.finishing {
                            return Err(being_finished(id, f));
                        }
                        if e.files.is_empty() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "job {id} has no files: add some with AddFiles first"
                            ))
                            .marked(ErrorReason::JobHasNoFiles));
                        }
                        let e = inner.jobs.get_mut(&id).expect("exists");
                        start_clocks(e);
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
}

/// What a resume starts again: no error, progress counted from now, and
/// `max_transfer_time` too (BITS: "Calling Resume resets the elapsed time").
pub(super) fn start_clocks(e: &mut Entry) {
    e.job.error = None;
    e.job.last_progress_ms = now_ms();
    e.clock.last_progress = mono_ms();
    e.clock.failures_in_a_row = 0;
    e.job.options.first_active_ms = Some(now_ms());
    e.clock.first_active = Some(mono_ms());
}

impl Service {
    /// The size and modification time of each of `paths`, looked at as `owner` (an
    /// upload's sources as it is resumed for the first time).
    pub(super) async fn upload_snapshots(
        &self,
        owner: u32,
        paths: Vec<String>,
    ) -> Vec<(String, Result<std::fs::Metadata, String>)> {
        let mut snapshots = Vec::with_capacity(paths.len());
        for path in paths {
            let stat = self.owners.of(owner).stat(path.clone().into()).await;
            snapshots.push((path, stat.map_err(|e| e.to_string())));
        }
        snapshots
    }
}

/// Records the upload source's size and modification time when an upload is resumed
/// before any byte went out (from `snapshots`, looked at as the owner); the engine
/// refuses to send a file that changed since.
pub(super) fn snapshot_upload_source(
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

/// The refusal of a command on a job whose `complete` or `cancel` is under way.
pub(super) fn being_finished(id: Uuid, f: crate::model::Finishing) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "job {id} is being finished by `{f}` (interrupted or not done yet): call \
         `ferry {f} {id}` again to finish it"
    ))
}
