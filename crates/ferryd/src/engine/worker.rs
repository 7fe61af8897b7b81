//! Runs one job: its files, several at once, checkpointing progress about every second,
//! verifying checksums, then one batch sync before the job becomes `transferred`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::error::TransferError;
use super::events::FileEvents;
use super::fleet::PeerFinder;
use super::host::{Host, Report, RunId, RunPlan};
use super::live::LiveRun;
use super::netclient;
use super::partfile::Progress;
use super::ratelimit::RateLimiter;
use super::schedule::Schedules;
use super::scheduler::RunGuard;
use super::sources::{Received, SourceBytes};
use super::task::{FileTask, Outcome};
use super::upload::{self, UploadOutcome};
use super::{download, file, mirrors, yielding};
use crate::model::{Credentials, ErrorContext, ErrorKind, FileRecord, JobRecord, JobType};
use crate::owner::Owner;

/// How often durable offsets are recorded while a file transfers.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What every run of the engine shares.
pub(super) struct Shared {
    pub config: crate::config::Config,
    /// The HTTP client of jobs with default options (one connection pool).
    pub http: reqwest::Client,
    /// The daemon-wide bandwidth limit.
    pub global_limit: Option<Arc<RateLimiter>>,
    /// `[[bandwidth.schedule]]` limiters.
    pub schedules: Arc<Schedules>,
    /// The fleet's peers, when peer caching is on.
    pub peers: OnceLock<Arc<dyn PeerFinder>>,
    /// Bytes received by every run, by where they came from.
    pub received: Arc<Received>,
}

/// One run of one job.
struct Run {
    shared: Arc<Shared>,
    host: Arc<dyn Host>,
    live: Arc<LiveRun>,
    job: Uuid,
    run: RunId,
    owner: Owner,
    cancel: CancellationToken,
    /// The job's failures in a row without progress when the run started.
    failures_in_a_row: u32,
}

impl Run {
    fn report(&self, report: Report) {
        self.host.report(self.job, self.run, report);
    }

    fn failed(&self, index: Option<u32>, e: TransferError) {
        self.host.failed(self.job, self.run, index, e);
    }

    fn events(&self, index: u32) -> FileEvents {
        FileEvents::new(
            self.host.clone(),
            self.live.clone(),
            self.job,
            self.run,
            index,
        )
    }
}

/// Runs the job until it is transferred, fails, or `cancel` fires. The guard tells the
/// host and frees the slot when it returns, whatever happens.
pub(super) async fn run(guard: RunGuard, shared: Arc<Shared>, cancel: CancellationToken) {
    let live = LiveRun::new();
    let Some(plan) = guard.host.claim(guard.job, guard.run, live.clone()) else {
        return;
    };
    let run = Run {
        shared,
        host: guard.host.clone(),
        live,
        job: guard.job,
        run: guard.run,
        owner: plan.owner.clone(),
        cancel,
        failures_in_a_row: plan.failures_in_a_row,
    };
    run_files(&run, plan).await;
}

async fn run_files(r: &Run, plan: RunPlan) {
    let RunPlan {
        job: record,
        files,
        reply_path,
        transfer_time_left,
        ..
    } = plan;
    let stall = Duration::from_secs(record.no_progress_timeout_secs.clamp(1, 60));
    let net = match net_for(r, &record, &files, transfer_time_left).await {
        Ok(net) => net,
        Err(e) => return r.failed(None, e),
    };
    if record.job_type != JobType::Download {
        return run_upload(r, &record, files, reply_path, stall, &net).await;
    }
    // Up to `files_in_parallel` files at once; the first failure stops the others (their
    // progress is kept) and becomes the job's error — unless the job keeps going, when a
    // file that fails for good leaves the others to finish first.
    let parallel = r.shared.config.files_in_parallel.max(1);
    let siblings = r.cancel.child_token();
    let mut pending: Vec<(u32, PathBuf, u64)> = Vec::new();
    let mut failure: Option<(u32, TransferError)> = None;
    let mut stopped = false;
    {
        let record = &record;
        let net = &net;
        let siblings = &siblings;
        let runs = futures::stream::iter(files.into_iter().filter(|f| !f.completed).map(
            |f| async move {
                let index = f.index;
                let path = f.temporary_path();
                let result = if siblings.is_cancelled() {
                    Ok(Outcome::Cancelled)
                } else {
                    fetch_checked(r, record, f, stall, siblings, net).await
                };
                (index, path, result)
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
                    Some((index, path, Ok(Outcome::Done { len }))) => {
                        r.report(Report::FileDownloaded { index, len });
                        pending.push((index, path, len));
                    }
                    Some((_, _, Ok(Outcome::Cancelled))) => stopped = true,
                    Some((index, _, Err(e))) => {
                        let stop_others = e.transient || !record.options.keep_going;
                        if failure.is_none() {
                            failure = Some((index, e));
                        }
                        if stop_others {
                            siblings.cancel();
                        }
                    }
                },
                _ = ticker.tick() => r.report(Report::Checkpoint),
            }
        }
    }
    if stopped || failure.is_some() {
        r.report(Report::Checkpoint);
        settle(r, pending).await;
        if let Some((index, e)) = failure {
            let e = explained(e);
            r.failed(Some(index), e);
        }
        return;
    }
    pending.sort_by_key(|p| p.0);
    match sync_parts(&r.owner, &pending).await {
        Ok(()) => {
            let done: Vec<(u32, u64)> = pending.iter().map(|(i, _, len)| (*i, *len)).collect();
            r.host.transferred(r.job, r.run, done).await;
        }
        Err(e) => r.failed(None, e),
    }
}

/// Transfers one file and checks its SHA-256 when one is expected (given with the file,
/// or claimed by the peers it came from); a mismatch gets one fresh retry from zero
/// before it is fatal. Bytes from peers that fail the check are thrown away, those peers
/// banned, and the file fetched again from the origin alone (not counted as that retry).
async fn fetch_checked(
    r: &Run,
    record: &JobRecord,
    mut f: FileRecord,
    stall: Duration,
    cancel: &CancellationToken,
    net: &Net,
) -> Result<Outcome, TransferError> {
    let mut checksum_retried = false;
    loop {
        let sources = SourceBytes::starting_at(
            f.peer.from_origin,
            f.peer.from_peers,
            r.shared.received.clone(),
        );
        let result = transfer_with_mirrors(r, record, &mut f, (stall, cancel), net, &sources).await;
        let peers_used = sources.peers_used();
        let expected = f.expected_sha256.clone().or_else(|| {
            (!peers_used.is_empty())
                .then(|| sources.claimed_sha256())
                .flatten()
        });
        if matches!(result, Ok(Outcome::Done { .. }))
            && expected.is_none()
            && !peers_used.is_empty()
        {
            r.report(Report::PeersUsed {
                index: f.index,
                peers: peers_used.clone(),
            });
        }
        match (result, &expected) {
            (Ok(Outcome::Done { len }), Some(expected)) => {
                match verify(&r.owner, f.temporary_path(), expected).await {
                    Ok(()) => {
                        if !peers_used.is_empty() {
                            r.report(Report::PeersUsed {
                                index: f.index,
                                peers: peers_used,
                            });
                        }
                        r.report(Report::FileVerified { index: f.index });
                        return Ok(Outcome::Done { len });
                    }
                    Err(e) if e.kind == ErrorKind::ChecksumMismatch && !peers_used.is_empty() => {
                        tracing::warn!(job = %r.job, index = f.index, peers = ?peers_used, "bytes from peers failed the SHA-256 check; banning them and downloading from the origin");
                        if let Some(finder) = r.shared.peers.get() {
                            finder.ban(&peers_used, &e.message);
                        }
                        f.bytes_transferred = 0;
                        f.validator = None;
                        f.segments.clear();
                        f.peer.origin_only = true;
                        f.peer.from_origin = 0;
                        f.peer.from_peers = 0;
                        r.events(f.index).restarted();
                        r.report(Report::OriginOnly { index: f.index });
                    }
                    Err(e) if e.kind == ErrorKind::ChecksumMismatch && !checksum_retried => {
                        tracing::warn!(job = %r.job, index = f.index, "checksum mismatch; downloading the file again");
                        checksum_retried = true;
                        f.peer.from_origin = 0;
                        f.peer.from_peers = 0;
                        f.bytes_transferred = 0;
                        f.validator = None;
                        f.segments.clear();
                        r.events(f.index).restarted();
                    }
                    Err(e) => return Err(e),
                }
            }
            (result, _) => return result,
        }
    }
}

/// Adds what a user needs to act on a certificate failure: whose certificate the server
/// presented, and how to trust its CA.
fn explained(mut e: TransferError) -> TransferError {
    if e.kind == ErrorKind::TlsCertificate {
        if let Some(subject) = e.certificate_subject.take() {
            e.message.push_str(&format!(
                "; the server presented a certificate for '{subject}'"
            ));
        }
        e.message.push_str(
            "; if you trust the CA that signed it, give its PEM file as the job's ca_file \
             (SetJobProperties)",
        );
    }
    e
}

/// Syncs the files finished in this run and records them as completed, so a stopped run
/// keeps them.
async fn settle(r: &Run, pending: Vec<(u32, PathBuf, u64)>) {
    if pending.is_empty() {
        return;
    }
    if sync_parts(&r.owner, &pending).await.is_ok() {
        let done: Vec<(u32, u64)> = pending.iter().map(|(i, _, len)| (*i, *len)).collect();
        r.host.files_completed(r.job, r.run, done).await;
    }
}

async fn sync_parts(owner: &Owner, pending: &[(u32, PathBuf, u64)]) -> Result<(), TransferError> {
    let paths: Vec<PathBuf> = pending.iter().map(|(_, p, _)| p.clone()).collect();
    let first = paths.first().cloned().unwrap_or_default();
    owner
        .sync_parts(paths)
        .await
        .map_err(|e| TransferError::local_io("syncing", &first, &e))
}

/// The network side of a run: client, bandwidth limits, the `max_transfer_time` deadline.
struct Net {
    client: reqwest::Client,
    limits: Vec<Arc<RateLimiter>>,
    deadline: Option<tokio::time::Instant>,
    max_secs: u64,
    connections: u32,
    yielder: Option<Arc<yielding::Yielder>>,
    /// Stops the yielding controller when the run ends.
    _controller: Option<DropGuard>,
}

/// The network side of `record`'s run: its CA file read as its owner, its HTTP client,
/// its bandwidth limits, and the yielding controller when it yields (started here).
async fn net_for(
    r: &Run,
    record: &JobRecord,
    files: &[FileRecord],
    transfer_time_left: Option<Duration>,
) -> Result<Net, TransferError> {
    let config = &r.shared.config;
    let files_read = owner_files(r, record).await?;
    // Bytes from this machine itself cross no link another program shares: nothing to
    // yield to.
    let all_loopback = files.iter().all(|f| {
        crate::model::is_loopback_url(f.final_url.as_deref().unwrap_or(f.url_in_use()))
            && std::iter::once(&f.remote_url)
                .chain(&f.mirrors)
                .all(|u| crate::model::is_loopback_url(u))
    });
    // A run that may take its bytes from the fleet's peers does not yield either: the
    // controller's one limiter per run would hold the peers' LAN bytes to the origin
    // path's window ÷ RTT (a crawl behind a deep origin queue), and a swarm already
    // sends about one copy of each byte over the origin's link.
    let from_peers =
        r.shared.peers.get().is_some() && files.iter().any(|f| peers_allowed(config, record, f));
    let yielder = (yielding::yields(record.priority, record.options.ignore_congestion)
        && !all_loopback
        && !from_peers)
        .then(|| yielding::Yielder::new(r.live.clone()));
    let client = netclient::for_job(
        &record.options,
        &files_read,
        &r.shared.http,
        yielder.is_some(),
    )?;
    if matches!(record.options.credentials, Some(Credentials::Digest { .. })) {
        prime_digest(&client, files).await;
    }
    let mut limits = Vec::new();
    if record.options.bandwidth_limit > 0 {
        limits.push(Arc::new(RateLimiter::new(record.options.bandwidth_limit)));
    }
    if let Some(g) = &r.shared.global_limit {
        limits.push(g.clone());
    }
    limits.extend(r.shared.schedules.for_priority(record.priority));
    // The controller runs as long as the run: dropping the guard stops it.
    let controller = yielder.as_ref().map(|y| {
        limits.push(y.limiter());
        let stop = r.cancel.child_token();
        tokio::spawn(y.clone().drive(stop.clone()));
        stop.drop_guard()
    });
    Ok(Net {
        client,
        limits,
        deadline: transfer_time_left.map(|left| tokio::time::Instant::now() + left),
        max_secs: record.max_transfer_time_secs,
        // A request with its own method (BITS's SetHttpMethod) is sent once per file:
        // ranges over several connections are GET's.
        connections: if record.options.http_method.is_some() {
            1
        } else if record.options.connections > 0 {
            record.options.connections
        } else {
            config.connections_per_file
        }
        .clamp(1, 16),
        yielder,
        _controller: controller,
    })
}

/// Reads, as the job's owner, the files its options name: CA file, CRL file, client
/// certificate and key.
async fn owner_files(r: &Run, record: &JobRecord) -> Result<netclient::OwnerFiles, TransferError> {
    let o = &record.options;
    let s = &o.security;
    let read = |path: &Option<String>, what: &'static str, kind: ErrorKind| {
        let path = path.clone();
        async move {
            let Some(path) = path else {
                return Ok(None);
            };
            match r.owner.read_file(PathBuf::from(&path)).await {
                Ok(bytes) => Ok(Some((path, bytes))),
                Err(e) => Err(TransferError::new(
                    ErrorContext::LocalFile,
                    kind,
                    format!("reading the {what} {path}: {e}"),
                )),
            }
        }
    };
    Ok(netclient::OwnerFiles {
        ca_file: read(&o.ca_file, "CA file", ErrorKind::CaFile).await?,
        crl_file: read(&s.crl_file, "CRL file", ErrorKind::CrlFile).await?,
        client_certificate: read(
            &s.client_certificate,
            "client certificate",
            ErrorKind::ClientCertificate,
        )
        .await?,
        client_key: read(&s.client_key, "client key", ErrorKind::ClientCertificate).await?,
    })
}

/// Asks for the challenge of each of a Digest job's unfinished files whose challenge is
/// not known yet (`engine/digest.rs`).
async fn prime_digest(client: &reqwest::Client, files: &[FileRecord]) {
    for f in files.iter().filter(|f| !f.completed) {
        let url = f.final_url.as_deref().unwrap_or(&f.remote_url);
        if !super::digest::knows(url) {
            super::digest::prime(client, url).await;
        }
    }
}

impl Net {
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
async fn run_upload(
    r: &Run,
    record: &JobRecord,
    files: Vec<FileRecord>,
    reply_path: Option<PathBuf>,
    stall: Duration,
    net: &Net,
) {
    let Some(f) = files.into_iter().find(|f| !f.completed) else {
        r.host.transferred(r.job, r.run, Vec::new()).await;
        return;
    };
    // What was shown last stays shown until the server says where the upload stands
    // (a tus `HEAD`; a `PUT` starts again from 0): never 0 while reconnecting.
    let progress = Progress::starting_at(f.bytes_transferred);
    r.live.set_bytes(f.index, progress.clone());
    let events = r.events(f.index);
    let task = FileTask {
        options: &record.options,
        client: &net.client,
        limits: &net.limits,
        connections: 1,
        record: &f,
        part: f.temporary_path(),
        progress,
        stall_timeout: stall,
        cancel: r.cancel.clone(),
        events: &events,
        owner: &r.owner,
        sources: SourceBytes::starting_at(0, 0, Arc::default()),
        peers: None,
        yielder: net.yielder.clone(),
    };
    let protocol = record.options.upload_protocol();
    let transfer = net.bounded(upload::upload(task, protocol));
    tokio::pin!(transfer);
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut transfer => break result,
            _ = ticker.tick() => r.report(Report::Checkpoint),
        }
    };
    match result {
        Ok(UploadOutcome::Cancelled) => r.report(Report::Checkpoint),
        Ok(UploadOutcome::Done { len, reply }) => {
            if let Some(path) = reply_path.filter(|_| record.job_type == JobType::UploadReply) {
                if let Err(e) = r
                    .owner
                    .write_file_atomically(path.clone(), reply.to_vec())
                    .await
                {
                    let e = TransferError::local_io("writing the reply to", &path, &e);
                    return r.failed(Some(f.index), e);
                }
                r.report(Report::ReplyStored { path });
            }
            r.host.transferred(r.job, r.run, vec![(f.index, len)]).await;
        }
        Err(e) => {
            r.report(Report::Checkpoint);
            let e = explained(e);
            r.failed(Some(f.index), e);
        }
    }
}

/// Transfers one file from the URL in use, and when that URL fails for good
/// ([`mirrors::fails_for_good`]) from the next of its URLs (its mirrors, then its own URL
/// again), each at most once in a run. The durable bytes stay: the next URL is asked for
/// the rest with `If-Range` under the validator they were fetched with, so a server with
/// other content (another validator) sends the whole file and the file starts over.
/// `f` follows the switches (the host's record of the file after each).
async fn transfer_with_mirrors(
    r: &Run,
    record: &JobRecord,
    f: &mut FileRecord,
    (stall, cancel): (Duration, &CancellationToken),
    net: &Net,
    sources: &Arc<SourceBytes>,
) -> Result<Outcome, TransferError> {
    let mut tried = 1;
    let mut failures_before = r.failures_in_a_row;
    let mut earlier_transient = false;
    loop {
        let mut attempt = f.clone();
        attempt.remote_url = f.url_in_use().to_string();
        let err = match transfer_one(r, record, &attempt, stall, cancel, net, sources.clone()).await
        {
            Err(e) => e,
            done => return done,
        };
        let for_good = mirrors::fails_for_good(&err, failures_before);
        if for_good && tried >= f.url_count() {
            return Err(mirrors::when_every_url_failed(
                err,
                f.url_count(),
                earlier_transient,
            ));
        }
        if !for_good || cancel.is_cancelled() {
            return Err(err);
        }
        let to = mirrors::next_url(f.mirror_in_use, f.url_count());
        let Some(now) = r.host.switch_url(r.job, r.run, f.index, to) else {
            return Err(err);
        };
        tracing::info!(
            job = %r.job,
            file = f.index,
            code = %err.kind,
            to = %crate::model::mask_url(now.url_in_use()),
            offset = now.bytes_transferred,
            "the URL in use failed for good ({}); moving to the next mirror",
            err.message
        );
        earlier_transient |= err.transient;
        *f = now;
        tried += 1;
        failures_before = 0;
    }
}

/// Transfers one file (the run records durable progress every second meanwhile).
async fn transfer_one(
    r: &Run,
    record: &JobRecord,
    f: &FileRecord,
    stall: Duration,
    cancel: &CancellationToken,
    net: &Net,
    sources: Arc<SourceBytes>,
) -> Result<Outcome, TransferError> {
    let progress = Progress::starting_at(f.bytes_transferred);
    r.live.set_bytes(f.index, progress.clone());
    r.live.set_sources(f.index, sources.clone());
    let peers = r
        .shared
        .peers
        .get()
        .filter(|_| peers_allowed(&r.shared.config, record, f))
        .cloned();
    let events = r.events(f.index);
    let task = FileTask {
        options: &record.options,
        client: &net.client,
        limits: &net.limits,
        connections: net.connections,
        record: f,
        part: f.temporary_path(),
        progress,
        stall_timeout: stall,
        cancel: cancel.clone(),
        events: &events,
        owner: &r.owner,
        sources,
        peers,
        yielder: net.yielder.clone(),
    };
    let scheme = f
        .remote_url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "http" | "https" => net.bounded(download::download(task)).await,
        "file" => file::copy(task).await,
        other => Err(TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::UnsupportedScheme,
            format!("unsupported URL scheme '{other}'"),
        )),
    }
}

/// True when the fleet's peers may be asked for file `f`: peer caching is on, the job is
/// a client (its own mode, else the daemon's default), it sends no credentials or
/// private headers (their content is never shared, and its URL is not told to peers),
/// and no peer's bytes of the file were rejected.
fn peers_allowed(config: &crate::config::Config, job: &JobRecord, f: &FileRecord) -> bool {
    config.peers.enabled
        && job
            .options
            .peers
            .unwrap_or(config.peers.default_job_peers)
            .is_client()
        && !crate::model::request_is_private(
            &job.options,
            &f.remote_url,
            &config.peers.public_origins,
        )
        && !f.peer.origin_only
        && f.remote_url.starts_with("http")
}

/// Checks a part file's SHA-256 against the expected lower-case hex digest.
async fn verify(owner: &Owner, path: PathBuf, expected: &str) -> Result<(), TransferError> {
    let expected = expected.to_ascii_lowercase();
    let file = owner
        .open_read(path.clone())
        .await
        .map_err(|e| TransferError::local_io("reading", &path, &e))?;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = file;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
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
