//! TakeOwnership (BITS's `IBackgroundCopyJob2::TakeOwnership`, `bitsadmin
//! /takeownership`): an administrator of the system-wide daemon makes another user's job
//! theirs.
//!
//! Every user's jobs live in that user's worker, in that user's store, and a worker runs
//! as its user; a job that changes owner therefore changes worker. The move has three
//! steps, each on the worker that can do it as its own user:
//!
//! 1. **Hand over** (the owner's worker, on the connection the broker vouched for as the
//!    administrator's): [`Service::hand_over`] describes the job as a [`NewJob`] and
//!    changes nothing.
//! 2. **Create** (the administrator's worker): [`Service::create_taken_job`] creates it
//!    with the same id, suspended, every file and property checked as any new job of the
//!    administrator's is (destinations as the administrator).
//! 3. **Release** (the owner's worker again): [`Service::release_job`] cancels its copy
//!    (deleting its part files, as the owner) and removes it from the owner's store. If
//!    that fails, the administrator's worker cancels and removes what it created, so the
//!    job is in one place or the other, never lost.
//!
//! What does not move, and why: the progress (the part files are the old owner's, in
//! folders of theirs; the files start over as the new owner's); the credentials, secret
//! header values and a URL's or proxy's userinfo (the old owner's secrets); the notify
//! command, notification class, CA file and reply file (a program or path the old owner
//! chose, which would run or be opened as the new owner: root's worker runs as uid 0).
//! The destinations do move, as in BITS: they are opened as the new owner once the job is
//! resumed, so the job arrives suspended for the administrator to look at them first.

use uuid::Uuid;

use super::commands::{entry, final_state_error, FileSpec, JobChanges, NewJob};
use super::{Caller, JobView, Service, ServiceError};
use crate::model::{is_secret_header, mask_url, secrets_free_url, ProxySetting};

impl Service {
    /// Refuses TakeOwnership to anyone but an administrator of the system-wide daemon.
    pub fn may_take_ownership(&self, caller: &Caller) -> Result<(), ServiceError> {
        if self.is_admin(caller) {
            return Ok(());
        }
        Err(ServiceError::PermissionDenied(if self.config.is_system() {
            format!(
                "only root and the members of group '{}' may take over another user's job",
                self.config.admin_group
            )
        } else {
            "this per-user ferryd serves one user: every job in it is already yours \
             (administrators take over jobs in the system-wide ferryd, `ferry --system`)"
                .into()
        }))
    }

    /// Step 1, in the owner's worker: job `id` (another user's, for administrator
    /// `caller`) as the job to create in the administrator's worker. Changes nothing.
    pub fn hand_over(&self, caller: &Caller, id: Uuid) -> Result<(JobView, NewJob), ServiceError> {
        self.may_take_ownership(caller)?;
        let owner = self.acting_owner(caller, id);
        let inner = self.lock();
        let e = entry(&inner, owner, id, "take over")?;
        if let Some(f) = e.job.finishing {
            return Err(super::control::being_finished(id, f));
        }
        let j = &e.job;
        let o = &j.options;
        // Every header value is a secret once the headers are write-only.
        let headers: Vec<String> = if o.headers_write_only {
            Vec::new()
        } else {
            o.headers
                .iter()
                .filter(|(n, v)| !is_secret_header(n) && !shown_masked(n, v))
                .map(|(n, v)| format!("{n}: {v}"))
                .collect()
        };
        let proxy = match &o.proxy {
            ProxySetting::Url(u) => secrets_free_url(u),
            other => other.as_text(),
        };
        let changes = JobChanges {
            notify_flags: Some(j.notify_flags.bits()),
            min_retry_delay_secs: Some(j.min_retry_delay_secs),
            no_progress_timeout_secs: Some(j.no_progress_timeout_secs),
            max_transfer_time_secs: Some(j.max_transfer_time_secs),
            headers: Some(headers),
            proxy: Some(proxy),
            bandwidth_limit: Some(o.bandwidth_limit),
            connections: Some(o.connections),
            peers: o.peers,
            on_metered: o.on_metered,
            auto_complete: Some(o.auto_complete),
            insecure_tls: Some(o.insecure_tls),
            keep_going: Some(o.keep_going),
            max_download_size: Some(o.max_download_size),
            minimum_notification_interval_ms: Some(o.minimum_notification_interval_ms),
            http_method: Some(o.http_method.clone().unwrap_or_default()),
            ..JobChanges::default()
        };
        let new = NewJob {
            display_name: j.display_name.clone(),
            description: j.description.clone(),
            job_type: j.job_type,
            priority: j.priority,
            upload_protocol: (j.job_type != crate::model::JobType::Download)
                .then(|| o.upload_protocol().as_str().to_string()),
            files: e
                .files
                .iter()
                .map(|f| FileSpec {
                    remote_url: secrets_free_url(&f.remote_url),
                    local_path: f.local_path.clone(),
                    expected_sha256: f.expected_sha256.clone(),
                    mirrors: f.mirrors.iter().map(|m| secrets_free_url(m)).collect(),
                    // A file of ranges keeps them (its local layout); an on-demand file
                    // stays on demand, its requests the new owner's to make.
                    ranges: if f.ranges.on_demand {
                        Vec::new()
                    } else {
                        f.ranges.ranges.clone()
                    },
                    on_demand: f.ranges.on_demand,
                })
                .collect(),
            changes: Some(changes),
            umask: o.umask,
            resume: false,
        };
        Ok((e.view(), new))
    }

    /// Step 2, in the administrator's worker: creates the handed-over job as `caller`'s,
    /// with its id, suspended. Refused when this worker already has a job of that id.
    pub async fn create_taken_job(
        &self,
        caller: &Caller,
        id: Uuid,
        spec: NewJob,
    ) -> Result<JobView, ServiceError> {
        self.may_take_ownership(caller)?;
        self.create_job_with_id(caller, spec, Some(id)).await
    }

    /// Step 3, in the owner's worker: cancels job `id` (its part files deleted as the
    /// owner) and removes it from this worker's store, for administrator `caller` who now
    /// owns its copy.
    pub async fn release_job(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        self.may_take_ownership(caller)?;
        let owner = self.acting_owner(caller, id);
        {
            let inner = self.lock();
            let e = entry(&inner, owner, id, "hand over")?;
            if e.job.state.is_final() {
                return Err(final_state_error(id, e.job.state, "hand over"));
            }
        }
        let view = self.cancel(owner, id).await?;
        if view.job.finishing.is_none() {
            self.purge(vec![id]).await;
        }
        tracing::info!(
            admin_uid = caller.uid,
            owner_uid = owner,
            job = %id,
            "administrator uid {} took over job {id} of uid {owner}: it is theirs now",
            caller.uid
        );
        self.report_unfinished();
        Ok(())
    }

    /// Undoes step 2 when step 3 failed: the job created for `caller` goes again.
    pub async fn undo_taken_job(&self, caller: &Caller, id: Uuid) {
        if self.cancel(caller.uid, id).await.is_ok() {
            self.purge(vec![id]).await;
        }
        self.report_unfinished();
    }
}

/// True when a header's value would be shown masked (by its name or its value's scheme).
fn shown_masked(name: &str, value: &str) -> bool {
    crate::model::shown_header(name, value, false) != format!("{name}: {value}")
        || mask_url(value) != value
}
