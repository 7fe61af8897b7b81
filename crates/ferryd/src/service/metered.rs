//! The service following the network's cost: when its cost state changes (metered,
//! roaming, or back to unrestricted), the jobs whose cost flags do not allow the new state
//! (their `cost_flags`, else their `on_metered` shorthand, else their priority's default)
//! stop at once with their progress kept and wait in `queued`, marked as waiting
//! (`waiting_for_unmetered`); when the state allows them again the engine starts them by
//! itself. Nothing fails and nothing is suspended: the user has nothing to do.

use std::sync::Arc;

use uuid::Uuid;

use super::state::Inner;
use super::{ChangeKind, Service};
use crate::costwatch::{CostState, NetworkCost};
use crate::model::JobState;

impl Service {
    /// What the cost watchers keep up to date.
    pub fn network_cost(&self) -> Arc<NetworkCost> {
        self.network_cost.clone()
    }

    /// What the network costs now, and where that came from.
    pub fn cost_state(&self) -> CostState {
        self.network_cost.state()
    }

    /// A cost watcher saw a change: holds back (or releases) the jobs whose cost flags do
    /// not (or do) allow the network's state, and stops those of them that run, waiting for
    /// them to checkpoint. Reads the state now (two quick changes handled out of order end
    /// right).
    pub async fn cost_changed(&self) {
        let stopping = {
            let mut inner = self.lock();
            let cost = self.network_cost.state().state();
            let changed = inner.set_cost(cost);
            let mut released = 0;
            for id in changed {
                let entry = &inner.jobs[&id];
                if !entry.held_by_cost {
                    released += 1;
                }
                let view = entry.view();
                self.emit(ChangeKind::Modified, view, None);
            }
            if released > 0 {
                tracing::info!(
                    jobs = released,
                    network = cost.state_name(),
                    "the network's cost allows waiting jobs: they start"
                );
            }
            let ids: Vec<Uuid> = inner.jobs.keys().copied().collect();
            self.hold_running(&mut inner, &ids)
        };
        self.stop_held(stopping).await;
    }

    /// After a change of a job's priority or cost policy: stops its run if it may not
    /// transfer on the network as it is now.
    pub(super) async fn enforce_cost(&self, id: Uuid) {
        let stopping = {
            let mut inner = self.lock();
            inner.refresh_hold(id);
            self.hold_running(&mut inner, &[id])
        };
        self.stop_held(stopping).await;
    }

    /// True when `job` may not start now (called as a run claims it): its cost flags do not
    /// allow the network's state. It is queued again, held.
    pub(super) fn held_at_claim(&self, inner: &mut Inner, job: Uuid) -> bool {
        let held = inner.jobs[&job].job.waits_in(inner.cost());
        if held {
            inner.set_state(job, JobState::Queued);
        }
        held
    }

    /// Moves the running jobs among `ids` whose cost flags do not allow the network's
    /// state back to `queued` (held); returns them, for their runs to be stopped.
    fn hold_running(&self, inner: &mut Inner, ids: &[Uuid]) -> Vec<Uuid> {
        let cost = inner.cost();
        let held: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| {
                inner.jobs.get(id).is_some_and(|e| {
                    e.run.is_some()
                        && matches!(e.job.state, JobState::Connecting | JobState::Transferring)
                        && e.job.waits_in(cost)
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
            "the network's cost holds back transfers: they wait"
        );
        futures::future::join_all(ids.iter().map(|id| self.stop_run(*id))).await;
    }
}
