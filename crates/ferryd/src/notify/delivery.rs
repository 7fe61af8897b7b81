//! The delivery task of one job: takes its notifications in order and delivers each to
//! the job's callback object, else its class object (activating the class's handler when
//! none is live), else its notify command; failures are retried after the job's minimum
//! retry delay (on the monotonic clock). Each call and command holds one of its user's
//! permits (`limits.rs`) while it runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::host::NotifyHost;
use super::{activation, command, CallbackMethod, Item, Notifier};
use crate::model::{now_ms, FileView, JobState, JobView, NotifyFlags, NotifyMethod, OutboxRecord};

enum Attempt {
    Delivered,
    /// Nobody can take it now; wait for a receiver to appear.
    Parked,
    Failed {
        error: String,
        command_only: bool,
    },
}

/// Whether an entry is still due: the job is still in the state that made it due, and
/// its flags still select the event (for every receiver, the notify command included).
fn still_due(view: &JobView, r: &OutboxRecord) -> bool {
    let flags = view.job.notify_flags;
    if flags.contains(NotifyFlags::DISABLE) || !flags.contains(selecting_flag(r.method)) {
        return false;
    }
    match r.method {
        NotifyMethod::JobTransferred => view.job.state == JobState::Transferred,
        NotifyMethod::JobError => view.job.state == JobState::Error,
        NotifyMethod::FileTransferred => !view.job.state.is_final(),
    }
}

/// The notify flag that selects `m`.
fn selecting_flag(m: NotifyMethod) -> NotifyFlags {
    match m {
        NotifyMethod::JobTransferred => NotifyFlags::JOB_TRANSFERRED,
        NotifyMethod::JobError => NotifyFlags::JOB_ERROR,
        NotifyMethod::FileTransferred => NotifyFlags::FILE_TRANSFERRED,
    }
}

fn method_of(m: NotifyMethod) -> CallbackMethod {
    match m {
        NotifyMethod::JobTransferred => CallbackMethod::JobTransferred,
        NotifyMethod::JobError => CallbackMethod::JobError,
        NotifyMethod::FileTransferred => CallbackMethod::FileTransferred,
    }
}

/// Delivers the notifications of `job` until none is left.
pub async fn run(n: Arc<Notifier>, job: Uuid, kick: Arc<Notify>) {
    loop {
        let Some(item) = n.next_item(job) else {
            return;
        };
        let Some(host) = n.host() else {
            return;
        };
        let Some((view, files)) = host.job(job) else {
            // The job was purged: nothing is due any more.
            if let Item::Entry { record, .. } = &item {
                n.remove_entry(job, record.id);
                host.dropped(record.id);
            }
            continue;
        };
        match item {
            Item::Modification => {
                // `job_modification` calls for one job are at least its minimum
                // notification interval apart (BITS's MINIMUM_NOTIFICATION_INTERVAL_MS,
                // 500 ms unless the job sets one), across runs of this task. The wait
                // holds back nothing else: an entry that comes meanwhile goes first.
                let interval = view.job.options.notification_interval();
                if let Some(wait) = n.modification_wait(job, interval) {
                    n.requeue_modification(job);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = kick.notified() => {}
                    }
                    continue;
                }
                n.note_modification(job);
                let Some((view, _)) = host.job(job) else {
                    continue;
                };
                if view.job.notify_flags.contains(NotifyFlags::DISABLE)
                    || !view
                        .job
                        .notify_flags
                        .contains(NotifyFlags::JOB_MODIFICATION)
                {
                    continue;
                }
                let target = n.interface_of(job, view.job.owner_uid).or_else(|| {
                    view.job
                        .notification_class
                        .and_then(|c| n.class_object(view.job.owner_uid, c))
                });
                if let Some((ch, obj)) = target {
                    let _permit = n.limits.acquire(view.job.owner_uid).await;
                    let r = ch
                        .invoke(
                            obj,
                            CallbackMethod::JobModification,
                            view.clone(),
                            None,
                            n.settings.callback_timeout,
                        )
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(%job, "job_modification not delivered: {e}");
                    }
                }
            }
            Item::FileRanges { index, ranges } => {
                let flags = view.job.notify_flags;
                if flags.contains(NotifyFlags::DISABLE)
                    || !flags.contains(NotifyFlags::FILE_RANGES_TRANSFERRED)
                {
                    continue;
                }
                let file = files.iter().find(|f| f.file.index == index).cloned();
                let target = n.interface_of(job, view.job.owner_uid).or_else(|| {
                    view.job
                        .notification_class
                        .and_then(|c| n.class_object(view.job.owner_uid, c))
                });
                if let Some((ch, obj)) = target {
                    let _permit = n.limits.acquire(view.job.owner_uid).await;
                    let r = ch
                        .invoke_with_ranges(
                            obj,
                            CallbackMethod::FileRangesTransferred,
                            view.clone(),
                            file,
                            ranges,
                            n.settings.callback_timeout,
                        )
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(%job, "file_ranges_transferred not delivered: {e}");
                    }
                }
            }
            Item::Entry {
                mut record,
                command_only,
                not_before,
            } => {
                if !still_due(&view, &record) {
                    n.remove_entry(job, record.id);
                    host.dropped(record.id);
                    continue;
                }
                if let Some(at) = not_before.filter(|at| *at > Instant::now()) {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = kick.notified() => {}
                    }
                    continue;
                }
                let file = record
                    .file_index
                    .and_then(|i| files.iter().find(|f| f.file.index == i));
                match attempt(&n, host.as_ref(), &view, file, &record, command_only).await {
                    Attempt::Delivered => {
                        n.remove_entry(job, record.id);
                        host.delivered(job, record.id);
                    }
                    Attempt::Parked => {
                        kick.notified().await;
                    }
                    Attempt::Failed {
                        error,
                        command_only,
                    } => {
                        tracing::info!(%job, method = %record.method, "notification not delivered: {error}");
                        let delay = Duration::from_secs(view.job.min_retry_delay_secs.max(1));
                        record.attempts += 1;
                        record.last_error = error.clone();
                        // The wall-clock time is for people and the store; the wait runs
                        // on the monotonic clock.
                        record.next_attempt_ms = now_ms() + delay.as_millis() as i64;
                        n.update_entry(&record, command_only, Instant::now() + delay);
                        host.not_delivered(&record, &error);
                    }
                }
            }
        }
    }
}

async fn run_command(n: &Notifier, host: &dyn NotifyHost, view: &JobView) -> Attempt {
    let owner = host.owner(&view.job);
    let _permit = n.limits.acquire(view.job.owner_uid).await;
    match command::run(
        &owner,
        &view.job.notify_command,
        view.job.id,
        view.job.state,
        &n.settings.command_log,
        n.settings.command_timeout,
    )
    .await
    {
        Ok(()) => Attempt::Delivered,
        Err(error) => Attempt::Failed {
            error,
            command_only: true,
        },
    }
}

async fn attempt(
    n: &Arc<Notifier>,
    host: &dyn NotifyHost,
    view: &JobView,
    file: Option<&FileView>,
    record: &OutboxRecord,
    command_only: bool,
) -> Attempt {
    let has_command =
        !view.job.notify_command.is_empty() && record.method != NotifyMethod::FileTransferred;
    if command_only && has_command {
        return run_command(n, host, view).await;
    }
    let uid = view.job.owner_uid;
    let wants_callback = view
        .job
        .notify_flags
        .contains(selecting_flag(record.method));
    let mut target = if wants_callback {
        n.interface_of(view.job.id, uid).or_else(|| {
            view.job
                .notification_class
                .and_then(|c| n.class_object(uid, c))
        })
    } else {
        None
    };
    if target.is_none() && wants_callback {
        if let Some(class) = view.job.notification_class {
            match host.handler(class, uid) {
                Some(h) => match activation::class_object(n, &host.owner(&view.job), &h).await {
                    Ok(obj) => target = Some(obj),
                    Err(e) if has_command => {
                        tracing::info!(job = %view.job.id, "activation failed ({e}); running the notify command");
                        return run_command(n, host, view).await;
                    }
                    Err(error) => {
                        return Attempt::Failed {
                            error,
                            command_only: false,
                        }
                    }
                },
                None if has_command => return run_command(n, host, view).await,
                None => {
                    return Attempt::Failed {
                        error: format!(
                            "no handler is registered for notification class {class} \
                             (RegisterHandler registers one)"
                        ),
                        command_only: false,
                    }
                }
            }
        }
    }
    match target {
        Some((ch, obj)) => {
            let permit = n.limits.acquire(uid).await;
            let r = ch
                .invoke(
                    obj,
                    method_of(record.method),
                    view.clone(),
                    file.cloned(),
                    n.settings.callback_timeout,
                )
                .await;
            drop(permit);
            match r {
                Ok(()) => Attempt::Delivered,
                // BITS's rule: a failed callback falls back to the command, once, and the
                // method is not called again for this event.
                Err(e) if has_command => {
                    tracing::info!(job = %view.job.id, "callback failed ({e}); running the notify command");
                    run_command(n, host, view).await
                }
                Err(error) => Attempt::Failed {
                    error,
                    command_only: false,
                },
            }
        }
        None if has_command => run_command(n, host, view).await,
        None => Attempt::Parked,
    }
}
