//! Activation: starting a registered handler and waiting for it to register its class
//! object (BITS's `CoCreateInstance` of an out-of-process server).

use std::sync::Arc;

use super::channel::Channel;
use super::Notifier;
use crate::model::HandlerRecord;
use crate::owner::{Output, Owner};

/// Starts `handler` as `owner` and waits (bounded by the activation timeout) until it
/// registers a class object for its class; returns that object.
pub async fn activate(
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
    let deadline = tokio::time::Instant::now() + n.settings.activation_timeout;
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
                break Err(format!(
                    "the handler {program} of class {class} did not register its class object within {} s",
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
