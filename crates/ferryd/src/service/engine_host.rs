//! The service as the engine's host: it hands out runs and takes their reports. Each
//! report names the run it comes from; reports of a run that is no longer the job's
//! current one are ignored, and state changes happen only while the job is still in an
//! active state (a suspend or cancel that raced with the report wins).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::state::{Entry, Inner};
use super::{ChangeKind, Service};
use crate::engine::error::TransferError;
use crate::engine::{FileStart, Host, LiveRun, Report, RunId, RunPlan};
use crate::model::{
    mono_ms, now_ms, wall_of, FileRecord, JobRecord, JobState, JobType, OutboxRecord,
};
use crate::owner::Owner;
use crate::store::Store;

/// Records that `live` moved bytes: the monotonic time drives the no-progress timeout,
/// the wall-clock time is shown.
fn note_progress(e: &mut Entry, live: &LiveRun) {
    let moved = live.last_progress_mono();
    if moved > e.clock.last_progress {
        e.clock.last_progress = moved;
        e.clock.failures_in_a_row = 0;
    }
    e.job.last_progress_ms = wall_of(e.clock.last_progress);
}

/// The first retry after a byte last moved comes after a second, each next one after
/// twice as long, up to the job's minimum retry delay (a server's `Retry-After` wins when
/// longer): a blip costs a second, a server that stays down is asked at the job's pace.
fn backoff(failures_in_a_row: u32, min_retry_delay_secs: u64) -> Duration {
    let exp = Duration::from_secs(1u64 << failures_in_a_row.saturating_sub(1).min(30));
    exp.min(Duration::from_secs(min_retry_delay_secs.max(1)))
}

/// True for a move between the states of a job that is running or waiting to run
/// (`queued`, `connecting`, `transferring`): the store is not written for it. The daemon
/// puts a job found in any of them at start-up back in `queued`, so what the store holds
/// stays right, and a job of one small file saves two of its seven writes.
fn running_to_running(from: JobState, to: JobState) -> bool {
    use JobState::{Connecting, Queued, Transferring};
    matches!(from, Queued | Connecting | Transferring) && matches!(to, Connecting | Transferring)
}

/// The entry of `job` if `run` is its current run.
fn current(inner: &mut Inner, job: Uuid, run: RunId) -> Option<&mut Entry> {
    inner
        .jobs
        .get_mut(&job)
        .filter(|e| e.run.as_ref().is_some_and(|(id, _)| *id == run))
}

impl Service {
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
        if !running_to_running(before.job.state, state) {
            self.store.put_job(&after.job);
        }
        self.emit(ChangeKind::Modified, after, Some(before));
        true
    }

    /// Where an upload-reply job keeps its reply: its reply file, else the owner's
    /// default (`STATE_DIR/replies/JOBID.reply`; system-wide, in the owner's folder).
    fn reply_path(&self, job: &JobRecord, owner: &Owner) -> Option<PathBuf> {
        (job.job_type == JobType::UploadReply).then(|| match &job.options.reply_file {
            Some(p) => PathBuf::from(p),
            None => owner.default_reply_path(job.id),
        })
    }

    fn mark_completed(
        e: &mut Entry,
        run: RunId,
        done: &[(u32, u64)],
        counters: &super::counters::Counters,
    ) -> Vec<FileRecord> {
        let live = e.live(run).cloned();
        let mut changed = Vec::new();
        for &(index, len) in done {
            if let Some(f) = e.files.get_mut(index as usize) {
                if !f.completed {
                    counters.file_transferred();
                }
                if let Some((origin, peers)) = live.as_ref().and_then(|l| l.sources(index)) {
                    f.peer.from_origin = origin;
                    f.peer.from_peers = peers;
                }
                f.completed = true;
                f.bytes_total = Some(len);
                f.bytes_transferred = len;
                f.segments.clear();
                changed.push(f.clone());
            }
        }
        changed
    }

    fn file_started(&self, inner: &mut Inner, job: Uuid, run: RunId, index: u32, s: FileStart) {
        let Some(e) = current(inner, job, run) else {
            return;
        };
        let report_redirects = e.job.job_type == JobType::Download
            && e.job.options.security.redirect_policy == crate::model::RedirectPolicy::AllowReport;
        if let Some(f) = e.files.get_mut(index as usize) {
            f.bytes_total = s.total;
            f.validator = s.validator;
            if s.final_url.is_some() {
                f.final_url = s.final_url;
            }
            // BITS's BG_HTTP_REDIRECT_POLICY_ALLOW_REPORT: the remote name becomes the
            // URL the redirects led to (written with the row below or at the next
            // checkpoint).
            let mut reported = false;
            if let Some(fin) = f
                .final_url
                .as_ref()
                .filter(|u| report_redirects && **u != f.remote_url)
            {
                f.remote_url = fin.clone();
                reported = true;
            }
            f.bytes_transferred = s.offset;
            f.peer.no_peer_cache |= s.no_store;
            // A download starting from zero has nothing durable to describe yet: the next
            // checkpoint (once bytes are synced) or the job's completion writes the row.
            // Resumed files and uploads (the tus upload URL) are written at once.
            if s.offset > 0 || e.job.job_type != JobType::Download || reported {
                self.store.put_files_detached(vec![f.clone()]);
            }
        }
        self.transition(inner, job, JobState::Transferring);
    }

    /// Records `err` as the job's error: `transient_error` with a retry time when it is
    /// transient and the job has not gone without progress for its no-progress timeout
    /// (time the machine had no route does not count for a network failure of a job
    /// that needs a route),
    /// else `error`. Returns the due notifications, to hand to the notifier once the
    /// lock is released.
    pub(super) fn record_failure(
        &self,
        inner: &mut Inner,
        job: Uuid,
        file_index: Option<u32>,
        err: TransferError,
    ) -> Vec<OutboxRecord> {
        let Some(e) = inner.jobs.get_mut(&job) else {
            return Vec::new();
        };
        let before = e.view();
        // Measured on the monotonic clock: a wall clock set forward fails no job.
        let now = mono_ms();
        // Only for a job that needs a route: a loopback server is reachable offline.
        let offline_ms = if err.kind.is_network() && super::network::needs_network(e) {
            self.connectivity
                .offline_ms_between(e.clock.last_progress, now)
        } else {
            0
        };
        let stalled_ms = now - e.clock.last_progress - offline_ms;
        let timeout_ms = (e.job.no_progress_timeout_secs as i64).saturating_mul(1000);
        let mut record = err.record(file_index);
        self.counters.failed(err.kind);
        e.job.error_count += 1;
        e.clock.failures_in_a_row += 1;
        let state = if err.transient && stalled_ms < timeout_ms {
            let delay = backoff(e.clock.failures_in_a_row, e.job.min_retry_delay_secs)
                .max(err.retry_after.unwrap_or_default());
            e.job.retry_at_ms = Some(now_ms() + delay.as_millis() as i64);
            e.clock.retry_at = Some(now + delay.as_millis() as i64);
            // One line when the job starts failing; its retries are for the debug log.
            if e.clock.failures_in_a_row == 1 {
                tracing::info!(%job, code = %err.kind, retry_in_ms = delay.as_millis() as u64, offline_s = offline_ms / 1000, "transient error, retrying with backoff until {}s pass without progress: {}", timeout_ms / 1000, err.message);
            } else {
                tracing::debug!(%job, code = %err.kind, retry_in_ms = delay.as_millis() as u64, failures = e.clock.failures_in_a_row, "transient error again: {}", err.message);
            }
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
        outbox
    }

    /// Records the durable offsets of the files being written, in one transaction.
    fn checkpoint(&self, inner: &mut Inner, job: Uuid, run: RunId) {
        let Some(e) = current(inner, job, run) else {
            return;
        };
        let Some(live) = e.live(run).cloned() else {
            return;
        };
        note_progress(e, &live);
        let mut changed = Vec::new();
        for d in live.durable() {
            let Some(f) = e.files.get_mut(d.index as usize) else {
                continue;
            };
            if f.completed {
                continue;
            }
            let segments_changed = d.segments.as_ref().is_some_and(|s| *s != f.segments);
            let sources_changed =
                (d.from_origin, d.from_peers) != (f.peer.from_origin, f.peer.from_peers);
            if segments_changed || sources_changed || f.bytes_transferred != d.synced {
                if let Some(s) = d.segments {
                    f.segments = s;
                }
                f.bytes_transferred = d.synced;
                f.peer.from_origin = d.from_origin;
                f.peer.from_peers = d.from_peers;
                changed.push(f.clone());
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
}

#[async_trait::async_trait]
impl Host for Service {
    fn claim(&self, job: Uuid, run: RunId, live: Arc<LiveRun>) -> Option<RunPlan> {
        let mut inner = self.lock();
        let e = inner.jobs.get_mut(&job)?;
        if e.job.state != JobState::Queued || e.job.finishing.is_some() {
            return None;
        }
        // The network became metered between the scheduler's choice and now.
        if self.held_at_claim(&mut inner, job) {
            return None;
        }
        let e = inner.jobs.get_mut(&job)?;
        e.run = Some((run, live));
        // The job's own limit, else the daemon's default (`max_transfer_time` in
        // ferryd.toml, BITS's MaxDownloadTime policy); 0: none.
        let max_secs = match e.job.max_transfer_time_secs {
            0 => self.config.max_transfer_time.as_secs(),
            own => own,
        };
        let transfer_time_left = (max_secs > 0).then(|| {
            let used = mono_ms() - e.clock.first_active.unwrap_or_else(mono_ms);
            let max = (max_secs as i64).saturating_mul(1000);
            Duration::from_millis(max.saturating_sub(used).max(0) as u64)
        });
        let owner = self.owner_of(&e.job);
        let mut job = e.job.clone();
        // The run reports the limit it ran under.
        job.max_transfer_time_secs = max_secs;
        let plan = RunPlan {
            job,
            files: e.files.clone(),
            reply_path: self.reply_path(&e.job, &owner),
            owner,
            transfer_time_left,
            failures_in_a_row: e.clock.failures_in_a_row,
        };
        Some(plan)
    }

    fn retry_due(&self, job: Uuid) {
        let mut inner = self.lock();
        let Some(e) = inner.jobs.get(&job) else {
            return;
        };
        if e.job.state != JobState::TransientError {
            return;
        }
        let before = e.view();
        inner.set_state(job, JobState::Queued);
        let after = inner.jobs[&job].view();
        self.store.put_job(&after.job);
        self.emit(ChangeKind::Modified, after, Some(before));
    }

    fn report(&self, job: Uuid, run: RunId, report: Report) {
        let mut inner = self.lock();
        match report {
            Report::Connecting => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if matches!(e.job.state, JobState::Queued | JobState::TransientError) {
                    self.transition(&mut inner, job, JobState::Connecting);
                }
            }
            Report::FileStarted { index, start } => {
                self.file_started(&mut inner, job, run, index, start)
            }
            Report::SegmentsStarted {
                index,
                total,
                validator,
                final_url,
                segments,
                no_store,
            } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    f.bytes_total = Some(total);
                    f.validator = validator;
                    f.peer.no_peer_cache |= no_store;
                    f.final_url = Some(final_url);
                    f.bytes_transferred = 0;
                    f.segments = segments;
                    self.store.put_files_detached(vec![f.clone()]);
                }
                self.transition(&mut inner, job, JobState::Transferring);
            }
            Report::RangesStarted {
                index,
                size,
                total,
                validator,
                final_url,
                segments,
            } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    f.bytes_total = Some(total);
                    f.bytes_transferred = segments.iter().map(|s| s.done).sum();
                    f.validator = validator;
                    f.final_url = Some(final_url);
                    f.segments = segments;
                    f.ranges.size = size;
                    f.peer.no_peer_cache = true;
                    self.store.put_files_detached(vec![f.clone()]);
                }
                self.transition(&mut inner, job, JobState::Transferring);
            }
            Report::RangesTransferred {
                index,
                ranges,
                segments,
            } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    f.bytes_transferred = segments.iter().map(|s| s.done).sum();
                    f.segments = segments;
                    // Recorded before the application hears of the ranges.
                    self.store.put_files_detached(vec![f.clone()]);
                }
                let flags = e.job.notify_flags;
                if flags.contains(crate::model::NotifyFlags::FILE_RANGES_TRANSFERRED)
                    && !flags.contains(crate::model::NotifyFlags::DISABLE)
                {
                    self.notifier.file_ranges_transferred(job, index, ranges);
                }
            }
            Report::ResponseHeaders { index, headers } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    // Written with the file's next row (its checkpoint or completion).
                    f.response_headers = headers;
                }
            }
            Report::Progressed => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(live) = e.live(run).cloned() {
                    note_progress(e, &live);
                }
                if e.job.state == JobState::Transferring {
                    let view = e.view();
                    self.emit(ChangeKind::Modified, view, None);
                } else {
                    self.transition(&mut inner, job, JobState::Transferring);
                }
            }
            Report::FileRestarted { index } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    f.bytes_transferred = 0;
                    f.validator = None;
                    f.segments.clear();
                    f.peer.from_origin = 0;
                    f.peer.from_peers = 0;
                    self.store.put_files_detached(vec![f.clone()]);
                }
                e.peers_used.remove(&index);
            }
            Report::NoPeerCache { index } | Report::OriginOnly { index } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                if let Some(f) = e.files.get_mut(index as usize) {
                    match report {
                        Report::NoPeerCache { .. } => f.peer.no_peer_cache = true,
                        _ => f.peer.origin_only = true,
                    }
                    self.store.put_files_detached(vec![f.clone()]);
                }
            }
            Report::PeersUsed { index, peers } => {
                if let Some(e) = current(&mut inner, job, run) {
                    e.peers_used.insert(index, peers);
                }
            }
            Report::FileVerified { index } => {
                // Offered to the fleet at once only when the SHA-256 it matched is the
                // one its job gave (the application said what the bytes must be). A file
                // checked only against what its peers claimed waits for its application
                // to validate it or complete the job (the seed's rule).
                let given = current(&mut inner, job, run)
                    .and_then(|e| e.files.get(index as usize))
                    .is_some_and(|f| f.expected_sha256.is_some());
                if given {
                    drop(inner);
                    self.offer_in_background(job, index);
                }
            }
            Report::Checkpoint => self.checkpoint(&mut inner, job, run),
            Report::FileDownloaded { index, len } => {
                if let Some(f) =
                    current(&mut inner, job, run).and_then(|e| e.files.get_mut(index as usize))
                {
                    f.bytes_total = Some(len);
                }
            }
            Report::ReplyStored { path } => {
                let Some(e) = current(&mut inner, job, run) else {
                    return;
                };
                let shown = path.to_string_lossy().into_owned();
                if e.job.options.reply_file.as_deref() != Some(shown.as_str()) {
                    e.job.options.reply_file = Some(shown);
                    self.store.put_job(&e.job);
                }
            }
        }
    }

    async fn files_completed(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>) {
        let (rx, outbox) = {
            let mut inner = self.lock();
            let Some(e) = current(&mut inner, job, run) else {
                return;
            };
            let changed = Self::mark_completed(e, run, &done, &self.counters);
            let record = e.job.clone();
            let indices: Vec<u32> = done.iter().map(|(i, _)| *i).collect();
            let outbox = self.due_notifications(&record, None, &indices);
            (self.persist_with_outbox(&record, changed, &outbox), outbox)
        };
        if let Err(e) = Store::committed(rx).await {
            tracing::error!(%job, "recording completed files failed: {e}");
        }
        self.notifier.enqueue(job, outbox);
    }

    async fn transferred(&self, job: Uuid, run: RunId, done: Vec<(u32, u64)>) {
        let mut auto_complete = None;
        let (rx, outbox) = {
            let mut inner = self.lock();
            let Some(e) = current(&mut inner, job, run) else {
                return;
            };
            let before = e.view();
            let changed = Self::mark_completed(e, run, &done, &self.counters);
            let active = e.job.state.is_active();
            if active {
                self.counters.job_transferred();
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
                if after.job.options.auto_complete {
                    auto_complete = Some(after.job.owner_uid);
                }
            }
            self.emit(ChangeKind::Modified, after, Some(before));
            (rx, outbox)
        };
        // The worker's slot is free now; the notifications go out once the state is
        // durable (the outbox rows commit with it).
        let notifier = self.notifier.clone();
        let svc = auto_complete.and(self.this.upgrade());
        tokio::spawn(async move {
            if let Err(e) = Store::committed(rx).await {
                tracing::error!(%job, "recording the transferred job failed: {e}");
            }
            notifier.enqueue(job, outbox);
            // A job set to complete itself (`ferry get --detach`) does, once its state
            // is durable and its run has returned.
            if let (Some(svc), Some(owner)) = (svc, auto_complete) {
                match svc.complete(owner, job).await {
                    Ok(o) => {
                        tracing::info!(%job, committed = o.committed, "job completed by itself")
                    }
                    Err(e) => tracing::warn!(%job, "the job could not complete itself: {e}"),
                }
                svc.report_unfinished();
            }
        });
    }

    fn switch_url(&self, job: Uuid, run: RunId, index: u32, to: u32) -> Option<FileRecord> {
        let mut inner = self.lock();
        // The durable bytes first: they are what the next URL continues from.
        self.checkpoint(&mut inner, job, run);
        let e = current(&mut inner, job, run)?;
        let before = e.view();
        let f = e.files.get_mut(index as usize)?;
        if to > f.mirrors.len() as u32 {
            return None;
        }
        f.mirror_in_use = to;
        // Where the last URL's redirects led says nothing of the next one.
        f.final_url = None;
        let f = f.clone();
        // A new URL starts its count of failures afresh.
        e.clock.failures_in_a_row = 0;
        let after = e.view();
        self.store.put_files_detached(vec![f.clone()]);
        self.emit(ChangeKind::Modified, after, Some(before));
        Some(f)
    }

    fn failed(&self, job: Uuid, run: RunId, file_index: Option<u32>, err: TransferError) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        // Already stopped with its verdict (the network went away): what the stopped run
        // says on its way out changes nothing.
        if !e.job.state.is_active() || e.job.state == JobState::TransientError {
            return;
        }
        if let Some(live) = e.live(run).cloned() {
            note_progress(e, &live);
        }
        let outbox = self.record_failure(&mut inner, job, file_index, err);
        drop(inner);
        self.notifier.enqueue(job, outbox);
    }

    fn run_finished(&self, job: Uuid, run: RunId) {
        let mut inner = self.lock();
        let Some(e) = current(&mut inner, job, run) else {
            return;
        };
        e.run = None;
        let stuck = matches!(e.job.state, JobState::Connecting | JobState::Transferring);
        if stuck && !self.shutdown.is_cancelled() {
            // The worker ended without a verdict: give the job back to the queue.
            inner.set_state(job, JobState::Queued);
            self.store.put_job(&inner.jobs[&job].job);
        }
    }
}
