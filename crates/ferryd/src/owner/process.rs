//! Processes started for a job's owner: handlers (activation) and notify commands, and
//! where their output goes. Each starts in its own process group (so a hung one is killed
//! with everything it started), in the folder registered for it, else the owner's home —
//! never in whatever folder the daemon was started from.

use std::ffi::CStr;
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

/// The home folder of `uid` from the password database; `/` when it has none, or it is
/// not a folder.
pub(super) fn home_of(uid: u32) -> PathBuf {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only into them and
        // sets `result` to `&pwd` or null.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
            return PathBuf::from("/");
        }
        // SAFETY: pw_dir points into `buf`, NUL-terminated, valid while `buf` lives.
        let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
        use std::os::unix::ffi::OsStrExt;
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        return if dir.is_dir() {
            dir
        } else {
            PathBuf::from("/")
        };
    }
}

/// `argv` as a command (no shell), standard input closed, output as asked, in its own
/// process group, in `workdir`; `None` when `argv` is empty.
pub(super) fn command(
    argv: &[String],
    workdir: &Path,
    output: &Output,
) -> Option<tokio::process::Command> {
    let (program, args) = argv.split_first()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(output.stdio())
        .stderr(output.stdio())
        .current_dir(workdir)
        .process_group(0);
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

/// Kills the process group `pgid` (a process started by [`command`] leads its own).
pub fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_home_and_unknown_uids_get_the_root_folder() {
        assert!(home_of(0).is_dir());
        assert_eq!(home_of(4_000_000_000), PathBuf::from("/"));
    }
}
