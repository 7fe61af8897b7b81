//! Who may do what to whose jobs, and the limits.
//!
//! Every job belongs to the uid that created it, and a user reaches only their own (a
//! job of another uid is reported as not found). In the system-wide daemon, root and the
//! members of the admin group (`admin_group`, default `ferry-admin`) are administrators:
//! they see every user's jobs (listings with `all_users`, queries) and may suspend,
//! resume, cancel and complete them, add files to them and change their properties
//! (BITS lets administrators do the same); each such action on another user's job is
//! logged with who did it. A notify command is the one property they may not set on
//! another's job: it would run a program of their choosing as the owner. They are also exempt from the limits (`max_jobs_per_user`,
//! `max_jobs_per_machine`, `max_files_per_job`). The work of an administrator's action is
//! still done as the job's owner (the files of a job completed by root belong to its
//! owner). The per-user daemon has no administrators: it serves its user only.

use uuid::Uuid;

use super::commands::CompleteOutcome;
use super::state::Inner;
use super::{Caller, JobView, Scope, Service, ServiceError};

impl Service {
    /// True when `caller` administers the system-wide daemon: root, or a member (by its
    /// primary or a supplementary group at the time it connected) of the admin group, or
    /// an administrator the broker vouched for on this connection. (A worker's own
    /// answer matters only for its user's jobs; another user's are reached only through
    /// the broker, which checks again what it saw of the caller.)
    pub fn is_admin(&self, caller: &Caller) -> bool {
        self.config.is_system()
            && (caller.vouched
                || caller.uid == 0
                || self.admin_gid.is_some_and(|g| caller.in_group(g)))
    }

    /// Whose jobs the caller's queries and event queries cover: everyone's for an
    /// administrator, else the caller's own.
    pub fn scope_of(&self, caller: &Caller) -> Scope {
        if self.is_admin(caller) {
            Scope::Everyone
        } else {
            Scope::Uid(caller.uid)
        }
    }

    /// Whose jobs a listing with `all_users` covers: refused to anyone but an
    /// administrator.
    pub fn all_users_scope(&self, caller: &Caller) -> Result<Scope, ServiceError> {
        if self.is_admin(caller) {
            return Ok(Scope::Everyone);
        }
        Err(ServiceError::PermissionDenied(if self.config.is_system() {
            format!(
                "only root and the members of group '{}' may see every user's jobs; \
                 list your own without --all-users",
                self.config.admin_group
            )
        } else {
            "this per-user ferryd serves one user: list without --all-users \
             (every user's jobs are in the system-wide ferryd, `ferry --system`)"
                .into()
        }))
    }

    /// The uid whose job `id` the caller acts on: the job's owner when the caller is an
    /// administrator and the job exists, else the caller (who reaches only their own).
    pub fn acting_owner(&self, caller: &Caller, id: Uuid) -> u32 {
        if !self.is_admin(caller) {
            return caller.uid;
        }
        let inner = self.lock();
        match inner.jobs.get(&id) {
            Some(e) => e.job.owner_uid,
            None => inner.archived.get(&id).map_or(caller.uid, |a| a.owner_uid),
        }
    }

    /// Logs an administrator's `action` on a job of another user (successful or not).
    fn audit<T>(
        &self,
        caller: &Caller,
        owner: u32,
        id: Uuid,
        action: &str,
        result: &Result<T, ServiceError>,
    ) {
        if owner == caller.uid {
            return;
        }
        match result {
            Ok(_) => tracing::info!(
                admin_uid = caller.uid,
                owner_uid = owner,
                job = %id,
                "administrator uid {} {action} job {id} of uid {owner}",
                caller.uid
            ),
            Err(e) => tracing::info!(
                admin_uid = caller.uid,
                owner_uid = owner,
                job = %id,
                "administrator uid {} could not {action} job {id} of uid {owner}: {e}",
                caller.uid
            ),
        }
    }

    /// [`Service::resume`] by `caller` (an administrator may resume anyone's job).
    pub async fn resume_as(&self, caller: &Caller, id: Uuid) -> Result<JobView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.resume(owner, id).await;
        self.audit(caller, owner, id, "resumed", &r);
        r
    }

    /// [`Service::suspend`] by `caller` (an administrator may suspend anyone's job).
    pub async fn suspend_as(&self, caller: &Caller, id: Uuid) -> Result<JobView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.suspend(owner, id).await;
        self.audit(caller, owner, id, "suspended", &r);
        r
    }

    /// [`Service::cancel`] by `caller` (an administrator may cancel anyone's job).
    pub async fn cancel_as(&self, caller: &Caller, id: Uuid) -> Result<JobView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.cancel(owner, id).await;
        self.audit(caller, owner, id, "cancelled", &r);
        self.report_unfinished();
        self.trim_final_jobs().await;
        r
    }

    /// [`Service::complete`] by `caller` (an administrator may complete anyone's job; the
    /// files are still moved as the owner).
    pub async fn complete_as(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<CompleteOutcome, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.complete(owner, id).await;
        self.audit(caller, owner, id, "completed", &r);
        self.report_unfinished();
        self.trim_final_jobs().await;
        r
    }

    /// [`Service::add_files`] by `caller`, logged when it is an administrator adding to
    /// another user's job (the files are checked and opened as the owner).
    pub async fn add_files_as(
        &self,
        caller: &Caller,
        id: Uuid,
        specs: Vec<super::FileSpec>,
    ) -> Result<Vec<super::FileView>, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.add_files(caller, id, specs).await;
        self.audit(caller, owner, id, "added files to", &r);
        r
    }

    /// [`Service::set_remote_name`] by `caller` (an administrator may change a URL of
    /// anyone's job; the job goes on as its owner's).
    pub async fn set_remote_name_as(
        &self,
        caller: &Caller,
        id: Uuid,
        index: u32,
        url: &str,
    ) -> Result<super::FileView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.set_remote_name(owner, id, index, url).await;
        self.audit(caller, owner, id, "changed a URL of", &r);
        r
    }

    /// [`Service::replace_remote_prefix`] by `caller` (an administrator may move
    /// anyone's job to another server).
    pub async fn replace_remote_prefix_as(
        &self,
        caller: &Caller,
        id: Uuid,
        old: &str,
        new: &str,
    ) -> Result<(JobView, u32), ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = self.replace_remote_prefix(owner, id, old, new).await;
        self.audit(caller, owner, id, "replaced a URL prefix of", &r);
        r
    }

    /// [`Service::set_properties`] by `caller`: an administrator may change another
    /// user's job (files such as the CA and reply file are checked as the owner), except
    /// its notify command, which would run as the owner.
    pub async fn set_properties_as(
        &self,
        caller: &Caller,
        id: Uuid,
        changes: super::JobChanges,
    ) -> Result<JobView, ServiceError> {
        let owner = self.acting_owner(caller, id);
        let r = if owner != caller.uid
            && changes
                .notify_command
                .as_ref()
                .is_some_and(|c| !c.is_empty())
        {
            Err(ServiceError::PermissionDenied(format!(
                "job {id} belongs to uid {owner}: its notify command would run as that user, \
                 so only they may set it (other properties an administrator may change)"
            )))
        } else {
            self.set_properties(owner, id, changes).await
        };
        self.audit(caller, owner, id, "changed the properties of", &r);
        r
    }

    /// Refuses a `Shutdown` from anyone but root in the system-wide daemon (the machine's
    /// daemon is stopped by its service manager); the per-user daemon's user may.
    pub fn may_shut_down(&self, caller: &Caller) -> Result<(), ServiceError> {
        if self.config.is_system() && caller.uid != 0 {
            return Err(ServiceError::PermissionDenied(format!(
                "only root may stop the system-wide ferryd (`systemctl stop ferryd`); you are uid {}",
                caller.uid
            )));
        }
        Ok(())
    }

    /// True when the limits do not apply to `caller` (administrators).
    pub(super) fn exempt_from_limits(&self, caller: &Caller) -> bool {
        self.is_admin(caller)
    }

    /// Refuses a new job of `owner` when it would pass `max_jobs_per_user` or
    /// `max_jobs_per_machine` (in a worker of the system-wide daemon, the machine's
    /// count is the broker's: see [`Service::reserve_job`]).
    pub(super) fn check_job_limits(&self, inner: &Inner, owner: u32) -> Result<(), ServiceError> {
        let mine = inner.unfinished_of(owner);
        if mine >= self.config.max_jobs_per_user {
            return Err(self.limit_refusal(
                format!("you have {mine} jobs not yet completed or cancelled"),
                "max_jobs_per_user",
                self.config.max_jobs_per_user,
                "complete or cancel some first",
            ));
        }
        let all = inner.unfinished_total();
        if !self.on_a_shared_machine() && all >= self.config.max_jobs_per_machine {
            return Err(self.limit_refusal(
                format!("this machine has {all} jobs not yet completed or cancelled"),
                "max_jobs_per_machine",
                self.config.max_jobs_per_machine,
                "try again once some are done",
            ));
        }
        Ok(())
    }

    /// The refusal of a request that passes the limit `key` (`limit`).
    pub(super) fn limit_refusal(
        &self,
        what: String,
        key: &str,
        limit: usize,
        advice: &str,
    ) -> ServiceError {
        ServiceError::ResourceExhausted(format!(
            "{what}, the limit is {limit} ({key} in {}): {advice}, or have {key} raised there",
            self.config.source.display()
        ))
    }
}
