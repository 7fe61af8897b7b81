//! Activation: starting a registered handler and waiting for it to register its class
//! object (BITS's `CoCreateInstance` of an out-of-process server).
//!
//! One start per (user, class) at a time: the first delivery that finds no class object
//! starts the handler; every other delivery of that class waits (bounded by the
//! activation timeout) for that start to end and is then handed the object it registered,
//! as COM hands later calls to the object its one server registered. A handler that exits
//! (or times out) without registering is not started again at once: the next start waits
//! 1 s, then 2, 4, … up to 5 min; deliveries meanwhile fail with the last failure and are
//! retried after their job's retry delay. A new registration of the handler clears that.
//!
//! A handler that does not register within the timeout is killed with its process
//! group; every handler is reaped whenever it exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::channel::Channel;
use super::Notifier;
use crate::model::HandlerRecord;
use crate::owner::{kill_group, Output, Owner};

/// The wait before the first restart of a handler that failed to register.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between starts of a handler that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How the starts of one class went.
#[derive(Default)]
struct Backoff {
    /// Starts in a row that ended without a class object.
    failures: u32,
    /// No start before this.
    not_before: Option<Instant>,
    /// Why the last start failed.
    last_error: String,
}

impl Backoff {
    fn failed(&mut self, error: String) {
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST_BACKOFF
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(MAX_BACKOFF);
        self.not_before = Some(Instant::now() + delay);
        self.last_error = error;
    }
}

/// One (user, class)'s gate: held by the delivery starting its handler; holds the backoff.
type Gate = Arc<tokio::sync::Mutex<Backoff>>;

/// The activation state of every (user, class): who is starting its handler, and the
/// backoff after failed starts.
#[derive(Default)]
pub(crate) struct Activations {
    classes: Mutex<HashMap<(u32, Uuid), Gate>>,
}

impl Activations {
    fn gate(&self, uid: u32, class: Uuid) -> Gate {
        self.classes.lock().entry((uid, class)).or_default().clone()
    }

    /// The handler of `(uid, class)` was registered again: a start may happen at once.
    pub(crate) fn reset(&self, uid: u32, class: Uuid) {
        self.classes.lock().remove(&(uid, class));
    }
}

/// The live class object of `handler`'s class, starting the handler when there is none
/// (one start per class at a time; see the module doc).
pub(crate) async fn class_object(
    n: &Notifier,
    owner: &Owner,
    handler: &HandlerRecord,
) -> Result<(Arc<Channel>, u64), String> {
    let (uid, class) = (handler.owner_uid, handler.class);
    if let Some(obj) = n.class_object(uid, class) {
        return Ok(obj);
    }
    let gate = n.activations.gate(uid, class);
    let wait = n.settings.activation_timeout;
    let Ok(mut backoff) = tokio::time::timeout(wait, gate.lock()).await else {
        return Err(format!(
            "the handler of class {class} is being started and did not register its class \
             object within {} s",
            wait.as_secs()
        ));
    };
    // The start this delivery waited for may have registered the object.
    if let Some(obj) = n.class_object(uid, class) {
        return Ok(obj);
    }
    let now = Instant::now();
    if let Some(until) = backoff.not_before.filter(|t| *t > now) {
        return Err(format!(
            "{}; it is not started again for {} s",
            backoff.last_error,
            until.duration_since(now).as_secs_f64().ceil() as u64
        ));
    }
    let result = {
        let _permit = n.limits.acquire(uid).await;
        start(n, owner, handler).await
    };
    match &result {
        Ok(_) => *backoff = Backoff::default(),
        Err(e) => backoff.failed(e.clone()),
    }
    result
}

/// Starts `handler` as `owner` and waits (bounded by the activation timeout) until it
/// registers a class object for its class; returns that object.
async fn start(
    n: &Notifier,
    owner: &Owner,
    handler: &HandlerRecord,
) -> Result<(Arc<Channel>, u64), String> {
    let class = handler.class;
    let uid = handler.owner_uid;
    let program = handler
        .argv
        .first()
        .ok_or_else(|| format!("the handler of class {class} has no command"))?;
    let log = Output::AppendTo(n.settings.handler_log.clone());
    let mut cmd = owner
        .command(&handler.argv, handler.workdir.as_deref(), &log)
        .await
        .map_err(|e| format!("cannot start the handler {program} of class {class}: {e}"))?
        .ok_or_else(|| format!("the handler of class {class} has no command"))?;
    cmd.env("FERRY_SOCKET", &n.settings.socket_path)
        .env("FERRY_ACTIVATION_CLASS", class.to_string());
    tracing::info!(%class, program, "activating handler");
    let mut child = owner
        .spawn(&mut cmd, &log)
        .await
        .map_err(|e| format!("cannot start the handler {program} of class {class}: {e}"))?;
    let deadline = Instant::now() + n.settings.activation_timeout;
    let outcome = loop {
        let registered = n.class_registered.notified();
        tokio::pin!(registered);
        registered.as_mut().enable();
        if let Some(obj) = n.class_object(uid, class) {
            break Ok(obj);
        }
        tokio::select! {
            _ = &mut registered => {}
            status = child.wait() => {
                // It may have registered and exited at once; check once more.
                if let Some(obj) = n.class_object(uid, class) {
                    break Ok(obj);
                }
                break Err(match status {
                    Ok(s) => format!("the handler {program} of class {class} exited ({s}) without registering its class object"),
                    Err(e) => format!("the handler {program} of class {class} failed: {e}"),
                });
            }
            _ = tokio::time::sleep_until(deadline) => {
                // A handler that hangs is not left running: it and what it started go.
                if let Some(pid) = child.id() {
                    kill_group(pid);
                }
                break Err(format!(
                    "the handler {program} of class {class} did not register its class object \
                     within {} s and was killed",
                    n.settings.activation_timeout.as_secs()
                ));
            }
        }
    };
    // Reap the handler whenever it exits.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::default();
        // Each wait lies between `lo` (measured from after the call) and `hi` (from before).
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for _ in 0..12 {
            let before = Instant::now();
            b.failed("no".into());
            let after = Instant::now();
            let at = b.not_before.unwrap();
            lo.push(at.duration_since(after));
            hi.push(at.duration_since(before));
        }
        assert!(hi[0] >= FIRST_BACKOFF && lo[0] < FIRST_BACKOFF * 2);
        assert!(hi[1] >= FIRST_BACKOFF * 2 && lo[1] < FIRST_BACKOFF * 3);
        assert!(hi[2] >= FIRST_BACKOFF * 4 && lo[2] < FIRST_BACKOFF * 5);
        assert!(lo.iter().all(|w| *w <= MAX_BACKOFF));
        assert!(hi[11] >= MAX_BACKOFF - Duration::from_secs(1));
    }
}
