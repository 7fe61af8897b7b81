//! What the commands clients send have in common: their arguments, the ownership check,
//! and [`Service::mutate`], which changes a job under the lock, queues the durable write
//! and returns after the write is committed. The commands themselves: `jobs.rs` (create,
//! add files, read), `control.rs` (resume, suspend, cancel, complete), `properties.rs`.

use uuid::Uuid;

use super::state::{Entry, Inner};
use super::{ChangeKind, ErrorReason, JobView, Service, ServiceError};
use crate::model::{JobState, JobType, Priority};
use crate::store::{Store, WriteError};

/// What `create_job` needs.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub display_name: String,
    pub description: String,
    pub job_type: JobType,
    pub priority: Priority,
    /// For upload jobs: `put` (default) or `tus`.
    pub upload_protocol: Option<String>,
    /// Files added at creation (checked as `add_files` checks them).
    pub files: Vec<FileSpec>,
    /// Properties set at creation (checked as `set_properties` checks them).
    pub changes: Option<JobChanges>,
    /// The creating process's umask: the mode of new destinations (`None`: ferryd's).
    pub umask: Option<u32>,
    /// Queued at once, in the same store transaction (it needs files).
    pub resume: bool,
}

/// One file to add to a job.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub remote_url: String,
    pub local_path: String,
    pub expected_sha256: Option<String>,
    /// More URLs of the same content, tried in order when the one in use fails for good.
    pub mirrors: Vec<String>,
    /// Only these ranges, packed in this order into the local file (BITS:
    /// `AddFileWithRanges`); empty: the whole file.
    pub ranges: Vec<crate::model::FileRange>,
    /// Nothing downloads until ranges are requested (BITS: on-demand mode).
    pub on_demand: bool,
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
    /// `Some(true)` makes every header's value write-only; `Some(false)` is refused on a
    /// job that has it.
    pub headers_write_only: Option<bool>,
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
    /// The job's part in peer caching.
    pub peers: Option<crate::model::PeerMode>,
    /// What the job does on a metered network (a shorthand for cost flags).
    pub on_metered: Option<crate::model::MeteredPolicy>,
    /// The network cost states the job transfers in (BITS: `BITS_JOB_PROPERTY_ID_COST_FLAGS`).
    pub cost_flags: Option<crate::model::CostFlags>,
    /// The job does not yield to other traffic (BITS: `BITS_COST_OPTION_IGNORE_CONGESTION`).
    pub ignore_congestion: Option<bool>,
    pub auto_complete: Option<bool>,
    pub insecure_tls: Option<bool>,
    pub keep_going: Option<bool>,
    /// What a redirect does (BITS's `BG_HTTP_REDIRECT_POLICY_*`).
    pub redirect_policy: Option<crate::model::RedirectPolicy>,
    /// Replaces the pinned public keys (`sha256//BASE64` each); `Some(vec![])` clears them.
    pub pinned_public_keys: Option<Vec<String>>,
    /// `Some("")` clears it.
    pub crl_file: Option<String>,
    /// `Some("")` clears it.
    pub client_certificate: Option<String>,
    /// `Some("")` clears it.
    pub client_key: Option<String>,
    /// `Some(None)` removes them.
    pub proxy_credentials: Option<Option<crate::model::ProxyCredentials>>,
    /// The largest file the job downloads (BITS's `MAX_DOWNLOAD_SIZE`); 0: no limit.
    pub max_download_size: Option<u64>,
    /// Milliseconds between two `job_modification` callbacks; 0: the default.
    pub minimum_notification_interval_ms: Option<u64>,
    /// The HTTP method (BITS's `SetHttpMethod`); `Some("")` restores the default.
    pub http_method: Option<String>,
}

/// The result of `complete`.
#[derive(Debug, Clone)]
pub struct CompleteOutcome {
    pub view: JobView,
    pub committed: u32,
    pub discarded: u32,
}

pub(super) fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!(
        "no job {id}: it never existed, was purged, or belongs to another user \
         (ListJobs with all = true lists yours)"
    ))
    .marked(ErrorReason::JobNotFound)
}

/// The caller's live job `id`. An archived (final) job is refused as final, for `verb`.
pub(super) fn entry<'a>(
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

pub(super) fn final_state_error(id: Uuid, state: JobState, verb: &str) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "cannot {verb} job {id}: it is already {state}, and {state} is final"
    ))
}

impl Service {
    /// Changes a job under the lock with `f` (which returns whether anything changed),
    /// then waits until the change is durable.
    ///
    /// `verb` words the refusal of a job already archived (final).
    pub(super) async fn mutate(
        &self,
        owner: u32,
        id: Uuid,
        verb: &str,
        f: impl FnOnce(&mut Inner, Uuid) -> Result<bool, ServiceError>,
    ) -> Result<JobView, ServiceError> {
        let (rx, view, undo) = {
            let mut inner = self.lock();
            let e = entry(&inner, owner, id, verb)?;
            let before = e.view();
            let undo = (e.job.clone(), e.clock);
            self.check_writable()?;
            if !f(&mut inner, id)? {
                return Ok(before);
            }
            let e = inner.jobs.get_mut(&id).expect("checked above");
            e.touch();
            let after = e.view();
            let rx = self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after.clone(), Some(before));
            (rx, after, undo)
        };
        if let Err(e) = Store::committed(rx).await {
            if matches!(e, WriteError::Unwritable(_)) {
                // Refused: the job is as the store and the client know it.
                self.revert(id, &view.job, undo.0, undo.1);
            }
            return Err(e.into());
        }
        Ok(view)
    }
}
