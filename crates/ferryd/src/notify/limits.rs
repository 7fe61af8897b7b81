//! The limit on notifications in flight per user (`max_notifications_per_user`, four as in
//! BITS): every callback call, notify command and handler start holds a permit while it
//! runs, so ten thousand due notifications never become ten thousand calls or processes
//! at once.
//!
//! May use: tokio. Nothing else of the daemon.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One semaphore per user, made on first use.
pub(crate) struct UserLimits {
    per_user: usize,
    users: Mutex<HashMap<u32, Arc<Semaphore>>>,
}

impl UserLimits {
    /// At most `per_user` (at least one) notifications in flight per user.
    pub(crate) fn new(per_user: usize) -> UserLimits {
        UserLimits {
            per_user: per_user.max(1),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a free place among `uid`'s notifications in flight; the place is held
    /// until the permit is dropped.
    pub(crate) async fn acquire(&self, uid: u32) -> OwnedSemaphorePermit {
        let sem = self
            .users
            .lock()
            .entry(uid)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone();
        sem.acquire_owned()
            .await
            .expect("the semaphore of a user is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_user_gets_at_most_its_permits_and_others_are_not_held_up() {
        let limits = UserLimits::new(2);
        let a = limits.acquire(1).await;
        let _b = limits.acquire(1).await;
        assert!(
            limits.acquire(1).now_or_never().is_none(),
            "a third permit for user 1 must wait"
        );
        assert!(
            limits.acquire(2).now_or_never().is_some(),
            "another user is not held up by user 1"
        );
        drop(a);
        assert!(
            limits.acquire(1).now_or_never().is_some(),
            "a freed permit is handed on"
        );
    }
}
