//! The service following the network's cost: when the network becomes metered, the jobs
//! that pause then (their `on_metered` policy, else their priority: `normal` and `low`
//! pause, `foreground` and `high` go on) stop at once with their progress kept and wait in
//! `queued`, marked as waiting for an unmetered network; when it is unmetered again the
//! engine starts them by itself. Nothing fails and nothing is suspended: the user has
//! nothing to do.

use std::sync::Arc;

use uuid::Uuid;

use super::state::Inner;
use super::{ChangeKind, Service};
use crate::costwatch::{CostState, NetworkCost};
use crate::model::JobState;

impl Service {
    /// What the cost watcher keeps up to date.
    pub fn network_cost(&self) -> Arc<NetworkCost> {
        self.network_cost.clone()
    }

    /// Whether the network is metered now, and where that came from.
    pub fn cost_state(&self) -> CostState {
        self.network_cost.state()
    }

    /// The cost watcher saw a change: holds back (or releases) the jobs that pause on a
    /// metered network, and stops those of them that run, waiting for them to checkpoint.
    /// Reads the state now (two quick changes handled out of order end right).
    pub async fn metered_changed(&self) {
        let stopping = {
            let mut inner = self.lock();
            let metered = self.network_cost.state().metered;
            let changed = inner.set_metered(metered);
            let released = if metered { 0 } else { changed.len() };
            for id in changed {
                let view = inner.jobs[&id].view();
                self.emit(ChangeKind::Modified, view, None);
            }
            if released > 0 {
                tracing::info!(jobs = released, "network unmetered: waiting jobs start");
            }
            let ids: Vec<Uuid> = inner.jobs.keys().copied().collect();
            self.hold_running(&mut inner, &ids)
        };
        self.stop_held(stopping).await;
    }

    /// After a change of a job's priority or policy: stops its run if it now pauses on
    /// the metered network.
    pub(super) async fn enforce_metered(&self, id: Uuid) {
        let stopping = {
            let mut inner = self.lock();
            inner.refresh_hold(id);
            self.hold_running(&mut inner, &[id])
        };
        self.stop_held(stopping).await;
    }

    /// True when `job` may not start now (called as a run claims it): the network is
    /// metered and the job pauses then. It is queued again, held.
    pub(super) fn held_at_claim(&self, inner: &mut Inner, job: Uuid) -> bool {
        let held = inner.metered() && inner.jobs[&job].job.pauses_when_metered();
        if held {
            inner.set_state(job, JobState::Queued);
        }
        held
    }

    /// Moves the running jobs among `ids` that pause on a metered network, if it is
    /// metered, back to `queued` (held); returns them, for their runs to be stopped.
    fn hold_running(&self, inner: &mut Inner, ids: &[Uuid]) -> Vec<Uuid> {
        if !inner.metered() {
            return Vec::new();
        }
        let held: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| {
                inner.jobs.get(id).is_some_and(|e| {
                    e.run.is_some()
                        && matches!(e.job.state, JobState::Connecting | JobState::Transferring)
                        && e.job.pauses_when_metered()
                })
            })
            .collect();
        for id in &held {
            let before = inner.jobs[id].view();
            inner.set_state(*id, JobState::Queued);
            let after = inner.jobs[id].view();
            self.store.put_job(&after.job);
            self.emit(ChangeKind::Modified, after, Some(before));
        }
        held
    }

    async fn stop_held(&self, ids: Vec<Uuid>) {
        if ids.is_empty() {
            return;
        }
        tracing::info!(
            jobs = ids.len(),
            "network metered: background transfers wait"
        );
        futures::future::join_all(ids.iter().map(|id| self.stop_run(*id))).await;
    }
}
