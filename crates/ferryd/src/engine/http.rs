//! `http` and `https` downloads: Range + If-Range resume, Content-Range checks, restart on
//! changed content, servers without ranges or lengths.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::error::{self, TransferError};
use super::partfile::{self, Writer};
use super::{FileTask, Outcome};
use crate::model::ErrorContext;

/// The validator to resume under: a strong ETag, else Last-Modified.
fn validator(headers: &HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !etag.starts_with("W/") {
            return Some(etag.to_string());
        }
    }
    headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (start, total).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.parse().ok()?, total))
}

/// Downloads one file into its part file, continuing from the recorded offset.
pub async fn download(task: FileTask<'_>) -> Result<Outcome, TransferError> {
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
    let opened = {
        let part = part.clone();
        tokio::task::spawn_blocking(move || partfile::open_part(&part, start))
            .await
            .map_err(|e| TransferError::fatal(ErrorContext::Daemon, "internal", e.to_string()))?
    };
    let (file, mut offset) = opened.map_err(|e| TransferError::local_io("opening", &part, &e))?;
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
    let (response, total) = loop {
        let mut request = super::netclient::decorate(client.get(&url), task.options);
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
            if let Some(v) = &known_validator {
                request = request.header(header::IF_RANGE, v.as_str());
            }
        }
        task.events.connecting();
        let response = tokio::select! {
            _ = task.cancel.cancelled() => return Ok(Outcome::Cancelled),
            r = tokio::time::timeout(task.stall_timeout, request.send()) => match r {
                Err(_) => return Err(stalled(&url, task.stall_timeout)),
                Ok(Err(e)) => return Err(error::from_reqwest(&e, &url)),
                Ok(Ok(r)) => r,
            },
        };
        let status = response.status();
        let headers = response.headers().clone();
        let restart = match status {
            StatusCode::PARTIAL_CONTENT => match content_range(&headers) {
                Some((s, total)) if s == offset => {
                    break (response, total);
                }
                _ => true,
            },
            StatusCode::OK => {
                let total = response.content_length();
                if offset > 0 {
                    // The range was ignored or the content changed: start over with this body.
                    tracing::info!(url, offset, "server sent the whole file; restarting it");
                    file.set_len(0)
                        .map_err(|e| TransferError::local_io("truncating", &part, &e))?;
                    offset = 0;
                    task.progress.reset();
                    task.events.restarted();
                }
                break (response, total);
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => true,
            s => {
                let retry_after = headers
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(error::parse_retry_after);
                return Err(error::from_status(s.as_u16(), &url, retry_after));
            }
        };
        if restart {
            restarts += 1;
            if restarts > 1 {
                return Err(TransferError::transient(
                    ErrorContext::RemoteFile,
                    "bad_range",
                    format!("{url}: the server answered a range request with the wrong range"),
                ));
            }
            tracing::info!(
                url,
                offset,
                "range answer did not match; restarting the file"
            );
            file.set_len(0)
                .map_err(|e| TransferError::local_io("truncating", &part, &e))?;
            offset = 0;
            known_validator = None;
            task.progress.reset();
            task.events.restarted();
        }
    };

    let headers = response.headers();
    let total = total.or_else(|| {
        if offset == 0 {
            response.content_length()
        } else {
            None
        }
    });
    let final_url = response.url().to_string();
    task.events
        .started(total, validator(headers), Some(final_url), offset);

    let writer = Writer::start(file, offset, task.progress.clone())
        .map_err(|e| TransferError::local_io("writing", &part, &e))?;
    let mut response = response;
    let mut received = offset;
    loop {
        let next = tokio::select! {
            _ = task.cancel.cancelled() => {
                let _ = writer.finish(true).await;
                return Ok(Outcome::Cancelled);
            }
            r = tokio::time::timeout(task.stall_timeout, response.chunk()) => r,
        };
        match next {
            Err(_) => {
                finish_after_error(writer, &part).await?;
                return Err(stalled(&url, task.stall_timeout));
            }
            Ok(Err(e)) => {
                finish_after_error(writer, &part).await?;
                return Err(error::from_reqwest(&e, &url));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                received += chunk.len() as u64;
                super::ratelimit::consume_all(task.limits, chunk.len()).await;
                if writer.write(chunk).await.is_err() {
                    let e = writer
                        .finish(false)
                        .await
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("writer stopped"));
                    return Err(TransferError::local_io("writing", &part, &e));
                }
                task.events.bytes();
            }
        }
    }
    let len = writer
        .finish(false)
        .await
        .map_err(|e| TransferError::local_io("writing", &part, &e))?;
    if let Some(total) = total {
        if len < total {
            return Err(TransferError::transient(
                ErrorContext::Transport,
                "connection_cut",
                format!("{url}: the connection ended after {len} of {total} bytes"),
            ));
        }
        if len > total {
            return Err(TransferError::transient(
                ErrorContext::RemoteFile,
                "length_mismatch",
                format!("{url}: the server sent {len} bytes, more than the {total} it announced"),
            ));
        }
    }
    debug_assert_eq!(received, len);
    Ok(Outcome::Done { len })
}

/// After a network error: flush and sync what arrived so the checkpoint keeps it.
async fn finish_after_error(writer: Writer, part: &std::path::Path) -> Result<(), TransferError> {
    writer
        .finish(true)
        .await
        .map(|_| ())
        .map_err(|e| TransferError::local_io("writing", part, &e))
}

fn stalled(url: &str, after: Duration) -> TransferError {
    TransferError::transient(
        ErrorContext::Transport,
        "stalled",
        format!("{url}: no data for {} s", after.as_secs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/1000".parse().unwrap());
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(header::CONTENT_RANGE, "bytes 5-9/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(header::CONTENT_RANGE, "garbage".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn prefers_strong_etag() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, "W/\"weak\"".parse().unwrap());
        h.insert(
            header::LAST_MODIFIED,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            validator(&h).as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        h.insert(header::ETAG, "\"strong\"".parse().unwrap());
        assert_eq!(validator(&h).as_deref(), Some("\"strong\""));
    }
}
