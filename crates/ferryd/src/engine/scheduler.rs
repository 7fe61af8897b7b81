//! The scheduler: starts queued jobs by priority (foreground at once, the others up to the
//! configured number of concurrent jobs, higher first, in arrival order within one), and
//! moves `transient_error` jobs back to the queue when their retry time comes.

use std::sync::Arc;
use std::time::Duration;

use crate::service::Service;

/// Runs until the daemon shuts down.
pub async fn run(svc: Arc<Service>) {
    loop {
        let next_retry = svc.schedule();
        let sleep = next_retry.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = svc.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = svc.shutdown.cancelled() => break,
        }
    }
}
