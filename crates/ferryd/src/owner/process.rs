//! Processes started for a job's owner: handlers (activation) and notify commands.

use std::path::PathBuf;
use std::process::Stdio;

/// Where a started process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Nowhere.
    Discard,
    /// Appended to this log file (standard output and error); discarded when the log
    /// cannot be opened.
    AppendTo(PathBuf),
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
        }
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
