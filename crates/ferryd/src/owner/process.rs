//! Processes started for a job's owner: handlers (activation) and notify commands, and
//! where their output goes.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Longest piece of a [`Output::Tagged`] process's output logged as one line: a longer
/// line is split.
const MAX_LOGGED_LINE: usize = 16 << 10;

/// Where a started process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Nowhere.
    Discard,
    /// Appended to this log file (standard output and error); discarded when the log
    /// cannot be opened.
    AppendTo(PathBuf),
    /// Appended to the log file `path` line by line, each line after `tag` and ": "
    /// (standard output and error), so that the output of processes running at once can
    /// be told apart; discarded when the log cannot be opened.
    Tagged { path: PathBuf, tag: String },
}

impl Output {
    fn stdio(&self) -> Stdio {
        match self {
            Output::Discard => Stdio::null(),
            Output::AppendTo(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            Output::Tagged { .. } => Stdio::piped(),
        }
    }

    /// Starts copying a spawned child's piped output where this says (tagged output only).
    fn forward(&self, child: &mut tokio::process::Child) {
        let Output::Tagged { path, tag } = self else {
            return;
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(copy_tagged(out, path.clone(), tag.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(copy_tagged(err, path.clone(), tag.clone()));
        }
    }
}

/// Copies `from` to the log `path` line by line, each line written in one append after
/// `tag`; a line longer than [`MAX_LOGGED_LINE`] is split.
async fn copy_tagged(mut from: impl AsyncRead + Unpin, path: PathBuf, tag: String) {
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
            append_line(&path, &tag, &line[..end]).await;
        }
        while pending.len() >= MAX_LOGGED_LINE {
            let piece: Vec<u8> = pending.drain(..MAX_LOGGED_LINE).collect();
            append_line(&path, &tag, &piece).await;
        }
    }
    if !pending.is_empty() {
        append_line(&path, &tag, &pending).await;
    }
}

async fn append_line(path: &Path, tag: &str, line: &[u8]) {
    let mut record = Vec::with_capacity(tag.len() + line.len() + 3);
    record.extend_from_slice(tag.as_bytes());
    record.extend_from_slice(b": ");
    record.extend_from_slice(line);
    record.push(b'\n');
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await;
    if let Ok(mut file) = file {
        let _ = file.write_all(&record).await;
    }
}

/// `argv` as a command (no shell), standard input closed, output as asked, in `workdir`
/// when given; `None` when `argv` is empty.
pub(super) fn command(
    argv: &[String],
    workdir: Option<&str>,
    output: &Output,
) -> Option<tokio::process::Command> {
    let (program, args) = argv.split_first()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(output.stdio())
        .stderr(output.stdio());
    if let Some(dir) = workdir {
        cmd.current_dir(dir);
    }
    Some(cmd)
}

/// Spawns `cmd` (made by [`command`] with `output`) and starts copying its output.
pub(super) fn spawn(
    cmd: &mut tokio::process::Command,
    output: &Output,
) -> std::io::Result<tokio::process::Child> {
    let mut child = cmd.spawn()?;
    output.forward(&mut child);
    Ok(child)
}
