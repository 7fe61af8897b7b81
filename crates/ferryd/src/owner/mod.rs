//! Work done as a job's owner: every file-system operation and every process started for
//! a job goes through an [`Owner`] — part files, the renames of `complete`, the deletes of
//! `cancel` and of a rejected file, reading an upload's source or a CA file, the reply
//! file, checking a destination, starting a handler or a notify command.
//!
//! Per-user mode: the daemon's user owns every job, and the work runs on tokio's
//! blocking pool as the daemon. Everything goes through [`Owner::run`], the one place
//! where a system-wide daemon will take on the owner's identity (uid, gids, umask) before
//! touching anything, so no call site changes when it does.
//!
//! May use: `model`, the standard library, tokio. Nothing else of the daemon.

mod parts;
mod paths;
mod process;

use std::fs::{File, Metadata};
use std::io;
use std::path::PathBuf;

pub use parts::{sync_dir, CommitError};
pub use paths::{check_destination, check_program, check_regular_file};
pub use process::{kill_group, Output};

/// Whose files a job touches and as whom its processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    uid: u32,
}

/// Hands out the [`Owner`] of each uid.
#[derive(Debug, Clone)]
pub struct Owners {
    daemon_uid: u32,
}

impl Owners {
    /// A per-user daemon running as `daemon_uid`: it owns every job it serves.
    pub fn per_user(daemon_uid: u32) -> Owners {
        Owners { daemon_uid }
    }

    /// The uid the daemon runs as.
    pub fn daemon_uid(&self) -> u32 {
        self.daemon_uid
    }

    /// The owner with uid `uid`.
    pub fn of(&self, uid: u32) -> Owner {
        Owner { uid }
    }
}

impl Owner {
    /// The owner's uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Runs blocking file-system work as this owner.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("a file-system task failed: {e}"))))
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

    /// Writes `data` at offset 0 of a part file, creating it first when `file` is `None`:
    /// a small body in one blocking call.
    pub async fn write_part(
        &self,
        path: PathBuf,
        file: Option<File>,
        data: Vec<u8>,
    ) -> io::Result<()> {
        self.run(move || parts::write_part(&path, file, &data))
            .await
    }

    /// Makes the bytes of every part file durable, in one batch.
    pub async fn sync_parts(&self, paths: Vec<PathBuf>) -> io::Result<()> {
        self.run(move || parts::sync_all(&paths)).await
    }

    /// Moves each completed part file over its destination, syncs the folders written,
    /// and, once every move is done, removes `discard`. Returns every move that failed.
    pub async fn commit(
        &self,
        moves: Vec<(PathBuf, PathBuf)>,
        discard: Vec<PathBuf>,
    ) -> Result<(), Vec<CommitError>> {
        tokio::task::spawn_blocking(move || parts::commit(&moves, &discard))
            .await
            .unwrap_or_else(|e| Err(vec![CommitError::internal(e)]))
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
        tokio::task::spawn_blocking(move || paths.iter().map(|p| check_destination(p)).collect())
            .await
            .unwrap_or_else(|e| vec![Err(format!("checking the destination failed: {e}")); n])
    }

    /// Checks, as this owner, that each path is a regular file; one result per path.
    pub async fn check_regular_files(
        &self,
        what: &'static str,
        paths: Vec<String>,
    ) -> Vec<Result<String, String>> {
        let n = paths.len();
        tokio::task::spawn_blocking(move || {
            paths.iter().map(|p| check_regular_file(what, p)).collect()
        })
        .await
        .unwrap_or_else(|e| vec![Err(format!("checking {what} failed: {e}")); n])
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
        tokio::task::spawn_blocking(move || {
            if std::path::Path::new(&path).is_dir() {
                Ok(())
            } else {
                Err(format!("the working folder '{path}' does not exist"))
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("checking the working folder failed: {e}")))
    }

    /// Checks, as this owner, that `path` is a regular file (see [`check_regular_file`]).
    pub async fn check_regular_file(
        &self,
        what: &'static str,
        path: String,
    ) -> Result<String, String> {
        tokio::task::spawn_blocking(move || check_regular_file(what, &path))
            .await
            .unwrap_or_else(|e| Err(format!("checking {what} failed: {e}")))
    }

    /// The owner's home folder (from the password database; `/` when it has none): where
    /// a handler without a registered folder, or a notify command, starts.
    pub fn home(&self) -> PathBuf {
        process::home_of(self.uid)
    }

    /// A command that runs `argv` as this owner (a handler or a notify command), with
    /// standard input closed, its output where `output` says, in a process group of its
    /// own, in `workdir` when given, else the owner's home. The caller adds its
    /// environment.
    pub fn command(
        &self,
        argv: &[String],
        workdir: Option<&str>,
        output: &Output,
    ) -> Option<tokio::process::Command> {
        let dir = match workdir {
            Some(d) => PathBuf::from(d),
            None => self.home(),
        };
        process::command(argv, &dir, output)
    }

    /// Starts a command made by [`command`](Self::command) with the same `output`, and
    /// the copying of its output when `output` asks for it.
    pub fn spawn(
        &self,
        cmd: &mut tokio::process::Command,
        output: &Output,
    ) -> io::Result<tokio::process::Child> {
        process::spawn(cmd, output)
    }
}
