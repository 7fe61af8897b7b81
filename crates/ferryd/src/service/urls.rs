//! Commands that change where a job's files come from, keeping their progress: one
//! file's URL (BITS's `IBackgroundCopyFile2::SetRemoteName`) and every URL that starts
//! with a prefix (BITS's `IBackgroundCopyJob3::ReplaceRemotePrefix`). As in BITS they are
//! allowed until the job is final. A file keeps its part file: the engine asks the new
//! URL for the rest with `If-Range` under the validator the bytes were fetched with, so
//! a server with other content starts the file over (docs/architecture/data-path.md,
//! "Changing a file's URL"). A running job is stopped and queued again at once, so it
//! continues from the new URL.

use uuid::Uuid;

use super::commands::{entry, final_state_error};
use super::control::being_finished;
use super::{validate, ChangeKind, FileView, JobView, Service, ServiceError};
use crate::model::{FileRecord, JobState, JobType};
use crate::store::Store;

/// A URL's new value for file `index`: its own URL (`mirror` 0) or a mirror.
struct NewUrl {
    index: u32,
    /// 0: the file's remote_url; `i`: its mirror `i - 1`.
    mirror: u32,
    url: String,
    /// The file is fetched from this URL from now on (SetRemoteName).
    use_it: bool,
}

impl Service {
    /// Gives file `index` of job `id` the URL `url` (checked as AddFiles checks it) and
    /// fetches it from there from now on (the mirror in use goes back to the file's own
    /// URL). BITS: `IBackgroundCopyFile2::SetRemoteName`.
    pub async fn set_remote_name(
        &self,
        owner: u32,
        id: Uuid,
        index: u32,
        url: &str,
    ) -> Result<FileView, ServiceError> {
        self.check_writable()?;
        let upload = self.is_upload(owner, id, "change the URL of a file of")?;
        let url = checked_url("remote_url", upload, url)?;
        let change = vec![NewUrl {
            index,
            mirror: 0,
            url,
            use_it: true,
        }];
        let (_, files) = self
            .change_urls(owner, id, "change the URL of a file of", move |files| {
                let count = files.len();
                if index as usize >= count {
                    return Err(ServiceError::NotFound(format!(
                        "job {id} has no file {index}: it has {count} (indexes 0 to {}; \
                         ListFiles lists them)",
                        count.saturating_sub(1)
                    )));
                }
                Ok(change)
            })
            .await?;
        let f = files
            .into_iter()
            .next()
            .expect("one file changed, or an error");
        self.list_files(owner, id)?
            .into_iter()
            .find(|v| v.file.index == f.index)
            .ok_or_else(|| super::commands::not_found(id))
    }

    /// Gives every URL of job `id` that starts with `old` (each file's own URL and its
    /// mirrors) `new` in its place; all or none, each result checked as AddFiles checks a
    /// URL. Returns the job and how many files changed (none is no error: BITS's
    /// `IBackgroundCopyJob3::ReplaceRemotePrefix` succeeds then too).
    pub async fn replace_remote_prefix(
        &self,
        owner: u32,
        id: Uuid,
        old: &str,
        new: &str,
    ) -> Result<(JobView, u32), ServiceError> {
        self.check_writable()?;
        if old.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "old_prefix is empty: give the start of the URLs to replace, such as \
                 https://old.example/"
                    .into(),
            ));
        }
        validate::no_control_chars("new_prefix", new)?;
        let upload = self.is_upload(owner, id, "replace the URLs of")?;
        let (old, new) = (old.to_string(), new.to_string());
        let (view, files) = self
            .change_urls(owner, id, "replace the URLs of", move |files| {
                replaced_urls(files, &old, &new, upload)
            })
            .await?;
        Ok((view, files.len() as u32))
    }

    /// True when job `id` is an upload (its URLs must be http or https).
    fn is_upload(&self, owner: u32, id: Uuid, verb: &str) -> Result<bool, ServiceError> {
        let inner = self.lock();
        Ok(entry(&inner, owner, id, verb)?.job.job_type != JobType::Download)
    }

    /// Changes the URLs `changes` picks from the job's files, under the lock, then waits
    /// until the files are durable; a running job whose URLs in use changed starts again.
    /// Returns the job and the files changed.
    async fn change_urls(
        &self,
        owner: u32,
        id: Uuid,
        verb: &str,
        changes: impl FnOnce(&[FileRecord]) -> Result<Vec<NewUrl>, ServiceError>,
    ) -> Result<(JobView, Vec<FileRecord>), ServiceError> {
        let (rx, view, changed, restart) = {
            let mut inner = self.lock();
            let e = entry(&inner, owner, id, verb)?;
            if e.job.state.is_final() {
                return Err(final_state_error(id, e.job.state, verb));
            }
            if let Some(f) = e.job.finishing {
                return Err(being_finished(id, f));
            }
            let new_urls = changes(&e.files)?;
            let before = e.view();
            let e = inner.jobs.get_mut(&id).expect("checked above");
            let mut changed: Vec<FileRecord> = Vec::new();
            let mut in_use_changed = false;
            for n in new_urls {
                let f = &mut e.files[n.index as usize];
                let was_in_use = f.url_in_use().to_string();
                match n.mirror {
                    0 => f.remote_url = n.url,
                    m => f.mirrors[m as usize - 1] = n.url,
                }
                if n.use_it {
                    f.mirror_in_use = n.mirror;
                }
                if f.url_in_use() != was_in_use {
                    // Where the old URL's redirects led says nothing of the new one (nor
                    // does a tus upload's URL on the old server).
                    f.final_url = None;
                    in_use_changed |= !f.completed;
                }
                match changed.iter_mut().find(|c| c.index == n.index) {
                    Some(c) => *c = f.clone(),
                    None => changed.push(f.clone()),
                }
            }
            if changed.is_empty() {
                return Ok((before, changed));
            }
            e.touch();
            let running = e.run.is_some()
                && matches!(e.job.state, JobState::Connecting | JobState::Transferring);
            let restart = running && in_use_changed;
            if restart {
                // Queued again now; it waits for the run stopped below.
                inner.set_state(id, JobState::Queued);
            }
            let after = inner.jobs[&id].view();
            let rx = self.store.put_job_and_files(&after.job, changed.clone());
            self.emit(ChangeKind::Modified, after.clone(), Some(before));
            (rx, after, changed, restart)
        };
        Store::committed(rx).await.map_err(ServiceError::from)?;
        if restart {
            tracing::info!(job = %id, "a URL in use changed: the job continues from the new URL");
            self.stop_run(id).await;
        }
        Ok((view, changed))
    }
}

/// `url` checked as AddFiles checks a file's URL (request field `field`); an upload's
/// must be http or https.
fn checked_url(field: &str, upload: bool, url: &str) -> Result<String, ServiceError> {
    let url = validate::remote_url_named(field, url)?;
    if upload && url.starts_with("file:") {
        return Err(ServiceError::InvalidArgument(format!(
            "{field}: uploads go to http or https URLs, not '{}'",
            crate::model::mask_url(&url)
        )));
    }
    Ok(url)
}

/// Every URL of `files` that starts with `old`, with `new` in its place, each checked.
fn replaced_urls(
    files: &[FileRecord],
    old: &str,
    new: &str,
    upload: bool,
) -> Result<Vec<NewUrl>, ServiceError> {
    let mut out = Vec::new();
    for f in files {
        let urls = std::iter::once(&f.remote_url).chain(&f.mirrors);
        for (mirror, url) in urls.enumerate() {
            let Some(rest) = url.strip_prefix(old) else {
                continue;
            };
            let field = match mirror {
                0 => format!("files[{}].remote_url (with new_prefix)", f.index),
                m => format!("files[{}].mirrors[{}] (with new_prefix)", f.index, m - 1),
            };
            let url = checked_url(&field, upload, &format!("{new}{rest}"))?;
            out.push(NewUrl {
                index: f.index,
                mirror: mirror as u32,
                url,
                use_it: false,
            });
        }
    }
    Ok(out)
}
