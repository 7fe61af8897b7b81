//! Part files and destinations: creating and reopening part files (never through a
//! symlink), writing a small body, syncing in batches, committing by rename, removing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Opens the part file to continue at `offset`, or creates it afresh when `offset` is 0 or
/// the existing part file is shorter than `offset`. Returns the file and the offset to use.
///
/// New part files are created with `O_EXCL | O_NOFOLLOW` and mode 0600; an existing part is
/// opened with `O_NOFOLLOW`, so a symlink planted in its place is never written through.
pub(super) fn open_part(path: &Path, offset: u64) -> io::Result<(File, u64)> {
    if offset > 0 {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => {
                let len = file.metadata()?.len();
                if len >= offset {
                    // Bytes past the checkpoint were never recorded: drop them.
                    file.set_len(offset)?;
                    return Ok((file, offset));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    create_part(path).map(|f| (f, 0))
}

/// Held while a part file is created in a directory (one of a few locks, chosen by the
/// directory): creating a file takes the directory's lock in the kernel, and the blocking
/// threads creating the files of a many-file job in one directory spun on it
/// (`rwsem_spin_on_owner`: 40 % of ferryd's CPU in scenario 3 of `bench/run` when the
/// creates were slow). Taken here, the waiters sleep instead; files in other directories
/// (most likely) take another lock.
static CREATING: [parking_lot::Mutex<()>; 16] = [const { parking_lot::Mutex::new(()) }; 16];

/// The lock of [`CREATING`] for files created in `path`'s directory.
fn creating_in(path: &Path) -> parking_lot::MutexGuard<'static, ()> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.parent().hash(&mut h);
    CREATING[(h.finish() % CREATING.len() as u64) as usize].lock()
}

/// Creates an empty part file, replacing a stale one (never following a symlink).
pub(super) fn create_part(path: &Path) -> io::Result<File> {
    let _one_at_a_time = creating_in(path);
    let create = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    // Usually there is nothing to replace: try first, unlink only when something is there
    // (an unlink that finds nothing still takes the directory's lock).
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            create()
        }
        r => r,
    }
}

/// Opens an existing part file for writing, never through a symlink, keeping its bytes.
pub(super) fn reopen_part(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing part file to read it (a swarm serves and checks its pieces), never
/// through a symlink.
pub(super) fn read_part(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes `data` at offset 0 of `file`, or of a part file created at `path` first.
pub(super) fn write_part(path: &Path, file: Option<File>, data: &[u8]) -> io::Result<()> {
    let file = match file {
        Some(f) => f,
        None => open_part(path, 0)?.0,
    };
    file.write_all_at(data, 0)
}

/// `fdatasync`s every path given (in parallel on a few threads): the batch sync a job does
/// before it becomes `transferred`.
pub(super) fn sync_all(paths: &[PathBuf]) -> io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    if paths.len() >= SYNCFS_FROM {
        return syncfs_each_filesystem(paths);
    }
    if paths.len() == 1 {
        // One file (most jobs): sync on this thread; a thread per job costs more than
        // the flush of a small file.
        return sync_one(&paths[0]);
    }
    let threads = paths.len().clamp(1, 8);
    let chunk = paths.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|group| s.spawn(move || group.iter().try_for_each(|p| sync_one(p))))
            .collect();
        for h in handles {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")))?;
        }
        Ok(())
    })
}

/// `fdatasync`s one part file, not following a symbolic link.
fn sync_one(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .sync_data()
}

/// From this many files on, one `syncfs` per filesystem replaces an `fdatasync` per file
/// (as `sync -f` does): thousands of small files cost one flush, not thousands.
const SYNCFS_FROM: usize = 64;

/// Flushes every filesystem holding one of `paths` with `syncfs(2)`, which reports write
/// errors of the filesystem since Linux 5.8. Part files live beside their destinations,
/// so one open per directory finds the filesystems.
fn syncfs_each_filesystem(paths: &[PathBuf]) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let mut dirs: Vec<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
    dirs.sort();
    dirs.dedup();
    let mut seen = std::collections::HashSet::new();
    for d in dirs {
        let f = File::open(d)?;
        if seen.insert(f.metadata()?.dev()) {
            // SAFETY: `f` is an open file descriptor for the duration of the call.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Fsyncs a directory (after renames into it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A part file that could not be moved over its destination.
#[derive(Debug)]
pub struct CommitError {
    /// Its place in the list of moves given to [`commit`].
    pub position: usize,
    /// The part file.
    pub part: PathBuf,
    /// Where it was to go.
    pub destination: PathBuf,
    /// Why it could not.
    pub source: io::Error,
}

impl CommitError {
    pub(super) fn internal(e: impl std::fmt::Display) -> CommitError {
        CommitError {
            position: 0,
            part: PathBuf::new(),
            destination: PathBuf::new(),
            source: io::Error::other(format!("the commit task failed: {e}")),
        }
    }
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not move {} to {}: {}",
            self.part.display(),
            self.destination.display(),
            self.source
        )
    }
}

/// The mode a destination gets when its part file is committed: the permission bits of
/// the file it replaces (as `cp` onto an existing file keeps them), else what a new file
/// gets under `umask` (`0o666 & !umask`, as `open(…, O_CREAT, 0666)` by the job's creator
/// would). A symlink at the destination is replaced, not followed, so its target's mode
/// does not count.
pub(super) fn destination_mode(dest: &Path, umask: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_file() => m.mode() & 0o777,
        _ => 0o666 & !umask & 0o777,
    }
}

/// The daemon's own umask (read once, from `/proc/self/status`: asking `umask(2)` would
/// change it for a moment under the other threads). 0o022 where the kernel does not say.
pub fn daemon_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

/// Renames each `(part, destination)` over the destination, syncs the folders touched,
/// then removes the `discard`ed part files. Each part file first gets its destination's
/// mode ([`destination_mode`], with `umask` for a new file), so the file appears whole and
/// with its final mode at once. A part already gone whose destination exists was
/// committed by an earlier complete that stopped part-way (a crash, a failure).
///
/// Every move is tried; those that fail are returned, in order, and then nothing is
/// discarded (the job is not complete until every file is in place).
pub(super) fn commit(
    moves: &[(PathBuf, PathBuf)],
    discard: &[PathBuf],
    umask: u32,
    resuming: bool,
) -> Result<(), Vec<CommitError>> {
    let mut failures = Vec::new();
    for (position, (part, dest)) in moves.iter().enumerate() {
        let part_gone = std::fs::symlink_metadata(part).is_err();
        if part_gone && resuming && std::fs::metadata(dest).is_ok() {
            // Moved before a crash cut the complete short.
            continue;
        }
        if part_gone {
            // Not moved by this complete: its folder was moved away or swapped for a link
            // (a file of that name where the link leads is not this job's).
            failures.push(CommitError {
                position,
                part: part.clone(),
                destination: dest.clone(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "its part file is not where it was written (was the folder moved or \
                     replaced?): nothing was moved",
                ),
            });
            continue;
        }
        let placed = set_mode(part, destination_mode(dest, umask))
            .and_then(|()| std::fs::rename(part, dest));
        if let Err(source) = placed {
            failures.push(CommitError {
                position,
                part: part.clone(),
                destination: dest.clone(),
                source,
            });
        }
    }
    let mut dirs: Vec<&Path> = moves.iter().filter_map(|(_, d)| d.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = sync_dir(d) {
            tracing::warn!(dir = %d.display(), "syncing the directory failed: {e}");
        }
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    let _ = remove_all(discard);
    Ok(())
}

/// Gives the regular file `path` (never a link: it is not followed) the permissions `mode`.
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                e.kind(),
                "the part file has been replaced by a symbolic link",
            ),
            _ => e,
        })?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(
            "the part file is no longer a regular file",
        ));
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
}

/// Removes every path; one already gone is fine. Returns the first other error.
pub(super) fn remove_all(paths: &[PathBuf]) -> io::Result<()> {
    let mut first = None;
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Writes `data` to a private temporary file beside `path`, syncs it, and renames it over
/// `path`.
pub(super) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.ferry-reply.part"));
    let mut f = create_part(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_destination_gets_the_umask_mode_and_a_replaced_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new_part = dir.path().join(".new.part");
        let new_dest = dir.path().join("new");
        let old_part = dir.path().join(".old.part");
        let old_dest = dir.path().join("old");
        create_part(&new_part).unwrap();
        create_part(&old_part).unwrap();
        assert_eq!(mode_of(&new_part), 0o600, "part files are private");
        std::fs::write(&old_dest, b"before").unwrap();
        std::fs::set_permissions(&old_dest, std::fs::Permissions::from_mode(0o640)).unwrap();

        commit(
            &[
                (new_part.clone(), new_dest.clone()),
                (old_part, old_dest.clone()),
            ],
            &[],
            0o022,
            false,
        )
        .unwrap();
        assert_eq!(mode_of(&new_dest), 0o644);
        assert_eq!(mode_of(&old_dest), 0o640);
        assert_eq!(destination_mode(&dir.path().join("other"), 0o077), 0o600);
        assert_eq!(destination_mode(&dir.path().join("other"), 0o002), 0o664);
    }

    #[test]
    fn a_part_file_not_where_it_was_written_is_not_counted_as_moved() {
        let dir = tempfile::tempdir().unwrap();
        let (part, dest) = (dir.path().join(".f.part"), dir.path().join("f"));
        // A file of that name is there, but the part file is gone (its folder swapped).
        std::fs::write(&dest, b"someone else's").unwrap();
        let failed = commit(&[(part.clone(), dest.clone())], &[], 0o022, false).unwrap_err();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].source.to_string().contains("nothing was moved"));
        // Going on with a complete a crash cut short, the same is a move done before.
        commit(&[(part, dest.clone())], &[], 0o022, true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
    }

    #[test]
    fn a_symlink_at_the_destination_does_not_lend_its_target_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(destination_mode(&link, 0o022), 0o644);
    }
}
