//! Facade methods the rpc layer needs beyond the commands: pages of the caller's jobs and
//! of a job's files.
//!
//! Kept in a file of their own so they can be folded into the facade later.

use uuid::Uuid;

use super::{FileView, JobView, Scope, Service, ServiceError};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in listing order.
    pub items: Vec<T>,
    /// More items follow the last one.
    pub more: bool,
}

impl Service {
    /// The jobs in `scope` in id order (ids are UUIDv7, so oldest first) after `after`,
    /// at most `limit` (at least 1); `all` includes final ones. Only the jobs of the page
    /// are built (an archived job is decoded only when it is on the page).
    pub fn list_jobs_page(
        &self,
        scope: Scope,
        all: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Page<JobView> {
        let limit = limit.max(1);
        let inner = self.lock();
        let live = inner
            .jobs
            .values()
            .filter(|e| scope.admits(e.job.owner_uid) && (all || !e.job.state.is_final()))
            .map(|e| e.job.id);
        let archived = inner
            .archived
            .iter()
            .filter(|(_, a)| all && scope.admits(a.owner_uid))
            .map(|(id, _)| *id);
        let mut ids: Vec<Uuid> = live
            .chain(archived)
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let items = ids
            .into_iter()
            .filter_map(|id| inner.view_in(scope, id))
            .collect();
        Page { items, more }
    }

    /// The files of the caller's job `id` whose index is past `after`, in index order, at
    /// most `limit` (at least 1).
    pub fn list_files_page(
        &self,
        owner: u32,
        id: Uuid,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Page<FileView>, ServiceError> {
        let limit = limit.max(1);
        let mut files: Vec<FileView> = self
            .list_files(owner, id)?
            .into_iter()
            .filter(|f| after.is_none_or(|a| f.file.index > a))
            .collect();
        files.sort_by_key(|f| f.file.index);
        let more = files.len() > limit;
        files.truncate(limit);
        Ok(Page { items: files, more })
    }
}
