//! Work done as a job's owner: every file-system operation and every process started for
//! a job goes through an [`Owner`] — part files, the renames of `complete`, the deletes of
//! `cancel` and of a rejected file, reading an upload's source or a CA file, the reply
//! file, checking a destination, starting a handler or a notify command.
//!
//! A daemon runs as the user whose jobs it serves — the per-user daemon, or a worker of
//! the system-wide daemon, which the root broker starts as that user (`privsep/`) — so
//! the work runs on tokio's blocking pool as the daemon itself, and the kernel checks
//! every path as the user's. What differs in a worker is the umask: a job keeps the umask
//! of the process that created it (files appear with the mode that process would have
//! given them), and handlers and notify commands run with it.
//!
//! May use: `model`, the standard library, tokio. Nothing else of the daemon.

mod account;
mod output;
mod parts;
mod paths;
mod process;

use std::fs::{File, Metadata};
use std::io;
use std::path::PathBuf;

use uuid::Uuid;

pub use account::{group_id, Account};
pub use output::Output;
pub use parts::{daemon_umask, sync_dir, CommitError};
pub use paths::{check_destination, check_program, check_regular_file};
pub use process::kill_group;

/// The umask of a job whose creator's umask could not be read (a worker of the
/// system-wide daemon).
pub const DEFAULT_UMASK: u32 = 0o022;

/// Whose files a job touches and as whom its processes run.
#[derive(Debug, Clone)]
pub struct Owner {
    uid: u32,
    /// The mask files are created with and processes run with (a worker of the
    /// system-wide daemon); `None` in the per-user daemon, whose own umask applies.
    umask: Option<u32>,
    /// The daemon's own folder: the handlers' log and default replies.
    private_dir: PathBuf,
}

/// Hands out the [`Owner`] of each uid.
#[derive(Debug, Clone)]
pub struct Owners {
    /// A worker of the system-wide daemon (jobs keep their creators' umasks).
    worker: bool,
    daemon_uid: u32,
    state_dir: PathBuf,
}

impl Owners {
    /// A per-user daemon running as `daemon_uid` with its state in `state_dir`: it owns
    /// every job it serves and does their work as itself, with its own umask.
    pub fn per_user(daemon_uid: u32, state_dir: PathBuf) -> Owners {
        Owners {
            worker: false,
            daemon_uid,
            state_dir,
        }
    }

    /// A worker of the system-wide daemon, running as `daemon_uid` (the user) with its
    /// state in `state_dir`: each job's files get the umask of the process that created
    /// it, and its processes run with that umask.
    pub fn worker(daemon_uid: u32, state_dir: PathBuf) -> Owners {
        Owners {
            worker: true,
            daemon_uid,
            state_dir,
        }
    }

    /// The uid the daemon runs as.
    pub fn daemon_uid(&self) -> u32 {
        self.daemon_uid
    }

    /// The owner with uid `uid`, for work not tied to one job (a handler's folder).
    pub fn of(&self, uid: u32) -> Owner {
        self.with_umask(uid, None)
    }

    /// The owner of a job created with `umask` (see [`Owners::umask_of_process`]).
    pub fn with_umask(&self, uid: u32, umask: Option<u32>) -> Owner {
        Owner {
            uid,
            umask: self.worker.then(|| umask.unwrap_or(DEFAULT_UMASK) & 0o777),
            private_dir: self.state_dir.clone(),
        }
    }

    /// The umask a job created by process `pid` keeps: that process's, in a worker of
    /// the system-wide daemon (else [`DEFAULT_UMASK`]); none in the per-user daemon,
    /// whose own applies.
    pub fn umask_of_process(&self, pid: Option<u32>) -> Option<u32> {
        if !self.worker {
            return None;
        }
        Some(
            pid.and_then(account::process_umask)
                .unwrap_or(DEFAULT_UMASK),
        )
    }
}

/// The largest small body [`Owner::write_part`] writes on the calling thread.
pub const INLINE_WRITE_MAX: usize = 64 * 1024;

impl Owner {
    /// The owner's uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Where an upload-reply job of this owner keeps its reply when it names no reply
    /// file: `STATE_DIR/replies/JOBID.reply` per-user, `STATE_DIR/users/UID/replies/…`
    /// system-wide.
    pub fn default_reply_path(&self, job: Uuid) -> PathBuf {
        self.private_dir
            .join("replies")
            .join(format!("{job}.reply"))
    }

    /// Runs blocking work as this owner (on the blocking pool); `failed` makes the result
    /// when the work could not run (it panicked).
    async fn exec<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
        failed: impl FnOnce(String) -> R + Send + 'static,
    ) -> R {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| failed(format!("a file-system task failed: {e}")))
    }

    /// Runs blocking file-system work as this owner.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.exec(work, |e| Err(io::Error::other(e))).await
    }

    /// Opens a part file to continue at `offset`, or creates it afresh (see
    /// [`parts::open_part`]); returns the file and the offset to continue at.
    pub async fn open_part(&self, path: PathBuf, offset: u64) -> io::Result<(File, u64)> {
        self.run(move || parts::open_part(&path, offset)).await
    }

    /// Creates an empty part file, replacing a stale one (never through a symlink).
    pub async fn create_part(&self, path: PathBuf) -> io::Result<File> {
        self.run(move || parts::create_part(&path)).await
    }

    /// Opens an existing part file to write into it where it stands (the segments of a
    /// multi-connection download), never through a symlink.
    pub async fn reopen_part(&self, path: PathBuf) -> io::Result<File> {
        self.run(move || parts::reopen_part(&path)).await
    }

    /// Opens an existing part file to read it (the pieces a swarm serves and checks),
    /// never through a symlink.
    pub async fn read_part(&self, path: PathBuf) -> io::Result<File> {
        self.run(move || parts::read_part(&path)).await
    }

    /// Writes `data` at offset 0 of a part file, creating it first when `file` is `None`:
    /// a small body in one blocking call.
    ///
    /// Bodies up to [`INLINE_WRITE_MAX`] bytes are written on the calling thread:
    /// creating and writing a small file costs less than the hand-off to a blocking
    /// thread and back, which was most of ferryd's time for a job of thousands of small
    /// files (scenario 3 of `bench/run`).
    pub async fn write_part(
        &self,
        path: PathBuf,
        file: Option<File>,
        data: Vec<u8>,
    ) -> io::Result<()> {
        if data.len() <= INLINE_WRITE_MAX {
            return parts::write_part(&path, file, &data);
        }
        self.run(move || parts::write_part(&path, file, &data))
            .await
    }

    /// Makes the bytes of every part file durable, in one batch.
    pub async fn sync_parts(&self, paths: Vec<PathBuf>) -> io::Result<()> {
        self.run(move || parts::sync_all(&paths)).await
    }

    /// Moves each completed part file over its destination, syncs the folders written,
    /// and, once every move is done, removes `discard`. Returns every move that failed.
    /// A destination that existed keeps its permission bits; a new one gets
    /// `0o666 & !umask` (`umask`: the job creator's, else the owner's, else the daemon's).
    /// `resuming`: a complete cut short before goes on, so a part file already gone with
    /// its destination there counts as moved; otherwise a missing part file is a failure.
    pub async fn commit(
        &self,
        moves: Vec<(PathBuf, PathBuf)>,
        discard: Vec<PathBuf>,
        umask: Option<u32>,
        resuming: bool,
    ) -> Result<(), Vec<CommitError>> {
        let umask = umask.or(self.umask).unwrap_or_else(daemon_umask);
        self.exec(
            move || parts::commit(&moves, &discard, umask, resuming),
            |e| Err(vec![CommitError::internal(e)]),
        )
        .await
    }

    /// Removes files (part files of a cancelled job or a rejected file); a file already
    /// gone is fine.
    pub async fn remove_files(&self, paths: Vec<PathBuf>) -> io::Result<()> {
        self.run(move || parts::remove_all(&paths)).await
    }

    /// The metadata of a file (an upload's source, a `file://` source), following links.
    pub async fn stat(&self, path: PathBuf) -> io::Result<Metadata> {
        self.run(move || std::fs::metadata(path)).await
    }

    /// Opens a file to read it (an upload's source, a `file://` source).
    pub async fn open_read(&self, path: PathBuf) -> io::Result<File> {
        self.run(move || File::open(path)).await
    }

    /// Reads a whole small file (a CA file).
    pub async fn read_file(&self, path: PathBuf) -> io::Result<Vec<u8>> {
        self.run(move || std::fs::read(path)).await
    }

    /// Writes `data` to `path` so that it appears whole or not at all: a private
    /// temporary file beside it, synced, then renamed over it.
    pub async fn write_file_atomically(&self, path: PathBuf, data: Vec<u8>) -> io::Result<()> {
        self.run(move || parts::write_atomically(&path, &data))
            .await
    }

    /// Checks a destination as this owner (see [`check_destination`]).
    pub async fn check_destination(&self, path: String) -> Result<String, String> {
        self.check_destinations(vec![path])
            .await
            .pop()
            .unwrap_or_else(|| Err("checking the destination failed".into()))
    }

    /// Checks destinations as this owner, in one hand-off; one result per path, in order.
    pub async fn check_destinations(&self, paths: Vec<String>) -> Vec<Result<String, String>> {
        let n = paths.len();
        self.exec(
            move || paths.iter().map(|p| check_destination(p)).collect(),
            move |e| vec![Err(format!("checking the destination failed: {e}")); n],
        )
        .await
    }

    /// Checks, as this owner, that each path is a regular file; one result per path.
    pub async fn check_regular_files(
        &self,
        what: &'static str,
        paths: Vec<String>,
    ) -> Vec<Result<String, String>> {
        let n = paths.len();
        self.exec(
            move || paths.iter().map(|p| check_regular_file(what, p)).collect(),
            move |e| vec![Err(format!("checking {what} failed: {e}")); n],
        )
        .await
    }

    /// Checks, as this owner, that `path` is a program it can run (a handler's program;
    /// see [`check_program`]).
    pub async fn check_program(&self, what: &'static str, path: String) -> Result<(), String> {
        tokio::task::spawn_blocking(move || check_program(what, &path))
            .await
            .unwrap_or_else(|e| Err(format!("checking {what} failed: {e}")))
    }

    /// Checks, as this owner, that `path` is an existing folder (a handler's working
    /// folder).
    pub async fn check_folder(&self, path: String) -> Result<(), String> {
        self.exec(
            move || paths::check_folder(&path),
            |e| Err(format!("checking the working folder failed: {e}")),
        )
        .await
    }

    /// Checks, as this owner, that `path` is a regular file (see [`check_regular_file`]).
    pub async fn check_regular_file(
        &self,
        what: &'static str,
        path: String,
    ) -> Result<String, String> {
        self.exec(
            move || check_regular_file(what, &path),
            move |e| Err(format!("checking {what} failed: {e}")),
        )
        .await
    }

    /// The owner's home folder (from the password database; `/` when it has none): where
    /// a handler without a registered folder, or a notify command, starts.
    pub fn home(&self) -> PathBuf {
        process::home_of(self.uid)
    }

    /// A command that runs `argv` as this owner (a handler or a notify command), with
    /// standard input closed, its output where `output` says, in a process group of its
    /// own, in `workdir` else the owner's home; `Ok(None)` when `argv` is empty. The
    /// caller adds the `FERRY_` variables. It runs as the daemon (which is the owner), in
    /// its environment, with the job's umask in a worker of the system-wide daemon.
    pub async fn command(
        &self,
        argv: &[String],
        workdir: Option<&str>,
        output: &Output,
    ) -> Result<Option<tokio::process::Command>, String> {
        let log = output::open_log(output.log(None).as_deref());
        let dir = match workdir {
            Some(d) => PathBuf::from(d),
            None => self.home(),
        };
        Ok(process::command(
            argv,
            &dir,
            self.umask,
            output::stdio(output, log),
        ))
    }

    /// Starts a command made by [`command`](Self::command) with the same `output`, and
    /// the copying of its output when `output` asks for it.
    pub async fn spawn(
        &self,
        cmd: &mut tokio::process::Command,
        output: &Output,
    ) -> io::Result<tokio::process::Child> {
        let log = match output {
            Output::Tagged { .. } => output::open_log(output.log(None).as_deref()),
            _ => None,
        };
        let mut child = cmd.spawn()?;
        output::forward(output, log, &mut child);
        Ok(child)
    }
}
