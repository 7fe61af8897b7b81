//! `http` and `https` downloads: Range + If-Range resume, Content-Range checks, restart on
//! changed content, servers without ranges or lengths.

use reqwest::header;
use reqwest::StatusCode;

use super::error::TransferError;
use super::httpmeta::{content_range, content_range_text, no_store, status_error, validator};
use super::partfile::{self, Writer};
use super::rangeconn::{self, send, Next};
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind};

/// Downloads one file into its part file, continuing from the recorded offset: from the
/// fleet's peers when they have it, else from the origin.
pub async fn download(task: FileTask<'_>) -> Result<Outcome, TransferError> {
    if let Some(outcome) = super::peerfetch::try_peers(&task).await? {
        return Ok(outcome);
    }
    if task.connections > 1 || !task.record.segments.is_empty() {
        match super::segmented::download(&task, task.connections).await? {
            super::segmented::Segmented::Done(outcome) => return Ok(outcome),
            super::segmented::Segmented::Fallback => {}
        }
    }
    let client = task.client;
    let url = task.record.remote_url.clone();
    let part = task.part.clone();
    let start = if task.record.completed {
        0
    } else {
        task.record.bytes_transferred
    };
    // A file that starts from zero is created once the answer is known (a small body is
    // then created and written in one go); a resumed one is opened now.
    let (mut file, mut offset) = if start == 0 {
        (None, 0)
    } else {
        let (f, o) = open_part(&task, start).await?;
        (Some(f), o)
    };
    let mut known_validator = if offset > 0 {
        task.record.validator.clone()
    } else {
        None
    };
    task.progress
        .written
        .store(offset, std::sync::atomic::Ordering::SeqCst);
    task.progress
        .synced
        .store(offset, std::sync::atomic::Ordering::SeqCst);

    // At most one restart per call: a second mismatch is the server's fault, retried later.
    let mut restarts = 0;
    // The response to write, the file's size if known, and where this response's bytes
    // end (the expected size: a body that goes past it is cut off).
    let (response, total, limit) = loop {
        let mut request = super::netclient::for_download(client.get(&url), task.options);
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
            if let Some(v) = &known_validator {
                request = request.header(header::IF_RANGE, v.as_str());
            }
        }
        task.events.connecting();
        let Some(response) = send(&task.cancel, task.stall_timeout, request, &url).await? else {
            return Ok(Outcome::Cancelled);
        };
        let status = response.status();
        let headers = response.headers().clone();
        let restart = match status {
            StatusCode::PARTIAL_CONTENT => {
                let known = task.record.bytes_total.filter(|_| offset > 0);
                match content_range(&headers) {
                    Some(r)
                        if r.start == offset
                            && (known.is_none() || r.total.is_none() || r.total == known) =>
                    {
                        break (response, r.total.or(known), Some(r.end + 1));
                    }
                    // The right place in a file of another size: the content changed
                    // (a server without validators), so the file starts over.
                    Some(r) if r.start == offset => true,
                    _ => {
                        // Never written anywhere: the durable bytes stay, the next attempt
                        // asks for the same range again.
                        let got = content_range_text(&headers);
                        let size = known.map(|t| format!(" of {t}")).unwrap_or_default();
                        return Err(TransferError::new(
                            ErrorContext::RemoteFile,
                            ErrorKind::BadRange,
                            format!(
                                "{url}: asked for bytes from {offset}{size}, the server answered \
                                 206 with {}; nothing of it was written, ferry will retry \
                                 from byte {offset}",
                                match got {
                                    Some(v) => format!("Content-Range: {v}"),
                                    None => "no Content-Range".to_string(),
                                }
                            ),
                        ));
                    }
                }
            }
            StatusCode::OK => {
                let total = response.content_length();
                // The same content (same strong validator) has the size seen before.
                let same = offset > 0
                    && known_validator.is_some()
                    && validator(&headers) == known_validator;
                let total = total.or(task.record.bytes_total.filter(|_| same));
                if let Some(file) = file.as_ref().filter(|_| offset > 0) {
                    // The range was ignored or the content changed: start over with this body.
                    tracing::info!(url, offset, "server sent the whole file; restarting it");
                    file.set_len(0)
                        .map_err(|e| TransferError::local_io("truncating", &part, &e))?;
                    offset = 0;
                    task.progress.reset();
                    task.events.restarted();
                }
                break (response, total, total);
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => true,
            s => return Err(status_error(s, &headers, &url)),
        };
        if restart {
            restarts += 1;
            if restarts > 1 {
                return Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::BadRange,
                    format!(
                        "{url}: the server refused the range from byte {offset} twice \
                         (416, or a size that keeps changing)"
                    ),
                ));
            }
            tracing::info!(
                url,
                offset,
                "range refused (416) or the size changed; restarting the file"
            );
            if let Some(file) = &file {
                file.set_len(0)
                    .map_err(|e| TransferError::local_io("truncating", &part, &e))?;
            }
            offset = 0;
            known_validator = None;
            task.progress.reset();
            task.events.restarted();
        }
    };

    // A yielding job's controller watches this connection while its body is read.
    let _watch = task.yielder.as_ref().and_then(|y| y.watch(&response));
    let headers = response.headers();
    let total = total.or_else(|| {
        if offset == 0 {
            response.content_length()
        } else {
            None
        }
    });
    let limit = limit.or(total);
    let final_url = response.url().to_string();
    task.events.started(
        total,
        validator(headers),
        Some(final_url),
        offset,
        no_store(headers),
    );

    if let Some(len) = limit.filter(|&l| offset == 0 && l <= SMALL_BODY) {
        return small_body(&task, response, file, len, &url).await;
    }
    let file = match file.take() {
        Some(f) => f,
        None => open_part(&task, 0).await?.0,
    };

    // Kept to cut the part file back if the body runs past its announced end.
    let handle = file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", &part, &e))?;
    let writer = Writer::start(file, offset, task.progress.clone())
        .map_err(|e| TransferError::local_io("writing", &part, &e))?;
    let mut response = response;
    let mut received = offset;
    loop {
        match next_chunk(&task, &mut response, &url).await {
            Ok(Next::Stopped) => {
                let _ = writer.finish(true).await;
                return Ok(Outcome::Cancelled);
            }
            Err(e) => {
                finish_after_error(writer, &part).await?;
                return Err(e);
            }
            Ok(Next::End) => break,
            Ok(Next::Chunk(chunk)) => {
                if let Some(limit) = limit.filter(|&l| received + chunk.len() as u64 > l) {
                    // More than announced: nothing past the expected end is written, and
                    // this response's bytes are not trusted either.
                    let _ = writer.finish(false).await;
                    cut_back(&handle, &part, offset, task.progress.as_ref()).await?;
                    let size = total
                        .map(|t| format!("; the file's expected size is {t} bytes"))
                        .unwrap_or_default();
                    return Err(TransferError::new(
                        ErrorContext::RemoteFile,
                        ErrorKind::TooLong,
                        format!(
                            "{url}: the server sent more than the {} bytes it announced from \
                             byte {offset}{size}; this answer was discarded, ferry will retry \
                             from byte {offset}",
                            limit - offset
                        ),
                    ));
                }
                received += chunk.len() as u64;
                let moved = chunk.len() as u64;
                task.sources
                    .origin
                    .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                super::ratelimit::consume_all(task.limits, chunk.len()).await;
                if writer.write(chunk).await.is_err() {
                    let e = writer
                        .finish(false)
                        .await
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("writer stopped"));
                    return Err(TransferError::local_io("writing", &part, &e));
                }
                task.events.bytes(moved);
            }
        }
    }
    let len = writer
        .finish(false)
        .await
        .map_err(|e| TransferError::local_io("writing", &part, &e))?;
    if let Some(total) = total {
        if len < total {
            return Err(TransferError::new(
                ErrorContext::Transport,
                ErrorKind::ConnectionCut,
                format!("{url}: the connection ended after {len} of {total} bytes"),
            ));
        }
    }
    debug_assert_eq!(received, len);
    Ok(Outcome::Done { len })
}

/// Bodies up to this size (known in advance) are gathered in memory and written with one
/// `pwrite`: many small files then cost no writer thread hand-offs.
const SMALL_BODY: u64 = 256 << 10;

/// Opens (or creates) the part file, as the job's owner.
async fn open_part(task: &FileTask<'_>, start: u64) -> Result<(std::fs::File, u64), TransferError> {
    task.owner
        .open_part(task.part.clone(), start)
        .await
        .map_err(|e| TransferError::local_io("opening", &task.part, &e))
}

/// Receives a whole small body of `len` announced bytes, then writes it at offset 0 of the
/// part file (creating it when `file` is `None`), in one blocking call. An interrupted body
/// writes nothing (the next attempt starts over).
async fn small_body(
    task: &FileTask<'_>,
    mut response: reqwest::Response,
    file: Option<std::fs::File>,
    len: u64,
    url: &str,
) -> Result<Outcome, TransferError> {
    let mut body: Vec<u8> = Vec::with_capacity(len as usize);
    loop {
        match next_chunk(task, &mut response, url).await? {
            Next::Stopped => return Ok(Outcome::Cancelled),
            Next::End => break,
            Next::Chunk(chunk) => {
                if body.len() as u64 + chunk.len() as u64 > len {
                    return Err(TransferError::new(
                        ErrorContext::RemoteFile,
                        ErrorKind::TooLong,
                        format!(
                            "{url}: the server sent more than the {len} bytes it announced; \
                             this answer was discarded, ferry will retry"
                        ),
                    ));
                }
                super::ratelimit::consume_all(task.limits, chunk.len()).await;
                body.extend_from_slice(&chunk);
                let moved = chunk.len() as u64;
                // Shown as progress while it arrives; durable only once written and synced
                // (checkpoints record `synced`, which stays at 0 until then).
                task.progress
                    .written
                    .store(body.len() as u64, std::sync::atomic::Ordering::SeqCst);
                task.events.bytes(moved);
            }
        }
    }
    if (body.len() as u64) < len {
        return Err(TransferError::new(
            ErrorContext::Transport,
            ErrorKind::ConnectionCut,
            format!(
                "{url}: the connection ended after {} of {len} bytes",
                body.len()
            ),
        ));
    }
    task.owner
        .write_part(task.part.clone(), file, body)
        .await
        .map_err(|e| TransferError::local_io("writing", &task.part, &e))?;
    task.sources
        .origin
        .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
    Ok(Outcome::Done { len })
}

/// Truncates the part file back to `offset` (durably) and says so in `progress`: the
/// bytes after it came from an answer that turned out to be wrong.
async fn cut_back(
    file: &std::fs::File,
    part: &std::path::Path,
    offset: u64,
    progress: &partfile::Progress,
) -> Result<(), TransferError> {
    let file = file
        .try_clone()
        .map_err(|e| TransferError::local_io("truncating", part, &e))?;
    tokio::task::spawn_blocking(move || {
        file.set_len(offset)?;
        file.sync_data()
    })
    .await
    .map_err(TransferError::internal)?
    .map_err(|e| TransferError::local_io("truncating", part, &e))?;
    // The writer has stopped: nothing else moves these counters now.
    progress
        .written
        .store(offset, std::sync::atomic::Ordering::SeqCst);
    progress
        .synced
        .store(offset, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// The next chunk of `response`'s body, read for `task`.
async fn next_chunk(
    task: &FileTask<'_>,
    response: &mut reqwest::Response,
    url: &str,
) -> Result<Next, TransferError> {
    rangeconn::next_chunk(&task.cancel, task.stall_timeout, response, url).await
}

/// After a network error: flush and sync what arrived so the checkpoint keeps it.
async fn finish_after_error(writer: Writer, part: &std::path::Path) -> Result<(), TransferError> {
    writer
        .finish(true)
        .await
        .map(|_| ())
        .map_err(|e| TransferError::local_io("writing", part, &e))
}
