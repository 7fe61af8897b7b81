//! What the engine reports while it runs a job. Each report names the run it comes from;
//! reports of a run that is no longer the job's current one are ignored, and state changes
//! happen only while the job is still in an active state (a suspend or cancel that raced
//! with the report wins).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{ChangeKind, Entry, Inner, RunId, Service};
use crate::engine::error::TransferError;
use crate::engine::partfile::Progress;
use crate::model::{now_ms, FileRecord, JobRecord, JobState, JobType};
use crate::notify::Notifier;
use crate::store::Store;

/// Progress changes are broadcast at most this often per job.
const PROGRESS_EVENT_INTERVAL: Duration = Duration::from_millis(500);

fn current(inner: &mut Inner, job: Uuid, run: RunId) -> Option<&mut Entry> {
    inner
        .jobs
        .get_mut(&job)
        .filter(|e| e.run.as_ref().is_some_and(|r| r.id == run))
}

impl Service {
    /// The job and its files, if `run` is still the job's run.
    pub(crate) fn files_to_run(
        &self,
        job: Uuid,
        run: RunId,
    ) -> Option<(JobRecord, Vec<FileRecord>)> {
        let mut inner = self.lock();
        let e = current(&mut inner, job, run)?;
        Some((e.job.clone(), e.files.clone()))
    }

    pub(crate) fn set_live(&self, job: Uuid, run: RunId, index: u32, progress: Arc<Progress>) {
        if let Some(e) = current(&mut self.lock(), job, run) {
            e.live.insert(index, progress);
        }
    }

    pub(crate) fn set_live_segments(
        &self,
        job: Uuid,
        run: RunId,
        index: u32,
        table: Arc<crate::engine::segmented::SegTable>,
    ) {
        if let Some(e) = current(&mut self.lock(), job, run) {
            e.live.remove(&index);
            e.live_segments.insert(index, table);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn file_segments_started(
        &self,
        job: Uuid,
        run: RunId,
        index: u32,
        total: u64,
        validator: String,
        final_url: String,
        segments: Vec<crate::model::Segment>,
    ) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        if let Some(f) = e.files.get_mut(index as usize) {
            f.bytes_total = Some(total);
            f.validator = Some(validator);
            f.final_url = Some(final_url);
            f.bytes_transferred = 0;
            f.segments = segments;
            self.store.put_files_detached(vec![f.clone()]);
        }
        self.transition(&mut inner, job, JobState::Transferring);
    }

    /// Moves the job to `state` if it is active, broadcasting the change.
    fn transition(&self, inner: &mut Inner, job: Uuid, state: JobState) -> bool {
        let Some(e) = inner.jobs.get(&job) else {
            return false;
        };
        if !e.job.state.is_active() || e.job.state == state {
            return false;
        }
        let before = e.view();
        inner.set_state(job, state);
        let after = inner.jobs[&job].view();
        self.store.put_job(&after.job);
        self.emit(ChangeKind::Modified, after, Some(before));
        true
    }

    pub(crate) fn file_connecting(&self, job: Uuid, run: RunId) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        if matches!(e.job.state, JobState::Queued | JobState::TransientError) {
            self.transition(&mut inner, job, JobState::Connecting);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn file_started(
        &self,
        job: Uuid,
        run: RunId,
        index: u32,
        total: Option<u64>,
        validator: Option<String>,
        final_url: Option<String>,
        offset: u64,
    ) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        if let Some(f) = e.files.get_mut(index as usize) {
            f.bytes_total = total;
            f.validator = validator;
            if final_url.is_some() {
                f.final_url = final_url;
            }
            f.bytes_transferred = offset;
            // A download starting from zero has nothing durable to describe yet: the next
            // checkpoint (once bytes are synced) or the job's completion writes the row.
            // Resumed files and uploads (the tus upload URL) are written at once.
            if offset > 0 || e.job.job_type != JobType::Download {
                self.store.put_files_detached(vec![f.clone()]);
            }
        }
        self.transition(&mut inner, job, JobState::Transferring);
    }

    pub(crate) fn file_bytes(&self, job: Uuid, run: RunId) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        e.job.last_progress_ms = now_ms();
        let due = e
            .last_progress_event
            .is_none_or(|t| t.elapsed() >= PROGRESS_EVENT_INTERVAL);
        if due && e.job.state == JobState::Transferring {
            e.last_progress_event = Some(Instant::now());
            let view = e.view();
            self.emit(ChangeKind::Modified, view, None);
        } else if e.job.state != JobState::Transferring {
            self.transition(&mut inner, job, JobState::Transferring);
        }
    }

    pub(crate) fn file_restarted(&self, job: Uuid, run: RunId, index: u32) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        if let Some(f) = e.files.get_mut(index as usize) {
            f.bytes_transferred = 0;
            f.validator = None;
            f.segments.clear();
            self.store.put_files_detached(vec![f.clone()]);
        }
        e.live_segments.remove(&index);
    }

    /// Records the durable offsets of the files being written, in one transaction.
    pub(crate) fn checkpoint(&self, job: Uuid, run: RunId) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        let mut changed = Vec::new();
        for (index, t) in &e.live_segments {
            if let Some(f) = e.files.get_mut(*index as usize) {
                let segments = t.snapshot();
                let synced = segments.iter().map(|s| s.done).sum();
                if !f.completed && (f.segments != segments || f.bytes_transferred != synced) {
                    f.segments = segments;
                    f.bytes_transferred = synced;
                    changed.push(f.clone());
                }
            }
        }
        for (index, p) in &e.live {
            if let Some(f) = e.files.get_mut(*index as usize) {
                let synced = p.synced.load(Ordering::Acquire);
                if !f.completed && f.bytes_transferred != synced {
                    f.bytes_transferred = synced;
                    changed.push(f.clone());
                }
            }
        }
        if !changed.is_empty() {
            let job_record = e.job.clone();
            self.store.queue_detached(move |tx| {
                crate::store::put_job_tx(tx, &job_record)?;
                for f in &changed {
                    crate::store::put_file_tx(tx, f)?;
                }
                Ok(())
            });
        }
    }

    /// A file's bytes are all in its part file (not yet synced).
    pub(crate) fn file_downloaded(&self, job: Uuid, run: RunId, index: u32, len: u64) {
        if let Some(e) = current(&mut self.lock(), job, run) {
            if let Some(f) = e.files.get_mut(index as usize) {
                f.bytes_total = Some(len);
            }
        }
    }

    fn mark_completed(e: &mut Entry, done: &[(u32, u64)]) -> Vec<FileRecord> {
        let mut changed = Vec::new();
        for &(index, len) in done {
            if let Some(f) = e.files.get_mut(index as usize) {
                f.completed = true;
                f.bytes_total = Some(len);
                f.bytes_transferred = len;
                f.segments.clear();
                changed.push(f.clone());
            }
        }
        changed
    }

    /// Files synced by a run that stopped early: recorded as completed.
    pub(crate) async fn files_completed(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>) {
        let (rx, outbox) = {
            let mut inner = self.lock();
            let Some(e) = current(&mut inner, job, run) else {
                return;
            };
            let changed = Self::mark_completed(e, &done);
            let record = e.job.clone();
            let indices: Vec<u32> = done.iter().map(|(i, _)| *i).collect();
            let outbox = self.due_notifications(&record, None, &indices);
            (self.persist_with_outbox(&record, changed, &outbox), outbox)
        };
        if let Err(e) = Store::committed(rx).await {
            tracing::error!(%job, "recording completed files failed: {e}");
        }
        Notifier::enqueue(&self.arc(), job, outbox);
    }

    /// Every file is synced: the job becomes `transferred`.
    pub(crate) async fn job_transferred(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>) {
        let rx = {
            let mut inner = self.lock();
            let Some(e) = current(&mut inner, job, run) else {
                return;
            };
            let before = e.view();
            let changed = Self::mark_completed(e, &done);
            let active = e.job.state.is_active();
            if active {
                e.job.transferred_ms = Some(now_ms());
                e.job.error = None;
                inner.set_state(job, JobState::Transferred);
            }
            let after = inner.jobs[&job].view();
            let indices: Vec<u32> = done.iter().map(|(i, _)| *i).collect();
            let outbox = self.due_notifications(
                &after.job,
                active.then_some(JobState::Transferred),
                &indices,
            );
            let rx = self.persist_with_outbox(&after.job, changed, &outbox);
            if active {
                tracing::info!(%job, "job transferred");
            }
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, outbox)
        };
        let (rx, outbox) = rx;
        // The worker's slot is free now; the notifications go out once the state is
        // durable (the outbox rows commit with it).
        let svc = self.arc();
        tokio::spawn(async move {
            if let Err(e) = Store::committed(rx).await {
                tracing::error!(%job, "recording the transferred job failed: {e}");
            }
            Notifier::enqueue(&svc, job, outbox);
        });
    }

    /// A transfer failed: `transient_error` with a retry time, or `error`.
    pub(crate) fn transfer_failed(
        &self,
        job: Uuid,
        run: RunId,
        file_index: Option<u32>,
        err: TransferError,
    ) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        if !e.job.state.is_active() {
            return;
        }
        let before = e.view();
        let now = now_ms();
        let stalled_ms = now - e.job.last_progress_ms;
        let timeout_ms = (e.job.no_progress_timeout_secs as i64).saturating_mul(1000);
        let mut record = err.record(file_index);
        e.job.error_count += 1;
        let state = if err.transient && stalled_ms < timeout_ms {
            let delay = Duration::from_secs(e.job.min_retry_delay_secs)
                .max(err.retry_after.unwrap_or_default());
            e.job.retry_at_ms = Some(now + delay.as_millis() as i64);
            tracing::info!(%job, code = %err.kind, retry_in_s = delay.as_secs(), "transient error: {}", err.message);
            JobState::TransientError
        } else {
            if err.transient {
                record.message = format!(
                    "no progress for {} s (no_progress_timeout): {}",
                    stalled_ms / 1000,
                    record.message
                );
            }
            tracing::warn!(%job, code = %err.kind, "job failed: {}", record.message);
            JobState::Error
        };
        e.job.error = Some(record);
        inner.set_state(job, state);
        let after = inner.jobs[&job].view();
        let outbox = self.due_notifications(&after.job, Some(state), &[]);
        // The error record, the state and the due notification land in one transaction.
        drop(self.persist_with_outbox(&after.job, Vec::new(), &outbox));
        self.emit(ChangeKind::Modified, after, Some(before));
        drop(inner);
        Notifier::enqueue(&self.arc(), job, outbox);
        self.wake.notify_one();
    }

    /// The worker of `run` has returned.
    pub(crate) fn run_finished(&self, job: Uuid, run: RunId) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        e.run = None;
        e.live.clear();
        e.live_segments.clear();
        let stuck = matches!(e.job.state, JobState::Connecting | JobState::Transferring);
        inner.running -= 1;
        if stuck && !self.shutdown.is_cancelled() {
            // The worker ended without a verdict: give the job back to the queue.
            inner.set_state(job, JobState::Queued);
            self.store.put_job(&inner.jobs[&job].job);
        }
        drop(inner);
        self.wake.notify_one();
    }
}

impl Service {
    /// Stores an upload-reply job's reply: in its reply file, or in
    /// `STATE_DIR/replies/JOBID.reply` (recorded as its reply file) when none was set.
    pub(crate) async fn store_reply(&self, job: Uuid, reply: &[u8]) -> Result<(), TransferError> {
        let configured = self
            .lock()
            .jobs
            .get(&job)
            .and_then(|e| e.job.options.reply_file.clone());
        let path = match configured {
            Some(p) => std::path::PathBuf::from(p),
            None => {
                let dir = self.store.path().with_file_name("replies");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| TransferError::local_io("creating", &dir, &e))?;
                dir.join(format!("{job}.reply"))
            }
        };
        let tmp = path.with_file_name(format!(
            ".{}.ferry-reply.part",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let data = reply.to_vec();
        let (p2, t2) = (path.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = crate::engine::partfile::create_part(&t2)?;
            f.write_all(&data)?;
            f.sync_data()?;
            std::fs::rename(&t2, &p2)
        })
        .await
        .map_err(TransferError::internal)?
        .map_err(|e| TransferError::local_io("writing the reply to", &path, &e))?;
        let mut inner = self.lock();
        if let Some(e) = inner.jobs.get_mut(&job) {
            let shown = path.to_string_lossy().into_owned();
            if e.job.options.reply_file.as_deref() != Some(shown.as_str()) {
                e.job.options.reply_file = Some(shown);
                self.store.put_job(&e.job);
            }
        }
        Ok(())
    }
}
