//! Uploads: plain HTTP `PUT` of the whole file (restarting from zero after a failure), or
//! the tus 1.0 resumable protocol (creation, `HEAD` for the offset, `PATCH` from there).
//!
//! What users see of a tus upload (BITS: `BG_JOB_PROGRESS.BytesTransferred`): the offset
//! the server confirmed, plus what the `PATCH` under way has sent of its body (bytes in
//! flight count, so progress moves smoothly). A `PATCH` that fails leaves sent bytes the
//! server may not have: the server is asked at once (`HEAD`) and its offset shown — one
//! step back, to what the server holds — and the next attempt goes on from there. If the
//! server cannot say, what was shown stays until the next attempt asks; progress never
//! drops to 0 unless the server itself lost the upload (then it starts again from 0).
//!
//! The source was snapshotted (size and modification time) when the job was resumed; a
//! source that changed since is a fatal error, never a mixed upload.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use tokio_util::io::ReaderStream;

use super::error::{self, TransferError};
use super::events::FileEvents;
use super::netclient::decorate;
use super::rangeconn::unless_stopped;
use super::ratelimit::{consume_all, RateLimiter};
use super::task::FileTask;
use super::yielding::NewConnection;
use crate::engine::partfile::Progress;
use crate::model::{ErrorContext, ErrorKind, UploadProtocol};

const TUS_VERSION: &str = "1.0.0";
/// How long the server may take to say where it stands after a failed `PATCH`.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How an upload ended.
pub enum UploadOutcome {
    /// The server has every byte; its last reply body.
    Done {
        len: u64,
        reply: Bytes,
    },
    Cancelled,
}

async fn snapshot_of(task: &FileTask<'_>) -> Result<(String, u64), TransferError> {
    let path = &task.record.local_path;
    let m = task.owner.stat(path.into()).await.map_err(|e| {
        TransferError::local_io("reading the file to upload", std::path::Path::new(path), &e)
    })?;
    Ok((
        format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec()),
        m.len(),
    ))
}

/// Checks the source is still what was snapshotted at resume.
async fn check_unchanged(task: &FileTask<'_>) -> Result<u64, TransferError> {
    let (now, len) = snapshot_of(task).await?;
    match &task.record.validator {
        Some(snap) if *snap != now => Err(TransferError::new(
            ErrorContext::LocalFile,
            ErrorKind::SourceChanged,
            format!(
                "{} changed after the upload was resumed; cancel the job and upload it again",
                task.record.local_path
            ),
        )),
        _ => Ok(len),
    }
}

/// A request body streaming `path` from `offset`, counted and paced; a yielding run's
/// controller watches the connection it flows on (`watch`) while it does.
async fn body_from(
    owner: &crate::owner::Owner,
    path: &str,
    offset: u64,
    progress: Arc<Progress>,
    events: FileEvents,
    limits: Vec<Arc<RateLimiter>>,
    watch: Option<NewConnection>,
) -> Result<reqwest::Body, TransferError> {
    use tokio::io::AsyncSeekExt;
    let f = owner.open_read(path.into()).await.map_err(|e| {
        TransferError::local_io("reading the file to upload", std::path::Path::new(path), &e)
    })?;
    let mut f = tokio::fs::File::from_std(f);
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| TransferError::local_io("reading", std::path::Path::new(path), &e))?;
    progress.written.store(offset, Ordering::SeqCst);
    // Looked for when the first chunk is asked for (the request is on its connection
    // then), again for the next few if not found. The guard lives as long as the body.
    let watching: Arc<parking_lot::Mutex<(u32, Option<super::yielding::Watch>)>> = Arc::default();
    // A yielding upload hands its connection an even number of full segments at a time
    // (16 of the usual 1448 bytes): each chunk waits on the controller's rate, and a burst
    // ending in a lone segment would wait for the receiver's delayed acknowledgement,
    // which the controller would read as queueing.
    let chunk = if watch.is_some() {
        16 * 1448
    } else {
        256 << 10
    };
    let stream = ReaderStream::with_capacity(f, chunk).then(move |chunk| {
        if let Some(w) = &watch {
            let mut slot = watching.lock();
            if slot.1.is_none() && slot.0 < 8 {
                slot.0 += 1;
                slot.1 = w.watch();
            }
        }
        let progress = progress.clone();
        let events = events.clone();
        let limits = limits.clone();
        async move {
            if let Ok(c) = &chunk {
                consume_all(&limits, c.len()).await;
                progress.written.fetch_add(c.len() as u64, Ordering::AcqRel);
                events.bytes(c.len() as u64);
            }
            chunk
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

async fn send(
    task: &FileTask<'_>,
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<Option<reqwest::Response>, TransferError> {
    let credentials = task.options.credentials.as_ref();
    unless_stopped(&task.cancel, super::netclient::send(req, credentials, url))
        .await
        .transpose()
}

fn status_error(resp: &reqwest::Response, url: &str) -> TransferError {
    super::httpmeta::status_error(resp.status(), resp.headers(), url)
}

/// Uploads one file with the job's protocol.
pub async fn upload(
    task: FileTask<'_>,
    protocol: UploadProtocol,
) -> Result<UploadOutcome, TransferError> {
    let len = check_unchanged(&task).await?;
    // A yielding run notes the daemon's connections before its first request.
    let watch = task.yielder.as_ref().and_then(|y| {
        let port = reqwest::Url::parse(&task.record.remote_url)
            .ok()?
            .port_or_known_default()?;
        Some(y.before_upload(port))
    });
    match protocol {
        UploadProtocol::Put => put(task, len, watch).await,
        UploadProtocol::Tus => tus(task, len, watch).await,
    }
}

async fn put(
    task: FileTask<'_>,
    len: u64,
    watch: Option<NewConnection>,
) -> Result<UploadOutcome, TransferError> {
    let url = task.record.remote_url.clone();
    task.events.connecting();
    // A PUT sends the whole file again: the server holds nothing of an earlier attempt.
    task.progress.reset();
    task.events
        .started(Some(len), task.record.validator.clone(), None, 0, false);
    let body = body_from(
        task.owner,
        &task.record.local_path,
        0,
        task.progress.clone(),
        task.events.clone(),
        task.limits.to_vec(),
        watch,
    )
    .await?;
    let method = super::netclient::method_or(task.options, reqwest::Method::PUT);
    let req = decorate(task.client.request(method, &url), task.options)
        .header(CONTENT_LENGTH, len)
        .body(body);
    let Some(resp) = send(&task, req, &url).await? else {
        return Ok(UploadOutcome::Cancelled);
    };
    task.events.response_headers(resp.headers());
    if !resp.status().is_success() {
        return Err(status_error(&resp, &url));
    }
    let reply = resp
        .bytes()
        .await
        .map_err(|e| error::from_reqwest(&e, &url))?;
    check_unchanged(&task).await?;
    Ok(UploadOutcome::Done { len, reply })
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Creates a tus upload of `len` bytes at `url`: where it lives (`None` when stopped).
async fn create(task: &FileTask<'_>, url: &str, len: u64) -> Result<Option<String>, TransferError> {
    let req = decorate(task.client.post(url), task.options)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", len)
        .header(CONTENT_LENGTH, 0);
    let Some(resp) = send(task, req, url).await? else {
        return Ok(None);
    };
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(&resp, url));
    }
    let l = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::TusNoLocation,
                format!("{url}: the tus server created an upload but sent no Location"),
            )
        })?;
    let absolute = resp.url().join(l).map_err(|e| {
        TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::TusBadLocation,
            format!("{url}: Location '{l}': {e}"),
        )
    })?;
    let absolute = absolute.to_string();
    task.events.started(
        Some(len),
        task.record.validator.clone(),
        Some(absolute.clone()),
        0,
        false,
    );
    Ok(Some(absolute))
}

/// After a `PATCH` failed: shows the offset the server confirms (`HEAD`), one step back
/// from the bytes sent; when the server cannot say, keeps what was shown (the store then
/// records it, to show after a restart; where the upload goes on is always asked anew).
async fn confirm_offset(task: &FileTask<'_>, loc: &str) {
    let req = decorate(task.client.head(loc), task.options).header("Tus-Resumable", TUS_VERSION);
    let answer = tokio::time::timeout(CONFIRM_TIMEOUT, send(task, req, loc)).await;
    let confirmed = match answer {
        Ok(Ok(Some(resp))) if resp.status().is_success() => header_u64(&resp, "Upload-Offset"),
        _ => None,
    };
    let progress = &task.progress;
    match confirmed {
        Some(offset) => {
            progress.written.store(offset, Ordering::SeqCst);
            progress.synced.store(offset, Ordering::SeqCst);
        }
        None => {
            let shown = progress.written.load(Ordering::SeqCst);
            progress.synced.store(shown, Ordering::SeqCst);
        }
    }
}

async fn tus(
    task: FileTask<'_>,
    len: u64,
    watch: Option<NewConnection>,
) -> Result<UploadOutcome, TransferError> {
    let url = task.record.remote_url.clone();
    let mut location = task.record.final_url.clone();
    let mut recreated = false;
    task.events.connecting();
    for _round in 0..8 {
        // Creation: POST with the length; the server answers where the upload lives.
        let loc = match &location {
            Some(l) => l.clone(),
            None => {
                let Some(absolute) = create(&task, &url, len).await? else {
                    return Ok(UploadOutcome::Cancelled);
                };
                location = Some(absolute.clone());
                absolute
            }
        };
        // Where does the server say we are?
        let req =
            decorate(task.client.head(&loc), task.options).header("Tus-Resumable", TUS_VERSION);
        let Some(resp) = send(&task, req, &loc).await? else {
            return Ok(UploadOutcome::Cancelled);
        };
        if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::GONE) && !recreated {
            // The server forgot the upload: create it again, from zero.
            recreated = true;
            location = None;
            continue;
        }
        if !resp.status().is_success() {
            return Err(status_error(&resp, &loc));
        }
        let offset = header_u64(&resp, "Upload-Offset").ok_or_else(|| {
            TransferError::new(
                ErrorContext::RemoteFile,
                ErrorKind::TusNoOffset,
                format!("{loc}: HEAD gave no Upload-Offset"),
            )
        })?;
        task.progress.synced.store(offset, Ordering::SeqCst);
        task.events.started(
            Some(len),
            task.record.validator.clone(),
            Some(loc.clone()),
            offset,
            false,
        );
        if offset >= len {
            return Ok(UploadOutcome::Done {
                len,
                reply: Bytes::new(),
            });
        }
        let body = body_from(
            task.owner,
            &task.record.local_path,
            offset,
            task.progress.clone(),
            task.events.clone(),
            task.limits.to_vec(),
            watch.clone(),
        )
        .await?;
        let req = decorate(task.client.patch(&loc), task.options)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Offset", offset)
            .header(CONTENT_TYPE, "application/offset+octet-stream")
            .header(CONTENT_LENGTH, len - offset)
            .body(body);
        let resp = match send(&task, req, &loc).await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Ok(UploadOutcome::Cancelled),
            Err(e) => {
                confirm_offset(&task, &loc).await;
                return Err(e);
            }
        };
        match resp.status() {
            StatusCode::CONFLICT => continue,
            s if s.is_success() => {
                let new_offset = header_u64(&resp, "Upload-Offset").unwrap_or(offset);
                task.progress.synced.store(new_offset, Ordering::SeqCst);
                let reply = resp
                    .bytes()
                    .await
                    .map_err(|e| error::from_reqwest(&e, &loc))?;
                if new_offset >= len {
                    check_unchanged(&task).await?;
                    return Ok(UploadOutcome::Done { len, reply });
                }
            }
            _ => {
                let e = status_error(&resp, &loc);
                confirm_offset(&task, &loc).await;
                return Err(e);
            }
        }
    }
    Err(TransferError::new(
        ErrorContext::RemoteFile,
        ErrorKind::TusNoProgress,
        format!("{url}: the tus server did not accept the upload's bytes"),
    ))
}
