//! The service side of notifications: which notifications become due, handler
//! registrations, validation, and what the delivery tasks read.

use uuid::Uuid;

use super::state::Inner;
use super::{validate, ChangeKind, ErrorReason, FileView, Service, ServiceError};
use crate::model::{
    now_ms, ErrorContext, FileRecord, HandlerRecord, JobErrorRecord, JobRecord, JobState,
    NotifyFlags, NotifyMethod, OutboxRecord,
};
use crate::notify::NotifyHost;
use crate::store::Store;

impl Service {
    /// The outbox entries due because `job` entered `state` (`transferred` or `error`)
    /// and because `files` were transferred.
    pub(crate) fn due_notifications(
        &self,
        job: &JobRecord,
        state: Option<JobState>,
        files: &[u32],
    ) -> Vec<OutboxRecord> {
        let flags = job.notify_flags;
        if flags.contains(NotifyFlags::DISABLE) {
            return Vec::new();
        }
        let now = now_ms();
        let mut out = Vec::new();
        let mut push = |method, file_index| {
            out.push(OutboxRecord {
                id: self.notifier.next_outbox_id(),
                job_id: job.id,
                method,
                file_index,
                created_ms: now,
                attempts: 0,
                next_attempt_ms: now,
                last_error: String::new(),
            })
        };
        if flags.contains(NotifyFlags::FILE_TRANSFERRED) {
            for &i in files {
                push(NotifyMethod::FileTransferred, Some(i));
            }
        }
        // As in BITS, the flags select the events for every receiver, the notify
        // command included: a command runs for job_transferred or job_error only when the
        // flags ask for it.
        match state {
            Some(JobState::Transferred) if flags.contains(NotifyFlags::JOB_TRANSFERRED) => {
                push(NotifyMethod::JobTransferred, None)
            }
            Some(JobState::Error) if flags.contains(NotifyFlags::JOB_ERROR) => {
                push(NotifyMethod::JobError, None)
            }
            _ => {}
        }
        out
    }

    /// Writes a job, some of its files and new outbox entries in one transaction.
    pub(crate) fn persist_with_outbox(
        &self,
        job: &JobRecord,
        files: Vec<FileRecord>,
        outbox: &[OutboxRecord],
    ) -> crate::store::Committed {
        let job = job.clone();
        let outbox = outbox.to_vec();
        self.store.queue(move |tx| {
            crate::store::put_job_tx(tx, &job)?;
            for f in &files {
                crate::store::put_file_tx(tx, f)?;
            }
            for o in &outbox {
                crate::store::put_outbox_tx(tx, o)?;
            }
            Ok(())
        })
    }

    /// Records (or clears, with "") the last notification failure of a job.
    pub(crate) fn set_notification_error(&self, id: Uuid, message: String) {
        let mut inner = self.lock();
        if let Some(e) = inner.jobs.get_mut(&id) {
            if e.job.last_notification_error != message {
                e.job.last_notification_error = message;
                self.store.put_job(&e.job);
            }
        }
    }

    /// Registers (or replaces) the handler of a class.
    pub async fn register_handler(
        &self,
        uid: u32,
        class: &str,
        argv: Vec<String>,
        workdir: Option<String>,
    ) -> Result<HandlerRecord, ServiceError> {
        let class = parse_class(class)?;
        self.check_writable()?;
        self.check_store_room().await?;
        self.check_handler_room(&self.lock(), uid, class)?;
        validate::command("handler.argv", &argv)?;
        if let Some(d) = &workdir {
            validate::local_path("handler.workdir", d)?;
        }
        let Some(program) = argv.first() else {
            return Err(ServiceError::InvalidArgument(
                "the handler needs a command: argv holds the program (an absolute path) and \
                 its arguments"
                    .into(),
            )
            .marked(ErrorReason::HandlerCommandMissing));
        };
        if !std::path::Path::new(program).is_absolute() {
            return Err(ServiceError::InvalidArgument(format!(
                "the handler program '{program}' must be an absolute path"
            ))
            .marked(ErrorReason::HandlerProgramNotRunnable));
        }
        self.owners
            .of(uid)
            .check_program("the handler program", program.clone())
            .await
            .map_err(|e| {
                ServiceError::InvalidArgument(e).marked(ErrorReason::HandlerProgramNotRunnable)
            })?;
        if let Some(d) = &workdir {
            self.owners
                .of(uid)
                .check_folder(d.clone())
                .await
                .map_err(ServiceError::InvalidArgument)?;
        }
        let h = HandlerRecord {
            class,
            owner_uid: uid,
            argv,
            workdir,
            registered_ms: now_ms(),
        };
        let rx = {
            let mut inner = self.lock();
            self.check_handler_room(&inner, uid, class)?;
            inner.handlers.insert((class, uid), h.clone());
            self.store.put_handler(&h)
        };
        Store::committed(rx).await.map_err(ServiceError::from)?;
        let jobs = self.jobs_of_class(uid, class);
        self.notifier.handler_registered(uid, class, &jobs);
        Ok(h)
    }

    /// Removes the handler of a class.
    pub async fn unregister_handler(&self, uid: u32, class: &str) -> Result<(), ServiceError> {
        self.check_writable()?;
        let class = parse_class(class)?;
        let rx = {
            let mut inner = self.lock();
            if inner.handlers.remove(&(class, uid)).is_none() {
                return Err(ServiceError::NotFound(format!(
                    "no handler is registered for class {class} (ListHandlers lists them)"
                ))
                .marked(ErrorReason::HandlerNotFound));
            }
            self.store.delete_handler(class, uid)
        };
        Store::committed(rx).await.map_err(ServiceError::from)
    }

    /// The application's verdict on a transferred file: `false` discards it and puts the
    /// job in `error` with the validation context.
    pub async fn set_validation_state(
        &self,
        uid: u32,
        id: Uuid,
        index: u32,
        valid: bool,
    ) -> Result<FileView, ServiceError> {
        self.check_writable()?;
        if let Some(state) = self.archived_state(uid, id) {
            // Final jobs are kept compact, out of the engine's reach.
            return Err(ServiceError::FailedPrecondition(format!(
                "job {id} is {state}: its files can no longer be validated"
            )));
        }
        if let Some(message) = self.lock().jobs.get(&id).and_then(|e| {
            e.job
                .error
                .as_ref()
                .filter(|r| e.job.owner_uid == uid && r.is_unreadable_column())
                .map(|r| r.message.clone())
        }) {
            // Its error record is what keeps it from running on defaults.
            return Err(ServiceError::FailedPrecondition(format!(
                "job {id} cannot be changed: {message}"
            )));
        }
        // The rejected bytes are gone before anyone can see the job in `error`.
        if !valid {
            let part = {
                let inner = self.lock();
                let e = inner
                    .jobs
                    .get(&id)
                    .filter(|e| e.job.owner_uid == uid)
                    .ok_or_else(|| super::commands::not_found(id))?;
                match e.files.get(index as usize) {
                    Some(f) if f.completed && !e.job.state.is_final() => Some(f.temporary_path()),
                    _ => None,
                }
            };
            if let Some(p) = part {
                let owner = self.owners.of(uid);
                if let Err(e) = owner.remove_files(vec![p.clone()]).await {
                    tracing::warn!(part = %p.display(), "removing the rejected file: {e}");
                }
            }
        }
        let (rx, file, outbox, rejected) = {
            let mut inner = self.lock();
            let e = inner
                .jobs
                .get(&id)
                .filter(|e| e.job.owner_uid == uid)
                .ok_or_else(|| super::commands::not_found(id))?;
            if e.job.state.is_final() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "job {id} is {}: its files can no longer be validated",
                    e.job.state
                )));
            }
            let f = e
                .files
                .get(index as usize)
                .ok_or_else(|| ServiceError::NotFound(format!("job {id} has no file {index}")))?;
            if !f.completed {
                return Err(ServiceError::FailedPrecondition(format!(
                    "file {index} of job {id} is not transferred yet: validate it after file_transferred"
                )));
            }
            let before = e.view();
            let e = inner.jobs.get_mut(&id).expect("exists");
            let sent_by = e.peers_used.remove(&index).unwrap_or_default();
            let f = &mut e.files[index as usize];
            // What the fleet knows it by, before the rejection clears its validator.
            let rejected = (!valid).then(|| f.clone());
            // A file that came (partly) from peers is fetched again from the origin (BITS).
            let from_peers = !valid && f.peer.from_peers > 0 && self.peers.get().is_some();
            if from_peers {
                self.peers_rejected(f, &sent_by);
                f.peer.origin_only = true;
                f.peer.from_origin = 0;
                f.peer.from_peers = 0;
                f.validated = None;
            } else {
                f.validated = Some(valid);
            }
            if !valid {
                f.completed = false;
                f.bytes_transferred = 0;
                f.validator = None;
                f.segments.clear();
            }
            let file = f.clone();
            let mut outbox = Vec::new();
            if from_peers {
                // The run (if one runs) stops; the job runs again for this file.
                self.engine.cancel(id);
                inner.set_state(id, JobState::Queued);
            } else if !valid {
                e.job.error = Some(JobErrorRecord {
                    context: ErrorContext::Validation,
                    code: "validation_failed".into(),
                    message: format!(
                        "the application rejected file {index} ({}): it was discarded",
                        file.local_path
                    ),
                    file_index: Some(index),
                    time_ms: now_ms(),
                });
                e.job.error_count += 1;
                // The run (if one runs) stops; its verdict no longer counts.
                self.engine.cancel(id);
                set_error_state(&mut inner, id);
                let job = inner.jobs[&id].job.clone();
                outbox = self.due_notifications(&job, Some(JobState::Error), &[]);
            }
            let after = inner.jobs[&id].view();
            let rx = self.persist_with_outbox(&after.job, vec![file.clone()], &outbox);
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, file, outbox, rejected)
        };
        Store::committed(rx).await.map_err(ServiceError::from)?;
        self.notifier.enqueue(id, outbox);
        match &rejected {
            // Validated before `complete`: the fleet's before the call returns (BITS).
            None => self.offer_now(id, index).await,
            // Rejected: out of every peer's view before the call returns.
            Some(f) => self.withdraw_from_peers(f).await,
        }
        Ok(FileView {
            bytes_transferred: file.bytes_transferred,
            file,
        })
    }
}

fn set_error_state(inner: &mut Inner, id: Uuid) {
    inner.set_state(id, JobState::Error);
}

pub(super) fn parse_class(class: &str) -> Result<Uuid, ServiceError> {
    let c = Uuid::parse_str(class.trim()).map_err(|_| {
        ServiceError::InvalidArgument(format!("'{class}' is not a notification class (a UUID)"))
    })?;
    if c.is_nil() {
        return Err(ServiceError::InvalidArgument(
            "the nil UUID is not a notification class".into(),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{JobType, Priority};

    #[tokio::test]
    async fn the_flags_select_the_events_of_a_notify_command_too() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::open(Config::default(), Store::open(dir.path()).unwrap(), 7).unwrap();
        let mut job = JobRecord::new("cmd".into(), JobType::Download, Priority::Normal, 7);
        job.notify_command = vec!["/bin/true".into()];
        let methods = |job: &JobRecord, state| {
            svc.due_notifications(job, Some(state), &[0])
                .iter()
                .map(|o| o.method)
                .collect::<Vec<_>>()
        };

        job.notify_flags = NotifyFlags::JOB_ERROR;
        assert_eq!(methods(&job, JobState::Transferred), vec![]);
        assert_eq!(methods(&job, JobState::Error), vec![NotifyMethod::JobError]);

        job.notify_flags = NotifyFlags::JOB_TRANSFERRED | NotifyFlags::FILE_TRANSFERRED;
        assert_eq!(
            methods(&job, JobState::Transferred),
            vec![NotifyMethod::FileTransferred, NotifyMethod::JobTransferred]
        );
        assert_eq!(
            methods(&job, JobState::Error),
            vec![NotifyMethod::FileTransferred]
        );

        job.notify_flags = NotifyFlags::DISABLE | NotifyFlags::JOB_ERROR;
        assert_eq!(methods(&job, JobState::Error), vec![]);
    }
}
