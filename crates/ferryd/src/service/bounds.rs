//! What one user may make the daemon keep: a job's headers (`max_header_bytes`), the
//! handlers they register (`max_handlers_per_user`), their final jobs
//! (`max_final_jobs_per_user`) and the store space their jobs take
//! (`max_store_bytes_per_user`). A refusal is `RESOURCE_EXHAUSTED` naming the key and the
//! file to raise it in. Final jobs are not refused but leave early, oldest first: a user's
//! everyday `ferry get`s (each a job completed at once) never block their next one, and
//! the store stays bounded all the same. (A worker of the system-wide daemon holds one
//! user's jobs only, so these are per user there; in a per-user daemon they bound the
//! daemon.)

use std::collections::HashMap;

use uuid::Uuid;

use super::state::Inner;
use super::{Service, ServiceError};

impl Service {
    /// Refuses headers whose names and values together pass `max_header_bytes`.
    pub(super) fn check_header_bytes(
        &self,
        headers: &[(String, String)],
    ) -> Result<(), ServiceError> {
        let bytes: u64 = headers
            .iter()
            .map(|(n, v)| (n.len() + v.len() + 4) as u64)
            .sum();
        let limit = self.config.max_header_bytes;
        if bytes > limit {
            return Err(self.limit_refusal(
                format!("the job's headers take {bytes} bytes"),
                "max_header_bytes",
                limit as usize,
                "send fewer or shorter headers",
            ));
        }
        Ok(())
    }

    /// Refuses a new handler of `owner` past `max_handlers_per_user` (one replacing the
    /// handler of the same class is not new).
    pub(super) fn check_handler_room(
        &self,
        inner: &Inner,
        owner: u32,
        class: Uuid,
    ) -> Result<(), ServiceError> {
        if inner.handlers.contains_key(&(class, owner)) {
            return Ok(());
        }
        let mine = inner.handlers.keys().filter(|(_, o)| *o == owner).count();
        let limit = self.config.max_handlers_per_user;
        if mine >= limit {
            return Err(self.limit_refusal(
                format!("you have {mine} handlers registered"),
                "max_handlers_per_user",
                limit,
                "unregister some first (`ferry handler unregister CLASS`)",
            ));
        }
        Ok(())
    }

    /// The oldest final jobs of each owner past `max_final_jobs_per_user` leave the store.
    pub(crate) async fn trim_final_jobs(&self) {
        let keep = self.config.max_final_jobs_per_user;
        if keep == 0 {
            return;
        }
        let excess =
            {
                let inner = self.lock();
                let mut finals: HashMap<u32, Vec<(i64, Uuid)>> = HashMap::new();
                for e in inner.jobs.values().filter(|e| {
                    e.job.state.is_final() && e.run.is_none() && e.job.finishing.is_none()
                }) {
                    finals
                        .entry(e.job.owner_uid)
                        .or_default()
                        .push((e.clock.touched, e.job.id));
                }
                for (id, a) in &inner.archived {
                    finals
                        .entry(a.owner_uid)
                        .or_default()
                        .push((a.touched, *id));
                }
                let mut excess = Vec::new();
                for (owner, mut jobs) in finals {
                    if jobs.len() <= keep {
                        continue;
                    }
                    jobs.sort_unstable();
                    let n = jobs.len() - keep;
                    tracing::info!(
                        owner_uid = owner,
                        removed = n,
                        "uid {owner} has more final jobs than max_final_jobs_per_user ({keep}); \
                     the oldest leave before their retention is over"
                    );
                    excess.extend(jobs.into_iter().take(n).map(|(_, id)| id));
                }
                excess
            };
        self.purge(excess).await;
    }

    /// Makes sure the store has room for a change: past `max_store_bytes_per_user`, the
    /// oldest final jobs leave (half of them at most, one round); still past it, the
    /// change is refused.
    pub(super) async fn check_store_room(&self) -> Result<(), ServiceError> {
        let limit = self.config.max_store_bytes_per_user;
        if limit == 0 {
            return Ok(());
        }
        let used = |svc: &Service| svc.store.used_bytes().unwrap_or(0);
        if used(self) <= limit {
            return Ok(());
        }
        let oldest: Vec<Uuid> = {
            let inner = self.lock();
            let mut finals: Vec<(i64, Uuid)> = inner
                .archived
                .iter()
                .map(|(id, a)| (a.touched, *id))
                .collect();
            finals.sort_unstable();
            let half = finals.len().div_ceil(2);
            finals.into_iter().take(half).map(|(_, id)| id).collect()
        };
        if !oldest.is_empty() {
            tracing::info!(
                removed = oldest.len(),
                "the store is past max_store_bytes_per_user ({limit} bytes); the oldest final jobs leave"
            );
            self.purge(oldest).await;
        }
        let now = used(self);
        if now > limit {
            return Err(self.limit_refusal(
                format!("your jobs take {now} bytes of the store"),
                "max_store_bytes_per_user",
                limit as usize,
                "cancel or complete jobs you no longer need",
            ));
        }
        Ok(())
    }
}
