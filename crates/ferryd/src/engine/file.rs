//! `file://` transfers: kernel-side copies with `copy_file_range`, resumable like HTTP.
//!
//! The validator is the source's size and modification time; when it changes between runs
//! the file starts over, as an HTTP download does when its ETag changes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::error::TransferError;
use super::task::{FileTask, Outcome};
use crate::model::{ErrorContext, ErrorKind};

/// Bytes per `copy_file_range` call (progress and cancellation are checked between calls).
const STEP: usize = 16 << 20;
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The local path of a `file://` URL.
pub fn source_path(url: &str) -> Result<PathBuf, TransferError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::BadUrl,
            format!("{url}: {e}"),
        )
    })?;
    parsed.to_file_path().map_err(|_| {
        TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::BadUrl,
            format!("{url}: not a local file URL (use file:///absolute/path)"),
        )
    })
}

/// Copies one file into its part file, continuing from the recorded offset.
pub async fn copy(task: FileTask<'_>) -> Result<Outcome, TransferError> {
    let source = source_path(&task.record.remote_url)?;
    let meta = task
        .owner
        .stat(source.clone())
        .await
        .map_err(|e| source_error(&source, &e))?;
    if !meta.is_file() {
        return Err(TransferError::new(
            ErrorContext::RemoteFile,
            ErrorKind::NotAFile,
            format!("{} is not a regular file", source.display()),
        ));
    }
    let total = meta.len();
    super::sizecap::check_size(task.options, &task.record.remote_url, total)?;
    let validator = format!("{}:{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec());
    let mut start = if task.record.completed {
        0
    } else {
        task.record.bytes_transferred
    };
    if task.record.validator.as_deref() != Some(validator.as_str()) || start > total {
        if start > 0 {
            task.events.restarted();
        }
        start = 0;
    }
    task.events.connecting();
    task.events
        .started(Some(total), Some(validator), None, start, false);

    let part = task.part.clone();
    let progress = task.progress.clone();
    let cancel = task.cancel.clone();
    let events = task.events.clone();
    let sources = task.sources.clone();
    let src = task
        .owner
        .open_read(source.clone())
        .await
        .map_err(|e| source_error(&source, &e))?;
    let (dst, start) = task
        .owner
        .open_part(part.clone(), start)
        .await
        .map_err(|e| TransferError::local_io("opening", &part, &e))?;
    let result = tokio::task::spawn_blocking(move || -> Result<Outcome, TransferError> {
        progress.written.store(start, Ordering::SeqCst);
        progress.synced.store(start, Ordering::SeqCst);
        let mut offset = start;
        let mut last_sync = Instant::now();
        while offset < total {
            if cancel.is_cancelled() {
                dst.sync_data()
                    .map_err(|e| TransferError::local_io("syncing", &part, &e))?;
                progress.synced.store(offset, Ordering::SeqCst);
                return Ok(Outcome::Cancelled);
            }
            let want = STEP.min((total - offset) as usize);
            let n = copy_range(&src, &dst, offset, want)
                .map_err(|e| TransferError::local_io("writing", &part, &e))?;
            if n == 0 {
                return Err(TransferError::new(
                    ErrorContext::RemoteFile,
                    ErrorKind::SourceShrank,
                    format!("{} ended after {offset} of {total} bytes", source.display()),
                ));
            }
            offset += n as u64;
            sources.add_origin(n as u64);
            progress.written.store(offset, Ordering::Release);
            events.bytes(n as u64);
            if last_sync.elapsed() >= SYNC_INTERVAL {
                dst.sync_data()
                    .map_err(|e| TransferError::local_io("syncing", &part, &e))?;
                progress.synced.store(offset, Ordering::Release);
                last_sync = Instant::now();
            }
        }
        Ok(Outcome::Done { len: offset })
    })
    .await
    .map_err(TransferError::internal)?;
    result
}

/// One `copy_file_range` step, falling back to read + pwrite where the kernel refuses.
fn copy_range(src: &File, dst: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut off_in = offset as libc::loff_t;
    let mut off_out = offset as libc::loff_t;
    // SAFETY: both descriptors are open for the duration of the call; the offsets are
    // local variables the kernel updates.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    if n >= 0 {
        return Ok(n as usize);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            let mut buf = vec![0u8; len.min(4 << 20)];
            let n = src.read_at(&mut buf, offset)?;
            dst.write_all_at(&buf[..n], offset)?;
            Ok(n)
        }
        _ => Err(err),
    }
}

fn source_error(path: &std::path::Path, e: &io::Error) -> TransferError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::LocalIo,
    };
    TransferError::new(
        ErrorContext::RemoteFile,
        kind,
        format!("reading {}: {e}", path.display()),
    )
}
