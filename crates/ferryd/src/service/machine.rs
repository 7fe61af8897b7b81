//! What a worker of the system-wide daemon shares with the rest of the machine, through
//! the broker: the machine's job count (`max_jobs_per_machine`), and whether the worker
//! has anything left to do (an idle worker leaves). The port [`Machine`] is owned here;
//! `privsep/worker.rs` implements it over the worker's control link. The per-user daemon
//! has none: its own counts are the machine's.

use std::sync::Arc;

use super::{Service, ServiceError};
use crate::model::Caller;

/// The machine, as a worker of the system-wide daemon sees it.
#[async_trait::async_trait]
pub trait Machine: Send + Sync + 'static {
    /// Counts `jobs` more jobs of this worker's user (who has `unfinished_now`) against
    /// the machine's limit; refused when it would pass it, unless the caller is exempt
    /// (root, administrators), which the broker decides from what it saw of the caller.
    async fn reserve_jobs(
        &self,
        caller: &Caller,
        jobs: u32,
        unfinished_now: u64,
    ) -> Result<(), ServiceError>;
    /// This worker's user has `jobs` jobs not yet acknowledged or cancelled now.
    fn unfinished(&self, jobs: u64);
}

impl Service {
    /// Connects the service to the machine's broker (a worker, at start-up).
    pub fn attach_machine(&self, machine: Arc<dyn Machine>) {
        let _ = self.machine.set(machine);
        self.report_unfinished();
    }

    /// True for a worker of the system-wide daemon connected to its broker.
    pub(super) fn on_a_shared_machine(&self) -> bool {
        self.machine.get().is_some()
    }

    /// Counts a new job against the machine's limit before it is made (a worker).
    pub(super) async fn reserve_job(&self, caller: &Caller) -> Result<(), ServiceError> {
        let Some(m) = self.machine.get() else {
            return Ok(());
        };
        let now = self.lock().unfinished_total() as u64;
        m.reserve_jobs(caller, 1, now).await
    }

    /// Tells the broker how many unfinished jobs this worker has (after a change).
    pub fn report_unfinished(&self) {
        if let Some(m) = self.machine.get() {
            m.unfinished(self.lock().unfinished_total() as u64);
        }
    }

    /// True when the daemon has nothing to do by itself: no job waits to run, runs or
    /// waits to retry, no notification waits, and no complete or cancel runs. A worker of
    /// the system-wide daemon with no client connected leaves then (its user's next connection starts it again; the broker
    /// starts every user's worker at boot, which finishes a complete or cancel cut short).
    pub fn is_idle(&self) -> bool {
        let busy = self
            .lock()
            .jobs
            .values()
            .any(|e| e.job.state.is_active() || e.run.is_some() || e.job.finishing.is_some());
        !busy && self.notifier.is_idle()
    }
}

impl Service {
    /// Background runs start only within `granted` of the machine's transfer slots (the
    /// broker shares them among the users with work).
    pub fn set_machine_slots(&self, granted: u32) {
        self.engine.set_machine_slots(granted);
    }

    /// How many of the machine's transfer slots this worker would use now, as it changes.
    pub fn slots_wanted(&self) -> tokio::sync::watch::Receiver<u32> {
        self.engine.slots_wanted()
    }
}
