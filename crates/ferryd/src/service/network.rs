//! The service following the network: when the default route goes away, transfers to
//! remote servers stop at once with a "network unreachable" error (the job waits in
//! `transient_error`); when it returns, jobs waiting after a network failure are queued
//! at once instead of waiting out their retry delay. Transfers to loopback addresses are
//! left alone: they need no route.

use uuid::Uuid;

use super::state::Entry;
use super::{ChangeKind, Service};
use crate::engine::error::TransferError;
use crate::model::{is_loopback_url, ErrorContext, ErrorKind, JobState};
use crate::netwatch::Change;

/// True when a file still to transfer needs the network (where its URL in use led, or
/// one of its URLs, is not on this machine).
pub(super) fn needs_network(e: &Entry) -> bool {
    e.files.iter().filter(|f| !f.completed).any(|f| {
        !is_loopback_url(f.final_url.as_deref().unwrap_or(f.url_in_use()))
            || std::iter::once(&f.remote_url)
                .chain(&f.mirrors)
                .any(|u| !is_loopback_url(u))
    })
}

/// True when the job waits in `transient_error` after a failure of the network's.
fn waits_for_network(e: &Entry) -> bool {
    e.job.state == JobState::TransientError
        && e.job
            .error
            .as_ref()
            .and_then(|r| ErrorKind::from_code(&r.code))
            .is_some_and(ErrorKind::is_network)
}

impl Service {
    /// What the network watcher saw.
    pub async fn network_changed(&self, change: Change) {
        match change {
            Change::Lost => self.network_lost().await,
            Change::Returned => self.network_returned(),
        }
    }

    /// Stops every run that needs the network with a transient "network unreachable"
    /// error, and waits for the runs to checkpoint.
    async fn network_lost(&self) {
        let (stopped, outboxes) = {
            let mut inner = self.lock();
            let ids: Vec<Uuid> = inner
                .jobs
                .values()
                .filter(|e| {
                    e.run.is_some()
                        && matches!(e.job.state, JobState::Connecting | JobState::Transferring)
                        && needs_network(e)
                })
                .map(|e| e.job.id)
                .collect();
            let mut outboxes = Vec::new();
            for id in &ids {
                let err = TransferError::new(
                    ErrorContext::Transport,
                    ErrorKind::NetworkUnreachable,
                    "network unreachable: the machine has no default route any more; the job \
                     resumes as soon as the network returns"
                        .to_string(),
                );
                outboxes.push((*id, self.record_failure(&mut inner, *id, None, err)));
            }
            (ids, outboxes)
        };
        for (id, outbox) in outboxes {
            self.notifier.enqueue(id, outbox);
        }
        if !stopped.is_empty() {
            tracing::info!(jobs = stopped.len(), "network lost: transfers stopped");
        }
        futures::future::join_all(stopped.iter().map(|id| self.stop_run(*id))).await;
    }

    /// Queues at once every job waiting after a network failure.
    fn network_returned(&self) {
        let mut inner = self.lock();
        let ids: Vec<Uuid> = inner
            .jobs
            .values()
            .filter(|e| waits_for_network(e))
            .map(|e| e.job.id)
            .collect();
        for id in &ids {
            let before = inner.jobs[id].view();
            inner.set_state(*id, JobState::Queued);
            let after = inner.jobs[id].view();
            self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after, Some(before));
        }
        if !ids.is_empty() {
            tracing::info!(jobs = ids.len(), "network returned: retrying at once");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_need_no_network() {
        assert!(is_loopback_url("http://127.0.0.1:8080/x"));
        assert!(is_loopback_url("http://127.9.9.9/x"));
        assert!(is_loopback_url("https://[::1]/x"));
        assert!(is_loopback_url("http://LOCALHOST/x"));
        assert!(is_loopback_url("file:///tmp/x"));
        assert!(!is_loopback_url("http://10.0.0.2/x"));
        assert!(!is_loopback_url("https://example.org/x"));
    }
}
