//! Where the monitor's updates come from: three event subscriptions (jobs created,
//! changed, purged), the connection's events, and the results of the calls the keys
//! start. Each arrives as an [`Update`] on one channel; [`apply`] changes the model.

use std::future::Future;
use std::time::Instant;

use ferry_client::{
    AsyncCall, CallId, CallStatus, ConnectionEvent, FileInfo, Job, Manager, Object, ObjectSink,
    StatusCode, Uuid,
};
use tokio::sync::mpsc;

use super::model::{Connection, JobRow, Model, View};

/// Something that changes what the monitor shows.
#[derive(Debug)]
pub enum Update {
    /// A job was created or changed.
    Job(Box<JobRow>),
    /// A job was purged.
    Gone(Uuid),
    /// Every job, read afresh.
    All(Vec<JobRow>),
    /// The files of a job.
    Files(Uuid, Vec<FileInfo>),
    /// The daemon came back and the subscriptions were made again: read the list afresh.
    Resubscribed,
    /// A subscription ended for good (the daemon did not come back, or refused it).
    Ended(String),
    /// The connection changed.
    Connection(ConnectionEvent),
    /// What a call did, for the status line.
    Said(String),
}

/// The event queries the monitor keeps open (progress coalesced to once a second).
const QUERIES: [&str; 3] = [
    "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'",
    "SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE TargetInstance ISA 'Job'",
    "SELECT * FROM __InstanceDeletionEvent WHERE TargetInstance ISA 'Job'",
];

/// Sends the events of one subscription as updates.
struct Forward {
    tx: mpsc::UnboundedSender<Update>,
    deletions: bool,
    /// Only one of the subscriptions asks for a fresh list after a reconnection.
    resyncs: bool,
}

impl ObjectSink for Forward {
    fn indicate(&mut self, _: CallId, objects: &[Object]) {
        let now = Instant::now();
        for o in objects {
            let Some(row) = o
                .get_object("TargetInstance")
                .and_then(|t| JobRow::from_object(t, now))
            else {
                continue;
            };
            let update = if self.deletions {
                Update::Gone(row.id)
            } else {
                Update::Job(Box::new(row))
            };
            let _ = self.tx.send(update);
        }
    }

    fn set_status(&mut self, _: CallId, status: CallStatus) {
        match status {
            CallStatus::Reconnected if self.resyncs => {
                let _ = self.tx.send(Update::Resubscribed);
            }
            CallStatus::Complete(s) if s.code != StatusCode::CallCancelled => {
                let _ = self.tx.send(Update::Ended(s.message));
            }
            _ => {}
        }
    }
}

/// Opens the three subscriptions; their events arrive on `tx`.
pub async fn subscribe(
    manager: &Manager,
    tx: mpsc::UnboundedSender<Update>,
) -> ferry_client::Result<Vec<AsyncCall>> {
    let mut calls = Vec::new();
    for (i, wql) in QUERIES.iter().enumerate() {
        let sink = Forward {
            tx: tx.clone(),
            deletions: i == 2,
            resyncs: i == 1,
        };
        calls.push(manager.exec_notification_query_async(wql, sink).await?);
    }
    Ok(calls)
}

/// Forwards the connection's events as updates until the returned task is aborted.
pub fn follow_connection(manager: &Manager, tx: mpsc::UnboundedSender<Update>) -> AbortOnDrop {
    let mut events = manager.connection_events();
    AbortOnDrop(tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if tx.send(Update::Connection(e)).is_err() {
                return;
            }
        }
    }))
}

/// A task aborted when this is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks for the files of `job`; they arrive as [`Update::Files`].
pub fn fetch_files(manager: &Manager, tx: &mpsc::UnboundedSender<Update>, job: Uuid) {
    let job = manager.job_unchecked(job);
    let tx = tx.clone();
    tokio::spawn(async move {
        let update = match job.files().await {
            Ok(files) => Update::Files(job.id(), files),
            Err(e) => Update::Said(format!("cannot read the files of job {}: {e}", job.id())),
        };
        let _ = tx.send(update);
    });
}

/// Runs `call` on job `id` as a task; the status line then says `done` (plus what the call
/// returned) or why it failed.
pub fn call<F, Fut>(
    manager: &Manager,
    tx: &mpsc::UnboundedSender<Update>,
    id: Uuid,
    done: &str,
    call: F,
) where
    F: FnOnce(Job) -> Fut + Send + 'static,
    Fut: Future<Output = ferry_client::Result<String>> + Send,
{
    let job = manager.job_unchecked(id);
    let tx = tx.clone();
    let done = done.to_string();
    tokio::spawn(async move {
        let said = match call(job).await {
            Ok(more) => format!("job {id} {done}{more}"),
            Err(e) => format!("job {id}: {e}"),
        };
        let _ = tx.send(Update::Said(said));
    });
}

/// Reads every job afresh; it arrives as [`Update::All`].
fn fetch_all(manager: &Manager, tx: &mpsc::UnboundedSender<Update>) {
    let manager = manager.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let update = match manager.jobs(false).await {
            Ok(jobs) => {
                let now = Instant::now();
                Update::All(jobs.iter().map(|j| JobRow::from_info(j, now)).collect())
            }
            Err(e) => Update::Said(format!("cannot list the jobs: {e}")),
        };
        let _ = tx.send(update);
    });
}

/// Changes `model` for `update` (asking the daemon for more where the update calls for
/// it: the files of the job on screen after it changed, every job after a reconnection).
pub fn apply(
    model: &mut Model,
    manager: &Manager,
    tx: &mpsc::UnboundedSender<Update>,
    update: Update,
    _now: Instant,
) {
    match update {
        Update::Job(row) => {
            if let View::Files { job, .. } = &model.view {
                if *job == row.id {
                    fetch_files(manager, tx, row.id);
                }
            }
            model.upsert(*row);
        }
        Update::Gone(id) => model.remove(id),
        Update::All(rows) => model.replace_all(rows),
        Update::Files(id, list) => {
            if let View::Files { job, files } = &mut model.view {
                if *job == id {
                    *files = Some(list);
                }
            }
        }
        Update::Resubscribed => {
            model.status = "ferryd is back; the list was read again".into();
            fetch_all(manager, tx);
        }
        Update::Ended(message) => {
            model.status = format!(
                "events stopped ({message}): the view no longer changes; quit and start \
                 `ferry monitor` again"
            );
        }
        Update::Connection(ConnectionEvent::Lost { reason }) => {
            model.connection = Connection::Away(reason);
        }
        Update::Connection(ConnectionEvent::Restored { pid, started }) => {
            model.connection = Connection::Connected;
            model.status = format!(
                "ferryd is back (pid {pid}{})",
                if started { ", started again" } else { "" }
            );
        }
        Update::Connection(ConnectionEvent::GaveUp { reason }) => {
            model.connection = Connection::Away(reason);
        }
        Update::Said(s) => model.status = s,
    }
}
