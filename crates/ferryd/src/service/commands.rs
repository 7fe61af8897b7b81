//! Commands clients send: create, add files, resume, suspend, cancel, complete, set, get,
//! list. Each checks the caller owns the job, changes memory, queues the durable write
//! under the lock, and returns after the write is committed.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    validate, Archived, ChangeKind, Entry, FileView, Inner, JobView, Service, ServiceError,
};
use crate::engine::partfile;
use crate::model::{now_ms, FileRecord, JobRecord, JobState, JobType, NotifyFlags, Priority};
use crate::store::Store;

/// What `create_job` needs.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub display_name: String,
    pub description: String,
    pub job_type: JobType,
    pub priority: Priority,
    /// For upload jobs: `put` (default) or `tus`.
    pub upload_protocol: Option<String>,
}

/// One file to add to a job.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub remote_url: String,
    pub local_path: String,
    pub expected_sha256: Option<String>,
}

/// Property changes; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct JobChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub notify_flags: Option<u32>,
    /// `Some(None)` clears the class.
    pub notification_class: Option<Option<Uuid>>,
    /// `Some(vec![])` clears the command.
    pub notify_command: Option<Vec<String>>,
    pub min_retry_delay_secs: Option<u64>,
    pub no_progress_timeout_secs: Option<u64>,
    pub max_transfer_time_secs: Option<u64>,
    /// Replaces the custom headers ("Name: value" each).
    pub headers: Option<Vec<String>>,
    /// `Some(None)` removes the credentials.
    pub credentials: Option<Option<crate::model::Credentials>>,
    pub proxy: Option<String>,
    /// `Some("")` clears it.
    pub ca_file: Option<String>,
    pub bandwidth_limit: Option<u64>,
    /// `Some("")` clears it.
    pub reply_file: Option<String>,
    /// Connections per file; 0 takes the daemon's default.
    pub connections: Option<u32>,
}

/// The result of `complete`.
#[derive(Debug, Clone)]
pub struct CompleteOutcome {
    pub view: JobView,
    pub committed: u32,
    pub discarded: u32,
}

fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!(
        "no job {id}: it never existed, was purged, or belongs to another user (`ferry list --all` shows yours)"
    ))
}

/// The caller's live job `id`. An archived (final) job is refused as final, for `verb`.
fn entry<'a>(
    inner: &'a Inner,
    owner: u32,
    id: Uuid,
    verb: &str,
) -> Result<&'a Entry, ServiceError> {
    if let Some(state) = inner.archived_state(owner, id) {
        return Err(final_state_error(id, state, verb));
    }
    inner
        .jobs
        .get(&id)
        .filter(|e| e.job.owner_uid == owner)
        .ok_or_else(|| not_found(id))
}

fn final_state_error(id: Uuid, state: JobState, verb: &str) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "cannot {verb} job {id}: it is already {state}, and {state} is final"
    ))
}

impl Service {
    /// Changes a job under the lock with `f` (which returns whether anything changed),
    /// then waits until the change is durable.
    ///
    /// `verb` words the refusal of a job already archived (final).
    async fn mutate(
        &self,
        owner: u32,
        id: Uuid,
        verb: &str,
        f: impl FnOnce(&mut Inner, Uuid) -> Result<bool, ServiceError>,
    ) -> Result<JobView, ServiceError> {
        let (rx, view) = {
            let mut inner = self.lock();
            let before = entry(&inner, owner, id, verb)?.view();
            if !f(&mut inner, id)? {
                return Ok(before);
            }
            let e = inner.jobs.get_mut(&id).expect("checked above");
            e.job.modified_ms = now_ms();
            let after = e.view();
            let rx = self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after.clone(), Some(before));
            (rx, after)
        };
        Store::committed(rx).await.map_err(ServiceError::Internal)?;
        Ok(view)
    }

    /// Creates a job in `suspended`.
    pub async fn create_job(&self, owner: u32, spec: NewJob) -> Result<JobView, ServiceError> {
        let name = validate::text("the display name", &spec.display_name)?;
        let description = validate::text("the description", &spec.description)?;
        let mut job = JobRecord::new(name, spec.job_type, spec.priority, owner);
        job.description = description;
        if let Some(p) = spec.upload_protocol.as_deref().filter(|p| !p.is_empty()) {
            if spec.job_type == JobType::Download {
                return Err(ServiceError::InvalidArgument(
                    "an upload protocol applies to upload jobs only".into(),
                ));
            }
            let p: crate::model::UploadProtocol =
                p.parse().map_err(ServiceError::InvalidArgument)?;
            job.options.upload_protocol = Some(p.as_str().into());
        }
        let (rx, view) = {
            let mut inner = self.lock();
            let owned = inner.owned_by(owner);
            if owned >= self.config.max_jobs_per_user {
                return Err(ServiceError::ResourceExhausted(format!(
                    "you have {owned} jobs, the limit is {}: complete or cancel some first",
                    self.config.max_jobs_per_user
                )));
            }
            let rx = self.store.put_job(&job);
            let e = Entry::new(job, Vec::new());
            let view = e.view();
            inner.insert(e);
            self.emit(ChangeKind::Created, view.clone(), None);
            (rx, view)
        };
        Store::committed(rx).await.map_err(ServiceError::Internal)?;
        Ok(view)
    }

    /// Adds files to a job that has not finished.
    pub async fn add_files(
        &self,
        owner: u32,
        id: Uuid,
        specs: Vec<FileSpec>,
    ) -> Result<Vec<FileView>, ServiceError> {
        if specs.is_empty() {
            return Err(ServiceError::InvalidArgument("no files given".into()));
        }
        let upload = {
            let inner = self.lock();
            // An archived job is refused below, after the files are checked, as before.
            let job_type = match inner.archived_of(owner, id) {
                Some(a) => a.decode().0.job_type,
                None => entry(&inner, owner, id, "add files to")?.job.job_type,
            };
            job_type != JobType::Download
        };
        if upload && specs.len() != 1 {
            return Err(ServiceError::InvalidArgument(
                "an upload job has exactly one file: add one".into(),
            ));
        }
        let mut checked = Vec::with_capacity(specs.len());
        for s in &specs {
            let url = validate::remote_url(&s.remote_url)?;
            let path = if upload {
                if url.starts_with("file:") {
                    return Err(ServiceError::InvalidArgument(
                        "uploads go to http or https URLs".into(),
                    ));
                }
                validate::existing_file("the file to upload", &s.local_path)?
            } else {
                validate::local_path(&s.local_path)?
            };
            let sha = s
                .expected_sha256
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(validate::sha256)
                .transpose()?;
            checked.push((url, path, sha));
        }
        let (rx, added) = {
            let mut inner = self.lock();
            let before = entry(&inner, owner, id, "add files to")?.view();
            let e = inner.jobs.get_mut(&id).expect("checked above");
            match e.job.state {
                s if s.is_final() => return Err(final_state_error(id, s, "add files to")),
                JobState::Transferred => {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "job {id} is already transferred: complete it and create a new job"
                    )))
                }
                _ => {}
            }
            if upload && !e.files.is_empty() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "upload job {id} already has its file"
                )));
            }
            if e.files.len() + checked.len() > self.config.max_files_per_job {
                return Err(ServiceError::ResourceExhausted(format!(
                    "job {id} would have {} files, the limit is {}",
                    e.files.len() + checked.len(),
                    self.config.max_files_per_job
                )));
            }
            for (_, path, _) in &checked {
                if e.files.iter().any(|f| &f.local_path == path) {
                    return Err(ServiceError::InvalidArgument(format!(
                        "job {id} already writes {path}"
                    )));
                }
            }
            let first = e.files.len() as u32;
            let added: Vec<FileRecord> = checked
                .into_iter()
                .enumerate()
                .map(|(i, (url, path, sha))| FileRecord {
                    job_id: id,
                    index: first + i as u32,
                    remote_url: url,
                    local_path: path,
                    bytes_total: None,
                    bytes_transferred: 0,
                    completed: false,
                    expected_sha256: sha,
                    final_url: None,
                    validator: None,
                    validated: None,
                    segments: Vec::new(),
                })
                .collect();
            e.files.extend(added.iter().cloned());
            e.job.modified_ms = now_ms();
            let after = e.view();
            let rx = self.store.put_job_and_files(&after.job, added.clone());
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, added)
        };
        Store::committed(rx).await.map_err(ServiceError::Internal)?;
        Ok(added
            .into_iter()
            .map(|f| FileView {
                bytes_transferred: 0,
                file: f,
            })
            .collect())
    }

    /// A job.
    pub fn get_job(&self, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        self.lock().view_of(owner, id).ok_or_else(|| not_found(id))
    }

    /// The state of the caller's job `id` if it is archived (final, compact); `None` for
    /// a job that can still change or is unknown.
    pub fn archived_state(&self, owner: u32, id: Uuid) -> Option<JobState> {
        self.lock().archived_state(owner, id)
    }

    /// The caller's jobs, oldest first; `all` includes final ones.
    pub fn list_jobs(&self, owner: u32, all: bool) -> Vec<JobView> {
        let inner = self.lock();
        let mut v: Vec<JobView> = inner
            .jobs
            .values()
            .filter(|e| e.job.owner_uid == owner && (all || !e.job.state.is_final()))
            .map(Entry::view)
            .collect();
        if all {
            v.extend(
                inner
                    .archived
                    .values()
                    .filter(|a| a.owner_uid == owner)
                    .map(Archived::view),
            );
        }
        drop(inner);
        v.sort_by_key(|v| (v.job.created_ms, v.job.id));
        v
    }

    /// Every job (all owners), for queries.
    pub fn all_jobs_with_files(&self) -> Vec<(JobView, Vec<FileView>)> {
        let inner = self.lock();
        inner
            .jobs
            .values()
            .map(|e| (e.view(), e.file_views()))
            .chain(inner.archived.values().map(Archived::view_with_files))
            .collect()
    }

    /// A job's files in order.
    pub fn list_files(&self, owner: u32, id: Uuid) -> Result<Vec<FileView>, ServiceError> {
        let inner = self.lock();
        match inner.archived_of(owner, id) {
            Some(a) => Ok(a.file_views()),
            None => Ok(entry(&inner, owner, id, "list the files of")?.file_views()),
        }
    }

    /// Queues a suspended or failed job.
    pub async fn resume(self: &Arc<Self>, owner: u32, id: Uuid) -> Result<JobView, ServiceError> {
        let view = self
            .mutate(owner, id, "resume", |inner, id| {
                let e = &inner.jobs[&id];
                match e.job.state {
                    s if s.is_final() => Err(final_state_error(id, s, "resume")),
                    JobState::Suspended | JobState::Error | JobState::TransientError => {
                        if e.files.is_empty() {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "job {id} has no files: add some with `ferry add-file` first"
                            )));
                        }
                        let e = inner.jobs.get_mut(&id).expect("exists");
                        e.job.error = None;
                        e.job.last_progress_ms = now_ms();
                        e.job.options.first_active_ms.get_or_insert(now_ms());
                        if e.job.job_type != JobType::Download {
                            snapshot_upload_source(&mut e.files)?;
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
        self.wake.notify_one();
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
        let parts: Vec<_> = {
            let inner = self.lock();
            inner
                .jobs
                .get(&id)
                .map(|e| e.files.iter().map(|f| f.temporary_path()).collect())
                .unwrap_or_default()
        };
        let _ = tokio::task::spawn_blocking(move || {
            for p in parts {
                let _ = std::fs::remove_file(p);
            }
        })
        .await;
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

        let (files, upload) = {
            let inner = self.lock();
            let e = entry(&inner, owner, id, "complete")?;
            (e.files.clone(), e.job.job_type != JobType::Download)
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
        let renamed = tokio::task::spawn_blocking(move || commit_files(&keep, &drop))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        renamed?;

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

    /// Changes properties of a job.
    pub async fn set_properties(
        self: &Arc<Self>,
        owner: u32,
        id: Uuid,
        changes: JobChanges,
    ) -> Result<JobView, ServiceError> {
        if let Some(name) = &changes.display_name {
            validate::text("the display name", name)?;
        }
        if let Some(d) = &changes.description {
            validate::text("the description", d)?;
        }
        if let Some(flags) = changes.notify_flags {
            if NotifyFlags::from_bits(flags).is_none() {
                return Err(ServiceError::InvalidArgument(format!(
                    "notify flags {flags:#x} include unknown bits (known: {:#x})",
                    NotifyFlags::all().bits()
                )));
            }
        }
        if let Some(cmd) = &changes.notify_command {
            if let Some(prog) = cmd.first() {
                if !std::path::Path::new(prog).is_absolute() {
                    return Err(ServiceError::InvalidArgument(format!(
                        "the notify command's program '{prog}' must be an absolute path"
                    )));
                }
            }
        }
        let headers = changes
            .headers
            .as_ref()
            .map(|hs| {
                hs.iter()
                    .map(|h| validate::header(h))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let proxy = changes.proxy.as_deref().map(validate::proxy).transpose()?;
        let ca_file = match changes.ca_file.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some(validate::existing_file("the CA file", p)?)),
        };
        let reply_file = match changes.reply_file.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some(validate::local_path(p)?)),
        };
        if let Some(Some(crate::model::Credentials::Basic { user, .. })) = &changes.credentials {
            if user.contains(':') {
                return Err(ServiceError::InvalidArgument(
                    "a basic-auth user name cannot contain ':'".into(),
                ));
            }
        }
        let requeue = changes.priority.is_some();
        let changed_command = changes
            .notify_command
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        let changed_class = matches!(changes.notification_class, Some(Some(_)));
        let view = self
            .mutate(owner, id, "change", |inner, id| {
                let state = inner.jobs[&id].job.state;
                if state.is_final() {
                    return Err(final_state_error(id, state, "change"));
                }
                let e = inner.jobs.get_mut(&id).expect("exists");
                let j = &mut e.job;
                if let Some(v) = changes.display_name {
                    j.display_name = v;
                }
                if let Some(v) = changes.description {
                    j.description = v;
                }
                if let Some(v) = changes.priority {
                    j.priority = v;
                }
                if let Some(v) = changes.notify_flags {
                    j.notify_flags = NotifyFlags::from_bits_truncate(v);
                }
                if let Some(v) = changes.notification_class {
                    j.notification_class = v.filter(|c| !c.is_nil());
                }
                if let Some(v) = changes.notify_command {
                    j.notify_command = v;
                }
                if let Some(v) = changes.min_retry_delay_secs {
                    j.min_retry_delay_secs = v;
                }
                if let Some(v) = changes.no_progress_timeout_secs {
                    j.no_progress_timeout_secs = v;
                }
                if let Some(v) = changes.max_transfer_time_secs {
                    j.max_transfer_time_secs = v;
                }
                if let Some(v) = headers {
                    j.options.headers = v;
                }
                if let Some(v) = changes.credentials {
                    j.options.credentials = v;
                }
                if let Some(v) = proxy {
                    j.options.proxy = v;
                }
                if let Some(v) = ca_file {
                    j.options.ca_file = v;
                }
                if let Some(v) = changes.bandwidth_limit {
                    j.options.bandwidth_limit = v;
                }
                if let Some(v) = changes.connections {
                    if v > 16 {
                        return Err(ServiceError::InvalidArgument(format!(
                            "{v} connections per file is too many (at most 16)"
                        )));
                    }
                    j.options.connections = v;
                }
                if let Some(v) = reply_file {
                    if j.job_type != JobType::UploadReply && v.is_some() {
                        return Err(ServiceError::InvalidArgument(
                            "a reply file applies to upload_reply jobs only".into(),
                        ));
                    }
                    j.options.reply_file = v;
                }
                if requeue && state == JobState::Queued {
                    inner.set_state(id, JobState::Queued);
                }
                Ok(true)
            })
            .await?;
        self.wake.notify_one();
        // A notify command (or class) set after the job transferred or failed still runs.
        if matches!(view.job.state, JobState::Transferred | JobState::Error)
            && self.notifier.pending(id) == 0
            && (changed_command || changed_class)
        {
            let outbox = self.due_notifications(&view.job, Some(view.job.state), &[]);
            let rx = self.persist_with_outbox(&view.job, Vec::new(), &outbox);
            Store::committed(rx).await.map_err(ServiceError::Internal)?;
            crate::notify::Notifier::enqueue(self, id, outbox);
        }
        crate::notify::Notifier::kick(self, id);
        Ok(view)
    }
}

/// Renames completed part files over their destinations, removes the others, and syncs
/// the directories touched.
fn commit_files(keep: &[FileRecord], drop: &[FileRecord]) -> Result<(), ServiceError> {
    for f in keep {
        let part = f.temporary_path();
        if std::fs::symlink_metadata(&part).is_err() && std::fs::metadata(&f.local_path).is_ok() {
            // Committed by an earlier complete that failed part-way.
            continue;
        }
        std::fs::rename(&part, &f.local_path).map_err(|e| {
            ServiceError::FailedPrecondition(format!(
                "could not move {} to {}: {e}; fix the destination and complete again",
                part.display(),
                f.local_path
            ))
        })?;
    }
    let mut dirs: Vec<_> = keep
        .iter()
        .filter_map(|f| {
            std::path::Path::new(&f.local_path)
                .parent()
                .map(|p| p.to_owned())
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = partfile::sync_dir(&d) {
            tracing::warn!(dir = %d.display(), "syncing the directory failed: {e}");
        }
    }
    for f in drop {
        let _ = std::fs::remove_file(f.temporary_path());
    }
    Ok(())
}

/// Records the upload source's size and modification time when an upload is resumed
/// before any byte went out; the engine refuses to send a file that changed since.
fn snapshot_upload_source(files: &mut [FileRecord]) -> Result<(), ServiceError> {
    use std::os::unix::fs::MetadataExt;
    for f in files
        .iter_mut()
        .filter(|f| !f.completed && f.validator.is_none())
    {
        let m = std::fs::metadata(&f.local_path).map_err(|e| {
            ServiceError::FailedPrecondition(format!(
                "the file to upload {} cannot be read: {e}",
                f.local_path
            ))
        })?;
        f.validator = Some(format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec()));
        f.bytes_total = Some(m.len());
    }
    Ok(())
}
