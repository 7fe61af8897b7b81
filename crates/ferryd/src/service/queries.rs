//! Queries over the service's jobs: the service is the [`Source`] of data queries (in
//! memory; a prefilter on the indexed columns skips final jobs without decoding them, or
//! without reading them from the store for those only there), and the facade calls the
//! rpc layer uses to plan and run queries.

use uuid::Uuid;

use super::state::final_view;
use super::{ErrorReason, JobView, Scope, Service, ServiceError};
use crate::model::{FileRecord, FileView, HandlerRecord, JobRecord};
use crate::query::exec::{self, EventPlan, Prefilter, QueryError, SelectPlan, Source};
use crate::query::schema::Obj;

impl From<QueryError> for ServiceError {
    fn from(e: QueryError) -> ServiceError {
        ServiceError::InvalidArgument(e.0)
    }
}

impl Source for Service {
    fn jobs(&self, scope: Scope, pre: &Prefilter) -> Vec<JobView> {
        let inner = self.lock();
        let (in_memory, stored) = inner.archived_split(|a| {
            scope.admits(a.owner_uid) && pre.admits(a.state, a.priority, a.owner_uid, a.created_ms)
        });
        let mut v: Vec<JobView> = inner
            .jobs
            .values()
            .filter(|e| {
                let j = &e.job;
                scope.admits(j.owner_uid)
                    && pre.admits(j.state, j.priority, j.owner_uid, j.created_ms)
            })
            .map(|e| e.view())
            .chain(
                in_memory
                    .into_iter()
                    .filter_map(|(id, a)| a.view(id, &self.store)),
            )
            .collect();
        drop(inner);
        // Final jobs only in the store: read outside the lock, in one pass when many.
        v.extend(
            self.stored_jobs(&stored)
                .into_iter()
                .map(|(job, files)| final_view(job, &files)),
        );
        v.sort_by_key(|v| (v.job.created_ms, v.job.id));
        v
    }

    fn files(&self, scope: Scope) -> Vec<FileView> {
        let inner = self.lock();
        let (in_memory, stored) = inner.archived_split(|a| scope.admits(a.owner_uid));
        let mut v: Vec<FileView> = inner
            .jobs
            .values()
            .filter(|e| scope.admits(e.job.owner_uid))
            .flat_map(|e| e.file_views())
            .chain(
                in_memory
                    .into_iter()
                    .flat_map(|(id, a)| a.file_views(id, &self.store)),
            )
            .collect();
        drop(inner);
        v.extend(
            self.stored_jobs(&stored)
                .into_iter()
                .flat_map(|(_, files)| files)
                .map(|f| FileView {
                    bytes_transferred: f.bytes_transferred,
                    file: f,
                }),
        );
        v
    }

    fn handlers(&self, scope: Scope) -> Vec<HandlerRecord> {
        let inner = self.lock();
        let mut v: Vec<HandlerRecord> = inner
            .handlers
            .values()
            .filter(|h| scope.admits(h.owner_uid))
            .cloned()
            .collect();
        v.sort_by_key(|h| (h.registered_ms, h.owner_uid));
        v
    }
}

impl Service {
    /// Final jobs `ids` read from the store (those it no longer has are left out, and a
    /// failing read is logged: a query shows what can be read).
    pub(crate) fn stored_jobs(&self, ids: &[Uuid]) -> Vec<(JobRecord, Vec<FileRecord>)> {
        if ids.is_empty() {
            return Vec::new();
        }
        self.store.load_jobs(ids).unwrap_or_else(|e| {
            tracing::warn!("reading final jobs from the store for a query failed: {e}");
            Vec::new()
        })
    }

    /// Parses and checks a data query.
    pub fn plan_select(&self, wql: &str) -> Result<SelectPlan, ServiceError> {
        exec::plan_select(wql).map_err(|e| match exec::is_event_query(wql) {
            Some(true) => ServiceError::from(e).marked(ErrorReason::NotADataQuery),
            _ => e.into(),
        })
    }

    /// Parses and checks an event query.
    pub fn plan_event(&self, wql: &str) -> Result<EventPlan, ServiceError> {
        exec::plan_event(wql).map_err(|e| match exec::is_event_query(wql) {
            Some(false) => ServiceError::from(e).marked(ErrorReason::NotAnEventQuery),
            _ => e.into(),
        })
    }

    /// Runs a data query over the objects in `scope`; objects come in a stable order.
    pub fn run_select(&self, scope: Scope, plan: &SelectPlan) -> Vec<Obj> {
        exec::run_select(self, scope, plan)
    }
}
