//! Runs one job: its files, several at once, checkpointing progress about every second, verifying
//! checksums, then one batch sync before the job becomes `transferred`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::error::TransferError;
use super::netclient;
use super::partfile::{self, Progress};
use super::ratelimit::RateLimiter;
use super::upload::{self, UploadOutcome};
use super::{file, http, FileTask, Outcome};
use crate::model::{now_ms, ErrorContext, ErrorKind, FileRecord, JobRecord, JobType};
use crate::service::{RunId, Service};

/// How often durable offsets are recorded while a file transfers.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Reports from a file transfer to the service, tagged with the run they belong to.
#[derive(Clone)]
pub struct FileEvents {
    svc: Arc<Service>,
    job: Uuid,
    run: RunId,
    index: u32,
}

impl FileEvents {
    /// About to connect (or open the source).
    pub fn connecting(&self) {
        self.svc.file_connecting(self.job, self.run);
    }

    /// A multi-connection download starts with these segments.
    pub fn segments_started(
        &self,
        total: u64,
        validator: String,
        final_url: String,
        segments: Vec<crate::model::Segment>,
    ) {
        self.svc.file_segments_started(
            self.job, self.run, self.index, total, validator, final_url, segments,
        );
    }

    /// The live segment table of this file.
    pub fn live_segments(&self, table: Arc<super::segmented::SegTable>) {
        self.svc
            .set_live_segments(self.job, self.run, self.index, table);
    }

    /// The source answered: size, validator, final URL, and the offset bytes continue at.
    pub fn started(
        &self,
        total: Option<u64>,
        validator: Option<String>,
        final_url: Option<String>,
        offset: u64,
    ) {
        self.svc.file_started(
            self.job, self.run, self.index, total, validator, final_url, offset,
        );
    }

    /// Bytes moved.
    pub fn bytes(&self) {
        self.svc.file_bytes(self.job, self.run);
    }

    /// The file starts over from zero (content changed or range refused).
    pub fn restarted(&self) {
        self.svc.file_restarted(self.job, self.run, self.index);
    }

    /// A boxed copy for a blocking thread.
    pub fn clone_box(&self) -> Box<FileEvents> {
        Box::new(self.clone())
    }
}

/// Runs the job until it is transferred, fails, or `cancel` fires; always tells the
/// service when it ends.
pub async fn run(svc: Arc<Service>, job: Uuid, run: RunId, cancel: CancellationToken) {
    run_files(&svc, job, run, &cancel).await;
    svc.run_finished(job, run);
}

async fn run_files(svc: &Arc<Service>, job: Uuid, run: RunId, cancel: &CancellationToken) {
    let Some((record, files)) = svc.files_to_run(job, run) else {
        return;
    };
    let stall = Duration::from_secs(record.no_progress_timeout_secs.clamp(1, 60));
    let client = match netclient::for_job(&record.options, svc.http()) {
        Ok(c) => c,
        Err(e) => return svc.transfer_failed(job, run, None, e),
    };
    let mut limits = Vec::new();
    if record.options.bandwidth_limit > 0 {
        limits.push(Arc::new(RateLimiter::new(record.options.bandwidth_limit)));
    }
    if let Some(g) = &svc.global_limit {
        limits.push(g.clone());
    }
    let net = Net {
        client: &client,
        limits: &limits,
        deadline: (record.max_transfer_time_secs > 0).then(|| {
            let start = record.options.first_active_ms.unwrap_or_else(now_ms);
            let end_ms = start + (record.max_transfer_time_secs as i64) * 1000;
            tokio::time::Instant::now() + Duration::from_millis((end_ms - now_ms()).max(0) as u64)
        }),
        max_secs: record.max_transfer_time_secs,
    };
    if record.job_type != JobType::Download {
        return run_upload(svc, &record, files, run, stall, cancel, &net).await;
    }
    // Up to `files_in_parallel` files at once; the first failure stops the others (their
    // progress is kept) and becomes the job's error.
    let parallel = svc.config.files_in_parallel.max(1);
    let siblings = cancel.child_token();
    let mut pending: Vec<(u32, PathBuf, u64)> = Vec::new();
    let mut failure: Option<(u32, String, TransferError)> = None;
    let mut stopped = false;
    {
        let record = &record;
        let net = &net;
        let siblings = &siblings;
        let runs = futures::stream::iter(files.into_iter().filter(|f| !f.completed).map(
            |f| async move {
                let index = f.index;
                let path = f.temporary_path();
                let url = f.final_url.clone().unwrap_or_else(|| f.remote_url.clone());
                let result = if siblings.is_cancelled() {
                    Ok(Outcome::Cancelled)
                } else {
                    fetch_checked(svc, record, run, f, stall, siblings, net).await
                };
                (index, path, url, result)
            },
        ))
        .buffer_unordered(parallel);
        tokio::pin!(runs);
        let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                next = runs.next() => match next {
                    None => break,
                    Some((index, path, _, Ok(Outcome::Done { len }))) => {
                        svc.file_downloaded(job, run, index, len);
                        pending.push((index, path, len));
                    }
                    Some((_, _, _, Ok(Outcome::Cancelled))) => stopped = true,
                    Some((index, _, url, Err(e))) => {
                        if failure.is_none() {
                            failure = Some((index, url, e));
                            siblings.cancel();
                        }
                    }
                },
                _ = ticker.tick() => svc.checkpoint(job, run),
            }
        }
    }
    if stopped || failure.is_some() {
        svc.checkpoint(job, run);
        settle(svc, job, run, pending).await;
        if let Some((index, url, e)) = failure {
            let e = explained(e, &url).await;
            svc.transfer_failed(job, run, Some(index), e);
        }
        return;
    }
    pending.sort_by_key(|p| p.0);
    match sync_parts(&pending).await {
        Ok(()) => {
            let done: Vec<(u32, u64)> = pending.iter().map(|(i, _, len)| (*i, *len)).collect();
            svc.job_transferred(job, run, done).await;
        }
        Err(e) => svc.transfer_failed(job, run, None, e),
    }
}

/// Transfers one file and checks its SHA-256 when one is expected; a mismatch gets one
/// fresh retry from zero before it is fatal.
async fn fetch_checked(
    svc: &Arc<Service>,
    record: &JobRecord,
    run: RunId,
    mut f: FileRecord,
    stall: Duration,
    cancel: &CancellationToken,
    net: &Net<'_>,
) -> Result<Outcome, TransferError> {
    let job = record.id;
    let mut checksum_retried = false;
    loop {
        let r = transfer_one(svc, record, run, &f, stall, cancel, net).await;
        match (r, &f.expected_sha256) {
            (Ok(Outcome::Done { len }), Some(expected)) => {
                match verify(&f.temporary_path(), expected).await {
                    Ok(()) => return Ok(Outcome::Done { len }),
                    Err(e) if e.kind == ErrorKind::ChecksumMismatch && !checksum_retried => {
                        tracing::warn!(%job, index = f.index, "checksum mismatch; downloading the file again");
                        checksum_retried = true;
                        f.bytes_transferred = 0;
                        f.validator = None;
                        svc.file_restarted(job, run, f.index);
                    }
                    Err(e) => return Err(e),
                }
            }
            (r, _) => return r,
        }
    }
}

/// Adds what a user needs to act on a certificate failure: whose certificate the server
/// presented, and how to trust its CA.
async fn explained(mut e: TransferError, url: &str) -> TransferError {
    if e.kind == ErrorKind::TlsCertificate {
        if let Some(subject) = super::tlsprobe::certificate_subject(url).await {
            e.message.push_str(&format!(
                "; the server presented a certificate for '{subject}'"
            ));
        }
        e.message.push_str(
            "; if you trust the CA that signed it, give its PEM file with \
             `ferry set JOB --ca-file PATH`",
        );
    }
    e
}

/// Syncs the files finished in this run and records them as completed, so a stopped run
/// keeps them.
async fn settle(svc: &Arc<Service>, job: Uuid, run: RunId, pending: Vec<(u32, PathBuf, u64)>) {
    if pending.is_empty() {
        return;
    }
    if sync_parts(&pending).await.is_ok() {
        let done: Vec<(u32, u64)> = pending.iter().map(|(i, _, len)| (*i, *len)).collect();
        svc.files_completed(job, run, done).await;
    }
}

async fn sync_parts(pending: &[(u32, PathBuf, u64)]) -> Result<(), TransferError> {
    let paths: Vec<PathBuf> = pending.iter().map(|(_, p, _)| p.clone()).collect();
    tokio::task::spawn_blocking(move || {
        partfile::sync_all(&paths).map_err(|e| {
            TransferError::local_io(
                "syncing",
                paths
                    .first()
                    .map(|p| p.as_path())
                    .unwrap_or(std::path::Path::new("")),
                &e,
            )
        })
    })
    .await
    .map_err(TransferError::internal)?
}

/// The network side of a run: client, bandwidth limits, the `max_transfer_time` deadline.
struct Net<'a> {
    client: &'a reqwest::Client,
    limits: &'a [Arc<RateLimiter>],
    deadline: Option<tokio::time::Instant>,
    max_secs: u64,
}

impl Net<'_> {
    /// Runs `fut` unless the job's `max_transfer_time` runs out first (a fatal error).
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, TransferError>>,
    ) -> Result<T, TransferError> {
        match self.deadline {
            None => fut.await,
            Some(d) => match tokio::time::timeout_at(d, fut).await {
                Ok(r) => r,
                Err(_) => Err(TransferError::new(
                    ErrorContext::Transport,
                    ErrorKind::MaxTransferTime,
                    format!(
                        "the transfer took longer than its max_transfer_time of {} s",
                        self.max_secs
                    ),
                )),
            },
        }
    }
}

/// Runs an upload job's one file, then stores the reply of an upload-reply job.
#[allow(clippy::too_many_arguments)]
async fn run_upload(
    svc: &Arc<Service>,
    record: &JobRecord,
    files: Vec<FileRecord>,
    run: RunId,
    stall: Duration,
    cancel: &CancellationToken,
    net: &Net<'_>,
) {
    let job = record.id;
    let Some(f) = files.into_iter().find(|f| !f.completed) else {
        svc.job_transferred(job, run, Vec::new()).await;
        return;
    };
    let progress = Progress::starting_at(0);
    svc.set_live(job, run, f.index, progress.clone());
    let events = FileEvents {
        svc: svc.clone(),
        job,
        run,
        index: f.index,
    };
    let task = FileTask {
        options: &record.options,
        client: net.client,
        limits: net.limits,
        connections: 1,
        record: &f,
        part: f.temporary_path(),
        progress,
        stall_timeout: stall,
        cancel: cancel.clone(),
        events: &events,
    };
    let protocol = record.options.upload_protocol();
    let transfer = net.bounded(upload::upload(task, protocol));
    tokio::pin!(transfer);
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut transfer => break r,
            _ = ticker.tick() => svc.checkpoint(job, run),
        }
    };
    match result {
        Ok(UploadOutcome::Cancelled) => svc.checkpoint(job, run),
        Ok(UploadOutcome::Done { len, reply }) => {
            if record.job_type == JobType::UploadReply {
                if let Err(e) = svc.store_reply(job, &reply).await {
                    return svc.transfer_failed(job, run, Some(f.index), e);
                }
            }
            svc.job_transferred(job, run, vec![(f.index, len)]).await;
        }
        Err(e) => {
            svc.checkpoint(job, run);
            let e = explained(e, &f.remote_url).await;
            svc.transfer_failed(job, run, Some(f.index), e);
        }
    }
}

/// Transfers one file (the run records durable progress every second meanwhile).
async fn transfer_one(
    svc: &Arc<Service>,
    record: &JobRecord,
    run: RunId,
    f: &FileRecord,
    stall: Duration,
    cancel: &CancellationToken,
    net: &Net<'_>,
) -> Result<Outcome, TransferError> {
    let job = record.id;
    let progress = Progress::starting_at(f.bytes_transferred);
    svc.set_live(job, run, f.index, progress.clone());
    let events = FileEvents {
        svc: svc.clone(),
        job,
        run,
        index: f.index,
    };
    let task = FileTask {
        options: &record.options,
        client: net.client,
        limits: net.limits,
        connections: if record.options.connections > 0 {
            record.options.connections
        } else {
            svc.config.connections_per_file
        }
        .clamp(1, 16),
        record: f,
        part: f.temporary_path(),
        progress,
        stall_timeout: stall,
        cancel: cancel.clone(),
        events: &events,
    };
    let scheme = f
        .remote_url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let transfer = async {
        match scheme.as_str() {
            "http" | "https" => net.bounded(http::download(task)).await,
            "file" => file::copy(task).await,
            other => Err(TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::UnsupportedScheme,
                format!("unsupported URL scheme '{other}'"),
            )),
        }
    };
    transfer.await
}

/// Checks a part file's SHA-256 against the expected lower-case hex digest.
async fn verify(path: &std::path::Path, expected: &str) -> Result<(), TransferError> {
    let path = path.to_owned();
    let expected = expected.to_ascii_lowercase();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)
            .map_err(|e| TransferError::local_io("reading", &path, &e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| TransferError::local_io("reading", &path, &e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        if actual == expected {
            Ok(())
        } else {
            Err(TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::ChecksumMismatch,
                format!("SHA-256 of the downloaded file is {actual}, expected {expected}"),
            ))
        }
    })
    .await
    .map_err(TransferError::internal)?
}
