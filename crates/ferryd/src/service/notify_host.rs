//! The service as the host of notifications, and the facade calls about callback
//! channels: opening and closing a client's channel, notify interfaces, class objects.

use std::sync::Arc;

use uuid::Uuid;

use super::{CallbackChannel, JobView, Outbound, Service, ServiceError};
use crate::model::{FileView, HandlerRecord, JobRecord, OutboxRecord};
use crate::notify::{NotifyHost, ObjRef};
use crate::owner::Owner;

impl NotifyHost for Service {
    fn job(&self, id: Uuid) -> Option<(JobView, Vec<FileView>)> {
        let inner = self.lock();
        inner.jobs.get(&id).map(|e| (e.view(), e.file_views()))
    }

    fn handler(&self, class: Uuid, uid: u32) -> Option<HandlerRecord> {
        self.lock().handlers.get(&(class, uid)).cloned()
    }

    fn jobs_of_class(&self, uid: u32, class: Uuid) -> Vec<Uuid> {
        self.lock()
            .jobs
            .values()
            .filter(|e| e.job.owner_uid == uid && e.job.notification_class == Some(class))
            .map(|e| e.job.id)
            .collect()
    }

    fn owner(&self, job: &JobRecord) -> Owner {
        self.owner_of(job)
    }

    fn delivered(&self, job: Uuid, entry: i64) {
        self.store.delete_outbox_detached(entry);
        self.set_notification_error(job, String::new());
    }

    fn dropped(&self, entry: i64) {
        self.store.delete_outbox_detached(entry);
    }

    fn not_delivered(&self, record: &OutboxRecord, error: &str) {
        self.store.put_outbox_detached(record);
        self.set_notification_error(record.job_id, error.to_string());
    }
}

impl Service {
    /// Opens the callback channel of a client process of `uid` (its `Connect` stream).
    pub fn open_callback_channel(&self, uid: u32, tx: Outbound) -> Arc<CallbackChannel> {
        self.notifier.open_channel(uid, tx)
    }

    /// A client's `Connect` stream ended: its objects are gone; jobs fall back to their
    /// classes.
    pub fn close_callback_channel(&self, channel: u64) {
        self.notifier.close_channel(channel);
    }

    /// The live channel `channel` of `uid`, or why it cannot be used.
    fn live_channel(&self, uid: u32, channel: u64) -> Result<(), ServiceError> {
        self.notifier
            .channel(channel, uid)
            .map(|_| ())
            .ok_or_else(|| {
                ServiceError::FailedPrecondition(format!(
                    "callback channel {channel} is not connected: open it with Connect first"
                ))
            })
    }

    /// Sets (or clears, with `None`) the callback object of job `id`; the last call wins.
    pub fn set_notify_interface(
        &self,
        uid: u32,
        id: Uuid,
        object: Option<ObjRef>,
    ) -> Result<JobView, ServiceError> {
        let view = self.get_job(uid, id)?;
        if let Some(o) = object {
            self.live_channel(uid, o.channel)?;
        }
        self.notifier.set_interface(id, object);
        Ok(view)
    }

    /// The callback object of job `id`, if one is set (BITS's `GetNotifyInterface`).
    pub fn notify_interface(&self, uid: u32, id: Uuid) -> Result<Option<ObjRef>, ServiceError> {
        self.get_job(uid, id)?;
        Ok(self.notifier.interface(id))
    }

    /// Registers the class object of `class` for `uid` (a started handler does this).
    pub fn register_class_object(
        &self,
        uid: u32,
        class: &str,
        object: ObjRef,
    ) -> Result<(), ServiceError> {
        let class = super::notifications::parse_class(class)?;
        self.live_channel(uid, object.channel)?;
        let jobs = self.jobs_of_class(uid, class);
        self.notifier
            .register_class_object(uid, class, object, &jobs);
        Ok(())
    }
}
