//! What notifications need from the owner of the jobs (the service): a trait notify owns,
//! so notify never names the service.

use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use crate::model::{FileView, HandlerRecord, JobRecord, JobView, OutboxRecord};
use crate::owner::Owner;

/// The side of the service notifications talk to.
pub trait NotifyHost: Send + Sync + 'static {
    /// A job and its files, whoever owns it; `None` once it is purged.
    fn job(&self, id: Uuid) -> Option<(JobView, Vec<FileView>)>;

    /// The handler `uid` registered for `class`.
    fn handler(&self, class: Uuid, uid: u32) -> Option<HandlerRecord>;

    /// The jobs of `uid` whose notification class is `class`.
    fn jobs_of_class(&self, uid: u32, class: Uuid) -> Vec<Uuid>;

    /// As whom `job`'s handler or command runs (its owner, with the job's umask).
    fn owner(&self, job: &JobRecord) -> Owner;

    /// The outbox entry `entry` of `job` was delivered: it goes, and the job's last
    /// notification error is cleared.
    fn delivered(&self, job: Uuid, entry: i64);

    /// The outbox entry `entry` is no longer due (the job left that state, or is gone).
    fn dropped(&self, entry: i64);

    /// A delivery failed: the entry (with its next attempt) is kept, and `error` becomes
    /// the job's last notification error.
    fn not_delivered(&self, record: &OutboxRecord, error: &str);
}

/// The daemon's settings notifications follow.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a callback may take before it counts as failed.
    pub callback_timeout: Duration,
    /// How long a started handler has to register its class object.
    pub activation_timeout: Duration,
    /// The socket handlers are told to connect to (`FERRY_SOCKET`).
    pub socket_path: PathBuf,
    /// Where handlers' output goes.
    pub handler_log: PathBuf,
    /// Where notify commands' output goes, each line after the job's id.
    pub command_log: PathBuf,
    /// Notifications one user may have in flight at once.
    pub max_per_user: usize,
    /// Longest a notify command may run.
    pub command_timeout: Duration,
}
