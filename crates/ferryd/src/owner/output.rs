//! Where the output of a process started for a job's owner goes: nowhere, appended to a
//! log, or appended line by line after a tag (so that processes running at once can be
//! told apart). The log is opened by whoever calls [`open_log`]: in the system-wide
//! daemon that is one of the owner's threads, so a log in the owner's folder is opened as
//! the owner and a link planted there leads nowhere the owner could not write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest piece of a [`Output::Tagged`] process's output logged as one line: a longer
/// line is split.
const MAX_LOGGED_LINE: usize = 16 << 10;

/// Where a started process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Nowhere.
    Discard,
    /// Appended to this log file (standard output and error); discarded when the log
    /// cannot be opened. System mode: the file of that name in the owner's own folder.
    AppendTo(PathBuf),
    /// Appended to the log file `path` line by line, each line after `tag` and ": "
    /// (standard output and error), so that the output of processes running at once can
    /// be told apart; discarded when the log cannot be opened. System mode: the file of
    /// that name in the owner's own folder.
    Tagged { path: PathBuf, tag: String },
}

impl Output {
    /// The log this output goes to, in `own_dir` when given (system mode: the owner's
    /// folder, keeping the file name).
    pub(super) fn log(&self, own_dir: Option<&Path>) -> Option<PathBuf> {
        let path = match self {
            Output::Discard => return None,
            Output::AppendTo(path) | Output::Tagged { path, .. } => path,
        };
        Some(match (own_dir, path.file_name()) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => path.clone(),
        })
    }
}

/// Opens `log` for appending, as whoever runs this; `None` when it cannot be opened.
pub(super) fn open_log(log: Option<&Path>) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log?)
        .ok()
}

/// The child's standard output and error for `output`, its log (if any) already opened.
pub(super) fn stdio(output: &Output, log: Option<std::fs::File>) -> (Stdio, Stdio) {
    match output {
        Output::Discard => (Stdio::null(), Stdio::null()),
        Output::Tagged { .. } => (Stdio::piped(), Stdio::piped()),
        Output::AppendTo(_) => match log {
            Some(f) => match f.try_clone() {
                Ok(g) => (Stdio::from(f), Stdio::from(g)),
                Err(_) => (Stdio::from(f), Stdio::null()),
            },
            None => (Stdio::null(), Stdio::null()),
        },
    }
}

/// Starts copying a spawned child's piped output (tagged output only) to `log`, each
/// line after the tag; read and dropped when the log could not be opened.
pub(super) fn forward(
    output: &Output,
    log: Option<std::fs::File>,
    child: &mut tokio::process::Child,
) {
    let Output::Tagged { tag, .. } = output else {
        return;
    };
    let log = log.map(|f| std::sync::Arc::new(parking_lot::Mutex::new(f)));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(copy_tagged(out, log.clone(), tag.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(copy_tagged(err, log, tag.clone()));
    }
}

type SharedLog = Option<std::sync::Arc<parking_lot::Mutex<std::fs::File>>>;

/// Copies `from` to `log` line by line, each line written in one append after `tag`; a
/// line longer than [`MAX_LOGGED_LINE`] is split.
async fn copy_tagged(mut from: impl AsyncRead + Unpin, log: SharedLog, tag: String) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            append_line(&log, &tag, &line[..end]);
        }
        while pending.len() >= MAX_LOGGED_LINE {
            let piece: Vec<u8> = pending.drain(..MAX_LOGGED_LINE).collect();
            append_line(&log, &tag, &piece);
        }
    }
    if !pending.is_empty() {
        append_line(&log, &tag, &pending);
    }
}

/// One record, one `write` on the `O_APPEND` descriptor (a log line is short and local).
fn append_line(log: &SharedLog, tag: &str, line: &[u8]) {
    let Some(log) = log else {
        return;
    };
    let mut record = Vec::with_capacity(tag.len() + line.len() + 3);
    record.extend_from_slice(tag.as_bytes());
    record.extend_from_slice(b": ");
    record.extend_from_slice(line);
    record.push(b'\n');
    let _ = log.lock().write_all(&record);
}
