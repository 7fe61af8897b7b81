//! One file apt asks for, as a ferry job: created with apt's SHA-256 (ferry verifies the
//! file, and the fleet's peers can serve it by that hash), or taken over from an earlier
//! run that left it unfinished; followed until it is transferred; completed (the file
//! appears at apt's destination by an atomic rename) and hashed for apt. A failure is
//! put in apt's terms (`failure`), and the job is cancelled (nothing stays behind) or,
//! when apt may retry, suspended with its bytes for the next try.
//!
//! May use: `request`, `failure`, `hashes`, `settings`, `status`, ferry-client.

use std::sync::{Arc, Mutex};

use ferry_client::{
    Error, ErrorKind, FileSpec, Job, JobInfo, JobProperties, JobState, Manager, NewJob,
};
use futures::StreamExt;

use crate::failure::{Failure, Leave};
use crate::hashes::FileHashes;
use crate::request::Request;
use crate::settings::Settings;
use crate::status::{FileProgress, Progress};

/// The start of the description of every job the method makes: `apt: URI`. A later run
/// finds its unfinished jobs by it.
pub const DESCRIPTION_PREFIX: &str = "apt: ";

/// What a fetched file reports to apt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its hashes, of the file at apt's destination.
    pub hashes: FileHashes,
    /// Bytes the job already had when this run took it over (apt's `Resume-Point`).
    pub resumed_from: u64,
    /// Bytes that came from the fleet's peers.
    pub from_peers: u64,
}

/// What every fetch of one method run shares.
pub struct Fetcher {
    /// The connection to ferryd.
    pub manager: Manager,
    /// apt's configuration.
    pub settings: Settings,
    /// What the status line shows.
    pub progress: Arc<Mutex<Progress>>,
    /// The unfinished jobs earlier runs left (listed once, taken one by one).
    left_over: tokio::sync::OnceCell<Mutex<Vec<JobInfo>>>,
    /// The jobs under way now (suspended if the method is stopped).
    running: Mutex<Vec<Job>>,
}

/// The failure for a call to ferryd that failed.
fn call_failure(what: &str, e: &Error) -> Failure {
    let message = format!("ferry: {what}: {e}");
    match e.kind() {
        ErrorKind::Unavailable | ErrorKind::ResourceExhausted | ErrorKind::Cancelled => {
            Failure::transient(message)
        }
        _ => Failure::plain(message),
    }
}

impl Fetcher {
    /// A fetcher over `manager`.
    pub fn new(manager: Manager, settings: Settings, progress: Arc<Mutex<Progress>>) -> Fetcher {
        Fetcher {
            manager,
            settings,
            progress,
            left_over: tokio::sync::OnceCell::new(),
            running: Mutex::new(Vec::new()),
        }
    }

    /// Fetches `req` to its destination.
    pub async fn fetch(&self, req: &Request) -> Result<Fetched, Failure> {
        let (job, resumed_from) = self.take_over_or_create(req).await?;
        self.running.lock().unwrap().push(job.clone());
        let result = self.follow_and_complete(req, &job, resumed_from).await;
        self.running.lock().unwrap().retain(|j| j.id() != job.id());
        self.progress.lock().unwrap().remove(&req.uri);
        match result {
            Ok(fetched) => Ok(fetched),
            Err(mut failure) => {
                if failure.is_hash_mismatch() {
                    failure.received = self.part_hashes(&job).await;
                }
                // Best effort: a job that cannot be cancelled now (ferryd away) is found
                // and cancelled by the next run, which sees it as left over.
                let _ = match failure.leave() {
                    Leave::Cancel => job.cancel().await.map(drop),
                    Leave::Keep => job.suspend().await.map(drop),
                };
                Err(failure)
            }
        }
    }

    /// Suspends every job under way (the method is stopping: apt went away or gave the
    /// files up); their bytes stay for the next run.
    pub async fn suspend_running(&self) {
        let jobs: Vec<Job> = self.running.lock().unwrap().drain(..).collect();
        for job in jobs {
            let _ = job.suspend().await;
        }
    }

    /// The hashes of the job's part file (what was received), when it can be read.
    async fn part_hashes(&self, job: &Job) -> Option<FileHashes> {
        let file = job.files().await.ok()?.into_iter().next()?;
        let path = std::path::PathBuf::from(file.temporary_path);
        tokio::task::spawn_blocking(move || FileHashes::of_file(&path).ok())
            .await
            .ok()
            .flatten()
    }

    /// A job of an earlier run for the same file (same URI, destination and SHA-256, not
    /// failed), or a new one, resumed; with the bytes it had. Earlier jobs for the same
    /// URI that do not fit are cancelled.
    async fn take_over_or_create(&self, req: &Request) -> Result<(Job, u64), Failure> {
        let description = format!("{DESCRIPTION_PREFIX}{}", req.uri);
        let candidates: Vec<JobInfo> = {
            let left_over = self.left_over().await;
            let mut all = left_over.lock().unwrap();
            let (mine, rest) = all.drain(..).partition(|j| j.description == description);
            *all = rest;
            mine
        };
        let mut taken = None;
        for info in candidates {
            let job = self.manager.job_unchecked(info.id);
            let fits = match (&req.expected.sha256, info.state(), taken.is_none()) {
                (Some(sha), state, true) if state != JobState::Error && !state.is_final() => job
                    .files()
                    .await
                    .ok()
                    .and_then(|f| f.into_iter().next())
                    .is_some_and(|f| {
                        f.local_path == req.dest.to_string_lossy()
                            && f.remote_url == req.url
                            && f.expected_sha256.as_deref() == Some(sha.as_str())
                    }),
                _ => false,
            };
            if fits {
                taken = Some((job, info.bytes_transferred));
            } else {
                let _ = job.cancel().await;
            }
        }
        if let Some((job, had)) = taken {
            // Suspended by the run that left it, or waiting to retry; one still queued or
            // transferring (its method was killed) just goes on.
            if job
                .info()
                .await
                .is_ok_and(|i| matches!(i.state(), JobState::Suspended | JobState::TransientError))
            {
                job.resume()
                    .await
                    .map_err(|e| call_failure("resuming the job an earlier run left", &e))?;
            }
            return Ok((job, had));
        }
        let mut spec = FileSpec::new(&req.url, req.dest.to_string_lossy());
        if let Some(sha) = &req.expected.sha256 {
            spec = spec.sha256(sha);
        }
        let mut new = NewJob::download(format!("apt {}", req.short_name()));
        new.description = description;
        new.priority = self.settings.priority;
        new.files = vec![spec];
        new.properties = Some(JobProperties {
            minimum_retry_delay_secs: Some(self.settings.retry_delay.as_secs()),
            no_progress_timeout_secs: Some(self.settings.timeout.as_secs()),
            proxy: self.settings.proxy_for(&req.scheme, &req.host),
            ..Default::default()
        });
        let job = self
            .manager
            .create_job_with(new)
            .await
            .map_err(|e| call_failure(&format!("creating a job for {}", req.url), &e))?;
        if let Err(e) = job.resume().await {
            let _ = job.cancel().await;
            return Err(call_failure("starting the job", &e));
        }
        Ok((job, 0))
    }

    /// The unfinished jobs of earlier runs (listed at the first file).
    async fn left_over(&self) -> &Mutex<Vec<JobInfo>> {
        self.left_over
            .get_or_init(|| async {
                let jobs = self.manager.jobs(false).await.unwrap_or_default();
                Mutex::new(
                    jobs.into_iter()
                        .filter(|j| j.description.starts_with(DESCRIPTION_PREFIX))
                        .collect(),
                )
            })
            .await
    }

    /// Follows the job until it is transferred, then completes it and hashes the file.
    async fn follow_and_complete(
        &self,
        req: &Request,
        job: &Job,
        resumed_from: u64,
    ) -> Result<Fetched, Failure> {
        let info = self.follow(req, job).await?;
        self.complete(req, job, &info).await?;
        let dest = req.dest.clone();
        let hashes = tokio::task::spawn_blocking(move || FileHashes::of_file(&dest))
            .await
            .map_err(|e| Failure::plain(format!("ferry: hashing {}: {e}", req.dest.display())))?
            .map_err(|e| {
                Failure::plain(format!(
                    "ferry: the job completed but {} cannot be read: {e}",
                    req.dest.display()
                ))
            })?;
        Ok(Fetched {
            hashes,
            resumed_from,
            from_peers: info.bytes_from_peers,
        })
    }

    /// Waits until the job is transferred; the job's error in apt's terms otherwise.
    async fn follow(&self, req: &Request, job: &Job) -> Result<JobInfo, Failure> {
        let mut watch = Box::pin(
            job.watch()
                .await
                .map_err(|e| call_failure("watching the job", &e))?,
        );
        while let Some(item) = watch.next().await {
            let info = item.map_err(|e| {
                let mut f = call_failure("following the job", &e);
                f.message.push_str(&format!(
                    "; the job {} stays, and the next run goes on from its bytes",
                    job.id()
                ));
                f
            })?;
            self.show(req, &info);
            if let (Some(max), Some(total)) = (req.maximum_size, info.bytes_total) {
                if total > max {
                    return Err(Failure {
                        reason: Some("MaximumSizeExceeded".into()),
                        ..Failure::plain(format!(
                            "File is larger than expected ({total} > {max}). This is normally \
                             due to an outdated index"
                        ))
                    });
                }
            }
            match info.state() {
                JobState::Transferred => return Ok(info),
                JobState::Error => {
                    let (code, message) = info
                        .error
                        .as_ref()
                        .map(|e| (e.code.as_str(), e.message.as_str()))
                        .unwrap_or(("unknown", "the job failed"));
                    return Err(Failure::from_job_error(code, message));
                }
                state if state.is_final() => {
                    return Err(Failure::plain(format!(
                        "ferry: the job {} was {state} by someone else",
                        job.id()
                    )))
                }
                _ => {}
            }
        }
        Err(Failure::transient(format!(
            "ferry: the watch of the job {} ended before it was transferred",
            job.id()
        )))
    }

    /// Shows where the job stands in the status line.
    fn show(&self, req: &Request, info: &JobInfo) {
        let note = (info.state() == JobState::TransientError).then(|| {
            format!(
                "retrying: {}",
                info.error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("a transient error")
            )
        });
        self.progress.lock().unwrap().set(
            &req.uri,
            req.short_name(),
            FileProgress {
                done: info.bytes_transferred,
                total: info.bytes_total.or(req.expected.size),
                from_peers: info.bytes_from_peers,
                rate: info.bytes_per_second,
                note,
            },
        );
    }

    /// Completes the job: the file moves to apt's destination. A complete cut short by
    /// ferryd going away is asked again (it answers with how the job ended).
    async fn complete(&self, req: &Request, job: &Job, info: &JobInfo) -> Result<(), Failure> {
        let mut outcome = job.complete().await;
        if matches!(&outcome, Err(e) if e.kind() == ErrorKind::Unavailable) {
            outcome = job.complete().await;
        }
        if matches!(&outcome, Ok(o) if o.files_committed == 1) {
            return Ok(());
        }
        // A first complete that moved the file before the connection broke leaves the
        // job acknowledged and the file in place: that is success too.
        let acknowledged = job
            .info()
            .await
            .is_ok_and(|i| i.state() == JobState::Acknowledged);
        if acknowledged && req.dest.exists() && info.state() == JobState::Transferred {
            return Ok(());
        }
        match outcome {
            Ok(o) => Err(Failure::plain(format!(
                "ferry: completing the job {} moved no file to {} ({} discarded)",
                job.id(),
                req.dest.display(),
                o.files_discarded
            ))),
            Err(e) => Err(call_failure("completing the job", &e)),
        }
    }
}
