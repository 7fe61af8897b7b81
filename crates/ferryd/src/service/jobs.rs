//! Commands that create jobs, add files, and read jobs and files.

use uuid::Uuid;

use super::commands::{entry, final_state_error, not_found, FileSpec, NewJob};
use super::control::{snapshot_upload_source, start_clocks};
use super::properties::apply_changes;
use super::state::Entry;
use super::{validate, ChangeKind, ErrorReason, FileView, JobView, Service, ServiceError};
use crate::model::{Caller, FileRecord, JobRecord, JobState, JobType};
use crate::store::Store;

/// A file that passed the checks: URL, destination (as the owner), expected SHA-256.
struct CheckedFile {
    url: String,
    path: String,
    sha256: Option<String>,
    mirrors: Vec<String>,
    ranges: crate::model::FileRanges,
}

/// The most mirrors a file may carry.
pub const MAX_MIRRORS: usize = 16;

/// The largest umask a job may carry (the permission bits).
const UMASK_BITS: u32 = 0o777;

impl Service {
    /// Creates a job of the caller in `suspended`, with the files and properties `spec`
    /// carries: every one of them is checked first, so a refusal leaves no job behind. The
    /// job keeps its creator's umask: system-wide the one the kernel reports for the
    /// calling process (its files are created with it), else the one the client sent.
    pub async fn create_job(&self, caller: &Caller, spec: NewJob) -> Result<JobView, ServiceError> {
        self.create_job_with_id(caller, spec, None).await
    }

    /// [`Service::create_job`], with the id `id` when given (a job taken over keeps its
    /// id): refused when a job of that id is here already.
    pub(super) async fn create_job_with_id(
        &self,
        caller: &Caller,
        spec: NewJob,
        id: Option<Uuid>,
    ) -> Result<JobView, ServiceError> {
        self.check_writable()?;
        self.check_store_room().await?;
        let owner = caller.uid;
        let name = validate::text("display_name", &spec.display_name)?;
        let description = validate::text("description", &spec.description)?;
        let mut job = JobRecord::new(name, spec.job_type, spec.priority, owner);
        job.description = description;
        if let Some(id) = id {
            let inner = self.lock();
            if inner.jobs.contains_key(&id) || inner.archived.contains_key(&id) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "job {id} is here already (uid {owner}): nothing to take over"
                )));
            }
            job.id = id;
        }
        let exempt = self.exempt_from_limits(caller);
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
        if let Some(mask) = spec.umask {
            if mask > UMASK_BITS {
                return Err(ServiceError::InvalidArgument(format!(
                    "umask {mask:#o} has bits beyond {UMASK_BITS:#o}: give the process's umask \\
                     (e.g. 0o022)"
                )));
            }
        }
        job.options.umask = self.owners.umask_of_process(caller.pid).or(spec.umask);
        if let Some(changes) = spec.changes {
            let checked = self.check_changes(owner, changes).await?;
            apply_changes(&mut job, checked)?;
        }
        let mut files = if spec.files.is_empty() {
            Vec::new()
        } else {
            let upload = spec.job_type != JobType::Download;
            let checked = self.check_files(owner, upload, &spec.files).await?;
            if !exempt && checked.len() > self.config.max_files_per_job {
                return Err(ServiceError::ResourceExhausted(format!(
                    "a job of {} files is refused, the limit is {}",
                    checked.len(),
                    self.config.max_files_per_job
                )));
            }
            file_records(job.id, 0, checked)
        };
        if spec.resume {
            if files.is_empty() {
                return Err(ServiceError::FailedPrecondition(
                    "a job created to be resumed at once needs files: give some, or \
                     create it and resume it after AddFiles"
                        .into(),
                )
                .marked(ErrorReason::JobHasNoFiles));
            }
            if job.job_type != JobType::Download {
                let sources = files.iter().map(|f| f.local_path.clone()).collect();
                let snapshots = self.upload_snapshots(owner, sources).await;
                snapshot_upload_source(&mut files, &snapshots)?;
            }
        }
        if !exempt {
            // The per-user limit first (this worker's own count), then the machine's.
            self.check_job_limits(&self.lock(), owner)?;
        }
        self.reserve_job(caller).await?;
        let (rx, view) = {
            let mut inner = self.lock();
            if !exempt {
                if let Err(e) = self.check_job_limits(&inner, owner) {
                    drop(inner);
                    self.report_unfinished();
                    return Err(e);
                }
            }
            let id = job.id;
            inner.insert(Entry::new(job, files.clone()));
            if spec.resume {
                // Queued before the one write: the job is stored as the client is told.
                start_clocks(inner.jobs.get_mut(&id).expect("just inserted"));
                inner.set_state(id, JobState::Queued);
            }
            let view = inner.jobs[&id].view();
            let rx = if files.is_empty() {
                self.store.put_job(&view.job)
            } else {
                self.store.put_job_and_files(&view.job, files)
            };
            self.emit(ChangeKind::Created, view.clone(), None);
            (rx, view)
        };
        if let Err(e) = Store::committed(rx).await {
            if matches!(e, crate::store::WriteError::Unwritable(_)) {
                // Refused: the job the client was told failed does not appear later.
                let removed = self.lock().remove(view.job.id);
                if let Some(v) = removed.and_then(|r| r.view(&self.store)) {
                    self.emit(ChangeKind::Deleted, v, None);
                }
            }
            self.report_unfinished();
            return Err(e.into());
        }
        self.report_unfinished();
        Ok(view)
    }

    /// Checks files to add to a job (of type upload when `upload`): URLs, digests, and the
    /// paths as the owner (all in one hand-off, for a job of thousands of files). Errors
    /// come in the order of the files, as if each file were checked on its own; two files
    /// with one destination are refused.
    async fn check_files(
        &self,
        owner: u32,
        upload: bool,
        specs: &[FileSpec],
    ) -> Result<Vec<CheckedFile>, ServiceError> {
        if upload && specs.len() != 1 {
            return Err(ServiceError::InvalidArgument(
                "an upload job has exactly one file: add one".into(),
            ));
        }
        let owner_fs = self.owners.of(owner);
        let paths: Vec<String> = specs.iter().map(|s| s.local_path.clone()).collect();
        let path_checks = if upload {
            owner_fs
                .check_regular_files("the file to upload", paths)
                .await
        } else {
            owner_fs.check_destinations(paths).await
        };
        let mut checked: Vec<CheckedFile> = Vec::with_capacity(specs.len());
        let mut seen = std::collections::HashMap::with_capacity(specs.len());
        for (i, (s, path)) in specs.iter().zip(path_checks).enumerate() {
            let url = validate::remote_url(&format!("files[{i}].remote_url"), &s.remote_url)?;
            if upload && url.starts_with("file:") {
                return Err(ServiceError::InvalidArgument(
                    "uploads go to http or https URLs".into(),
                ));
            }
            let mirrors = check_mirrors(i, upload, &s.mirrors)?;
            validate::local_path(&format!("files[{i}].local_path"), &s.local_path)?;
            let path = path.map_err(ServiceError::InvalidArgument)?;
            if let Some(first) = seen.insert(path.clone(), i) {
                return Err(ServiceError::InvalidArgument(format!(
                    "files {first} and {i} both go to {path}: give each file its own destination"
                )));
            }
            let sha256 = s
                .expected_sha256
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(validate::sha256)
                .transpose()?;
            let ranges = file_ranges(i, s, upload, &url, sha256.is_some())?;
            checked.push(CheckedFile {
                url,
                path,
                sha256,
                mirrors,
                ranges,
            });
        }
        Ok(checked)
    }

    /// Adds files to a job that has not finished.
    pub async fn add_files(
        &self,
        caller: &Caller,
        id: Uuid,
        specs: Vec<FileSpec>,
    ) -> Result<Vec<FileView>, ServiceError> {
        self.check_store_room().await?;
        // An administrator adds to the owner's job; its paths are checked and opened as
        // the owner (the worker of the owner, in the system-wide daemon).
        let owner = self.acting_owner(caller, id);
        if specs.is_empty() {
            return Err(ServiceError::InvalidArgument("no files given".into()));
        }
        self.check_writable()?;
        let upload = {
            let inner = self.lock();
            // An archived job is refused below, after the files are checked, as before.
            let job_type = match inner.archived_of(owner, id) {
                Some(a) => match a.decode(id, &self.store) {
                    Some((job, _)) => job.job_type,
                    None => return Err(not_found(id)),
                },
                None => entry(&inner, owner, id, "add files to")?.job.job_type,
            };
            job_type != JobType::Download
        };
        let checked = self.check_files(owner, upload, &specs).await?;
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
            if let Some(f) = e.job.finishing {
                return Err(super::control::being_finished(id, f));
            }
            if upload && !e.files.is_empty() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "upload job {id} already has its file"
                )));
            }
            let files = e.files.len() + checked.len();
            if files > self.config.max_files_per_job && !self.exempt_from_limits(caller) {
                return Err(self.limit_refusal(
                    format!("job {id} would have {files} files"),
                    "max_files_per_job",
                    self.config.max_files_per_job,
                    "add them to another job",
                ));
            }
            for c in &checked {
                if e.files.iter().any(|f| f.local_path == c.path) {
                    return Err(ServiceError::InvalidArgument(format!(
                        "job {id} already writes {}",
                        c.path
                    )));
                }
            }
            let added = file_records(id, e.files.len() as u32, checked);
            e.files.extend(added.iter().cloned());
            e.touch();
            let after = e.view();
            let rx = self.store.put_job_and_files(&after.job, added.clone());
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, added)
        };
        Store::committed(rx).await.map_err(ServiceError::from)?;
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
        let mut stored = Vec::new();
        if all {
            let (in_memory, in_store) = inner.archived_split(|a| a.owner_uid == owner);
            v.extend(
                in_memory
                    .into_iter()
                    .filter_map(|(id, a)| a.view(id, &self.store)),
            );
            stored = in_store;
        }
        drop(inner);
        v.extend(
            self.stored_jobs(&stored)
                .into_iter()
                .map(|(job, files)| super::state::final_view(job, &files)),
        );
        v.sort_by_key(|v| (v.job.created_ms, v.job.id));
        v
    }

    /// A job's files in order.
    pub fn list_files(&self, owner: u32, id: Uuid) -> Result<Vec<FileView>, ServiceError> {
        let inner = self.lock();
        match inner.archived_of(owner, id) {
            Some(a) => Ok(a.file_views(id, &self.store)),
            None => Ok(entry(&inner, owner, id, "list the files of")?.file_views()),
        }
    }
}

/// The records of checked files added to job `id` from index `first` on.
/// The ranges of file `i` (BITS: `AddFileWithRanges`, on-demand mode), checked.
fn file_ranges(
    i: usize,
    s: &FileSpec,
    upload: bool,
    url: &str,
    sha256: bool,
) -> Result<crate::model::FileRanges, ServiceError> {
    use crate::model::ranges;
    if s.ranges.is_empty() && !s.on_demand {
        return Ok(Default::default());
    }
    let refuse = |why: &str| Err(ServiceError::InvalidArgument(format!("files[{i}]: {why}")));
    if upload {
        return refuse("ranges and on-demand mode apply to downloads only (BITS: E_NOTIMPL)");
    }
    if !(url.starts_with("http:") || url.starts_with("https:")) {
        return refuse(
            "ranges and on-demand mode need an http or https URL (a server that serves byte \
             ranges)",
        );
    }
    if sha256 {
        return refuse(
            "a SHA-256 checks a whole file; a file of ranges or on demand cannot have one",
        );
    }
    let ranges = if s.on_demand {
        if !s.ranges.is_empty() {
            ranges::check_requested(&s.ranges)
                .map_err(|e| ServiceError::InvalidArgument(format!("files[{i}].ranges: {e}")))?;
        }
        ranges::merge(&s.ranges, &[])
    } else {
        ranges::check_added(&s.ranges)
            .map_err(|e| ServiceError::InvalidArgument(format!("files[{i}].ranges: {e}")))?;
        s.ranges.clone()
    };
    Ok(crate::model::FileRanges {
        ranges,
        on_demand: s.on_demand,
        position: 0,
        size: None,
    })
}

fn file_records(id: Uuid, first: u32, checked: Vec<CheckedFile>) -> Vec<FileRecord> {
    checked
        .into_iter()
        .enumerate()
        .map(|(i, c)| FileRecord {
            job_id: id,
            index: first + i as u32,
            remote_url: c.url,
            local_path: c.path,
            bytes_total: None,
            bytes_transferred: 0,
            completed: false,
            expected_sha256: c.sha256,
            final_url: None,
            validator: None,
            validated: None,
            segments: Vec::new(),
            peer: crate::model::FilePeerInfo {
                // A file of ranges is not the remote content: never offered to peers.
                no_peer_cache: !c.ranges.is_whole(),
                ..Default::default()
            },
            mirrors: c.mirrors,
            mirror_in_use: 0,
            response_headers: Vec::new(),
            ranges: c.ranges,
        })
        .collect()
}

/// The mirrors of file `i` (of an upload job when `upload`: it takes none), each checked
/// as its URL is.
fn check_mirrors(i: usize, upload: bool, mirrors: &[String]) -> Result<Vec<String>, ServiceError> {
    if mirrors.is_empty() {
        return Ok(Vec::new());
    }
    if upload {
        return Err(ServiceError::InvalidArgument(format!(
            "files[{i}] of an upload job has mirrors: an upload goes to one URL; give none"
        )));
    }
    if mirrors.len() > MAX_MIRRORS {
        return Err(ServiceError::InvalidArgument(format!(
            "files[{i}] has {} mirrors, at most {MAX_MIRRORS} are taken",
            mirrors.len()
        )));
    }
    mirrors
        .iter()
        .enumerate()
        .map(|(j, m)| validate::remote_url_named(&format!("files[{i}].mirrors[{j}]"), m))
        .collect()
}
