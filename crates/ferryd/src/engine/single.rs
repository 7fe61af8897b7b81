//! One connection to the origin: `Range` + `If-Range` resume from the recorded offset,
//! the answer's `Content-Range` checked, a restart when the content changed or the range
//! was refused, servers without ranges or lengths, a body cut off at its announced end.
//! Small bodies are gathered in memory and written in one call.
//!
//! May use: the engine's range connection, HTTP metadata, part-file writer, rate limits,
//! request decoration, task and errors; `model`.

use std::fs::File;
use std::sync::atomic::Ordering;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::error::TransferError;
use super::httpmeta::{content_range, content_range_text, no_store, status_error, validator};
use super::netclient::{download_method, for_download};
use super::partfile::{self, Writer};
use super::rangeconn::{self, send, Next};
use super::sizecap;
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind};

/// Downloads one file into its part file over one connection, continuing from the
/// recorded offset.
pub(super) async fn download(task: &FileTask<'_>) -> Result<Outcome, TransferError> {
    let url = task.record.remote_url.clone();
    let mut part = Part::open(task).await?;
    let Some(answer) = ask(task, &mut part, &url).await? else {
        return Ok(Outcome::Cancelled);
    };
    receive(task, part, answer, &url).await
}

/// The part file as the next request sees it.
struct Part {
    /// Open when bytes are resumed; a file that starts from zero is created once the
    /// answer is known (a small body is then created and written in one go).
    file: Option<File>,
    /// Where the bytes continue.
    offset: u64,
    /// The validator the bytes on disk were fetched under (`If-Range`).
    validator: Option<String>,
}

impl Part {
    async fn open(task: &FileTask<'_>) -> Result<Part, TransferError> {
        let start = if task.record.completed {
            0
        } else {
            task.record.bytes_transferred
        };
        let (file, offset) = if start == 0 {
            (None, 0)
        } else {
            let (f, o) = open_part(task, start).await?;
            (Some(f), o)
        };
        let validator = if offset > 0 {
            task.record.validator.clone()
        } else {
            None
        };
        task.progress.written.store(offset, Ordering::SeqCst);
        task.progress.synced.store(offset, Ordering::SeqCst);
        Ok(Part {
            file,
            offset,
            validator,
        })
    }

    /// The file starts over from zero.
    fn restart(&mut self, task: &FileTask<'_>) -> Result<(), TransferError> {
        if let Some(file) = &self.file {
            file.set_len(0)
                .map_err(|e| TransferError::local_io("truncating", &task.part, &e))?;
        }
        self.offset = 0;
        self.validator = None;
        task.progress.reset();
        task.events.restarted();
        Ok(())
    }
}

/// An answer whose body is to be written.
struct Answer {
    response: reqwest::Response,
    /// The file's size, when known.
    total: Option<u64>,
    /// Where this answer's bytes end (a body that goes past it is cut off).
    limit: Option<u64>,
}

/// What an answer to a request from `offset` means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The asked range: write it.
    Range { total: Option<u64>, limit: u64 },
    /// The whole file: start over with this body.
    Whole { total: Option<u64> },
    /// The range was refused (416) or the file's size changed: ask again from zero.
    Restart,
}

/// Judges an answer (`status`, `headers`, its `Content-Length`) to a request from
/// `offset` under `validator`, for a file recorded as `recorded_total` bytes long.
fn judge(
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<u64>,
    (offset, validator_sent): (u64, Option<&str>),
    recorded_total: Option<u64>,
    url: &str,
) -> Result<Verdict, TransferError> {
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let known = recorded_total.filter(|_| offset > 0);
            match content_range(headers) {
                Some(r)
                    if r.start == offset
                        && (known.is_none() || r.total.is_none() || r.total == known) =>
                {
                    Ok(Verdict::Range {
                        total: r.total.or(known),
                        limit: r.end + 1,
                    })
                }
                // The right place in a file of another size: the content changed (a server
                // without validators), so the file starts over.
                Some(r) if r.start == offset => Ok(Verdict::Restart),
                // Never written anywhere: the durable bytes stay, the next attempt asks for
                // the same range again.
                _ => Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::BadRange,
                    format!(
                        "{url}: asked for bytes from {offset}{}, the server answered 206 with \
                         {}; nothing of it was written, ferry will retry from byte {offset}",
                        known.map(|t| format!(" of {t}")).unwrap_or_default(),
                        match content_range_text(headers) {
                            Some(v) => format!("Content-Range: {v}"),
                            None => "no Content-Range".to_string(),
                        }
                    ),
                )),
            }
        }
        StatusCode::OK => {
            // The same content (same strong validator) has the size seen before.
            let same = offset > 0
                && validator_sent.is_some()
                && validator(headers).as_deref() == validator_sent;
            Ok(Verdict::Whole {
                total: content_length.or(recorded_total.filter(|_| same)),
            })
        }
        StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => Ok(Verdict::Restart),
        s => Err(status_error(s, headers, url)),
    }
}

/// Asks for the file from `part`'s offset until an answer may be written; `None` when the
/// run is stopped first. At most one restart: a second mismatch is the server's fault,
/// retried later.
async fn ask(
    task: &FileTask<'_>,
    part: &mut Part,
    url: &str,
) -> Result<Option<Answer>, TransferError> {
    let mut restarted = false;
    loop {
        let mut request = for_download(
            task.client.request(download_method(task.options), url),
            task.options,
        );
        if part.offset > 0 {
            request = request.header(header::RANGE, format!("bytes={}-", part.offset));
            if let Some(v) = &part.validator {
                request = request.header(header::IF_RANGE, v.as_str());
            }
        }
        task.events.connecting();
        let credentials = task.options.credentials.as_ref();
        let Some(response) =
            send(&task.cancel, task.stall_timeout, request, credentials, url).await?
        else {
            return Ok(None);
        };
        task.events.response_headers(response.headers());
        let verdict = judge(
            response.status(),
            response.headers(),
            response.content_length(),
            (part.offset, part.validator.as_deref()),
            task.record.bytes_total,
            url,
        )?;
        let (total, limit) = match verdict {
            Verdict::Range { total, limit } => (total, Some(limit)),
            Verdict::Whole { total } => {
                if part.offset > 0 {
                    // The range was ignored or the content changed: start over with this body.
                    let offset = part.offset;
                    tracing::info!(url, offset, "server sent the whole file; restarting it");
                    part.restart(task)?;
                }
                (total, total)
            }
            Verdict::Restart if restarted => {
                return Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::BadRange,
                    format!(
                        "{url}: the server refused the range from byte {} twice \
                         (416, or a size that keeps changing)",
                        part.offset
                    ),
                ));
            }
            Verdict::Restart => {
                restarted = true;
                let offset = part.offset;
                tracing::info!(
                    url,
                    offset,
                    "range refused (416) or the size changed; restarting the file"
                );
                part.restart(task)?;
                continue;
            }
        };
        return Ok(Some(Answer {
            response,
            total,
            limit,
        }));
    }
}

/// Announces the answer and writes its body: gathered in memory when small, else through
/// a writer thread.
async fn receive(
    task: &FileTask<'_>,
    mut part: Part,
    answer: Answer,
    url: &str,
) -> Result<Outcome, TransferError> {
    let Answer {
        response,
        total,
        limit,
    } = answer;
    // A yielding job's controller watches this connection while its body is read.
    let _watch = task.yielder.as_ref().and_then(|y| y.watch(&response));
    let offset = part.offset;
    let total = total.or_else(|| {
        if offset == 0 {
            response.content_length()
        } else {
            None
        }
    });
    let limit = limit.or(total);
    if let Some(total) = total {
        sizecap::check_size(task.options, url, total)?;
    }
    let headers = response.headers();
    task.events.started(
        total,
        validator(headers),
        Some(response.url().to_string()),
        offset,
        no_store(headers),
    );
    if let Some(len) = limit.filter(|&l| offset == 0 && l <= SMALL_BODY) {
        return small_body(task, response, part.file, len, url).await;
    }
    let file = match part.file.take() {
        Some(f) => f,
        None => open_part(task, 0).await?.0,
    };
    let body = Body {
        offset,
        total,
        limit,
    };
    write_body(task, response, file, body, url).await
}

/// Where a body's bytes go in the file.
struct Body {
    /// Where they start.
    offset: u64,
    /// The file's size, when known.
    total: Option<u64>,
    /// Where they must end.
    limit: Option<u64>,
}

/// Writes `response`'s body into `file` through a writer thread.
async fn write_body(
    task: &FileTask<'_>,
    mut response: reqwest::Response,
    file: File,
    body: Body,
    url: &str,
) -> Result<Outcome, TransferError> {
    let Body {
        offset,
        total,
        limit,
    } = body;
    let part = &task.part;
    // Kept to cut the part file back if the body runs past its announced end.
    let handle = file
        .try_clone()
        .map_err(|e| TransferError::local_io("opening", part, &e))?;
    let writer = Writer::start(file, offset, task.progress.clone())
        .map_err(|e| TransferError::local_io("writing", part, &e))?;
    let mut received = offset;
    loop {
        match next_chunk(task, &mut response, url).await {
            Ok(Next::Stopped) => {
                let _ = writer.finish(true).await;
                return Ok(Outcome::Cancelled);
            }
            Err(e) => {
                finish_after_error(writer, part).await?;
                return Err(e);
            }
            Ok(Next::End) => break,
            Ok(Next::Chunk(chunk)) => {
                if let Some(limit) = limit.filter(|&l| received + chunk.len() as u64 > l) {
                    // More than announced: nothing past the expected end is written, and
                    // this response's bytes are not trusted either.
                    let _ = writer.finish(false).await;
                    cut_back(&handle, part, offset, task.progress.as_ref()).await?;
                    return Err(too_long(url, offset, limit, total));
                }
                let n = chunk.len() as u64;
                if let Err(e) = sizecap::check_received(task.options, url, received + n) {
                    // Nothing of this chunk is written: the part file ends within the limit.
                    let _ = writer.finish(false).await;
                    return Err(e);
                }
                received += n;
                task.sources.add_origin(n);
                super::ratelimit::consume_all(task.limits, chunk.len()).await;
                if writer.write(chunk).await.is_err() {
                    let e = writer
                        .finish(false)
                        .await
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("writer stopped"));
                    return Err(TransferError::local_io("writing", part, &e));
                }
                task.events.bytes(n);
            }
        }
    }
    let len = writer
        .finish(false)
        .await
        .map_err(|e| TransferError::local_io("writing", part, &e))?;
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

/// The server sent more than the `limit - offset` bytes it announced from `offset`.
fn too_long(url: &str, offset: u64, limit: u64, total: Option<u64>) -> TransferError {
    let size = total
        .map(|t| format!("; the file's expected size is {t} bytes"))
        .unwrap_or_default();
    TransferError::new(
        ErrorContext::RemoteFile,
        ErrorKind::TooLong,
        format!(
            "{url}: the server sent more than the {} bytes it announced from byte \
             {offset}{size}; this answer was discarded, ferry will retry from byte {offset}",
            limit - offset
        ),
    )
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
    task.sources.add_origin(len);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), value.parse().unwrap());
        }
        h
    }

    fn judged(
        status: u16,
        h: &[(header::HeaderName, &str)],
        length: Option<u64>,
        from: (u64, Option<&str>),
        recorded: Option<u64>,
    ) -> Result<Verdict, TransferError> {
        let status = StatusCode::from_u16(status).unwrap();
        judge(status, &headers(h), length, from, recorded, "u")
    }

    #[test]
    fn answers_to_a_range_are_judged() {
        let cr = header::CONTENT_RANGE;
        // The asked range of the recorded size: written, up to its end.
        assert_eq!(
            judged(
                206,
                &[(cr.clone(), "bytes 100-999/1000")],
                None,
                (100, Some("v")),
                Some(1000)
            )
            .unwrap(),
            Verdict::Range {
                total: Some(1000),
                limit: 1000
            }
        );
        // The right place in a file of another size: the content changed.
        assert_eq!(
            judged(
                206,
                &[(cr.clone(), "bytes 100-1999/2000")],
                None,
                (100, None),
                Some(1000)
            )
            .unwrap(),
            Verdict::Restart
        );
        // Another place, or no Content-Range: never written.
        for h in [vec![(cr.clone(), "bytes 0-999/1000")], vec![]] {
            let e = judged(206, &h, None, (100, None), Some(1000)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRange);
            assert!(e.message.contains("from 100 of 1000"), "{}", e.message);
        }
        // A refused range starts over; at byte 0 it is the server's error.
        assert_eq!(
            judged(416, &[], None, (100, None), None).unwrap(),
            Verdict::Restart
        );
        assert_eq!(
            judged(416, &[], None, (0, None), None).unwrap_err().kind,
            ErrorKind::Http(416)
        );
        assert!(
            judged(503, &[], None, (0, None), None)
                .unwrap_err()
                .transient
        );
    }

    #[test]
    fn a_whole_file_keeps_the_size_of_the_same_content() {
        let etag = header::ETAG;
        // Without a length, the same strong validator means the recorded size.
        assert_eq!(
            judged(
                200,
                &[(etag.clone(), "\"v\"")],
                None,
                (10, Some("\"v\"")),
                Some(50)
            )
            .unwrap(),
            Verdict::Whole { total: Some(50) }
        );
        assert_eq!(
            judged(
                200,
                &[(etag.clone(), "\"w\"")],
                None,
                (10, Some("\"v\"")),
                Some(50)
            )
            .unwrap(),
            Verdict::Whole { total: None }
        );
        assert_eq!(
            judged(
                200,
                &[(etag, "\"w\"")],
                Some(70),
                (10, Some("\"v\"")),
                Some(50)
            )
            .unwrap(),
            Verdict::Whole { total: Some(70) }
        );
    }
}
