//! Whether the store can be written, and the errors of a write that could not be.
//!
//! When SQLite cannot write — the disk of the state folder is full (ENOSPC, SQLite's
//! `SQLITE_FULL`), the user's quota there is used up (EDQUOT), or the disk fails (EIO and
//! SQLite's other `SQLITE_IOERR`s) — the writer marks the store unwritable. The failed
//! transaction is rolled back whole, so the file stays consistent; the daemon keeps the
//! truth in memory and writes it back whole ([`super::Store::queue_recovery`]) once a
//! write works again, which is what marks the store writable again.

use std::path::{Path, PathBuf};

use rusqlite::ffi;
use tokio::sync::watch;

/// Why the store cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No space left on the state folder's disk.
    NoSpace,
    /// The user's disk quota on the state folder's disk is used up.
    Quota,
    /// The disk failed to read or write (EIO, or another I/O error SQLite reported).
    Io,
}

/// The store could not be written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    pub cause: Cause,
    /// The state folder (where `ferry.db` is).
    pub state_dir: PathBuf,
    /// SQLite's words, and the system's error number when it gave one.
    pub detail: String,
}

impl std::fmt::Display for Unwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.state_dir.display();
        let detail = &self.detail;
        match self.cause {
            Cause::NoSpace => write!(
                f,
                "the disk of ferryd's state folder {dir} is full, so ferryd cannot record \
                 anything ({detail}): free space there; ferryd notices within seconds and \
                 carries on by itself"
            ),
            Cause::Quota => write!(
                f,
                "your disk quota on ferryd's state folder {dir} is used up, so ferryd \
                 cannot record anything ({detail}): free some of it; ferryd notices within \
                 seconds and carries on by itself"
            ),
            Cause::Io => write!(
                f,
                "ferryd's state folder {dir} cannot be written: the disk reported an I/O \
                 error ({detail}); check that disk — ferryd tries again every few seconds \
                 and carries on by itself once it can write"
            ),
        }
    }
}

/// A queued write that did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store cannot be written now (full disk, quota, I/O error).
    #[error("{0}")]
    Unwritable(Unwritable),
    /// The write failed for another reason (a constraint, a bug).
    #[error("job store: {0}")]
    Failed(String),
    /// The writer has stopped (the daemon is shutting down).
    #[error("the job store has stopped")]
    Stopped,
}

/// The store's health as the writer last saw it: `None` while writes work.
pub(super) type Health = watch::Sender<Option<Unwritable>>;

/// What SQLite's failure means for the store: `Some` when the store cannot be written.
/// `errno` is the system error SQLite last saw (`sqlite3_system_errno`).
pub(super) fn classify(e: &rusqlite::Error, errno: i32, state_dir: &Path) -> Option<Unwritable> {
    let rusqlite::Error::SqliteFailure(err, message) = e else {
        return None;
    };
    // The code says whether the disk is the trouble; the system's error (which may be
    // left over from an earlier failure) only says which trouble.
    let cause = match (err.code, errno) {
        (ffi::ErrorCode::DiskFull, libc::EDQUOT) => Cause::Quota,
        (ffi::ErrorCode::DiskFull, _) => Cause::NoSpace,
        (ffi::ErrorCode::SystemIoFailure, libc::ENOSPC) => Cause::NoSpace,
        (ffi::ErrorCode::SystemIoFailure, libc::EDQUOT) => Cause::Quota,
        (ffi::ErrorCode::SystemIoFailure, _) => Cause::Io,
        _ => return None,
    };
    let words = message.clone().unwrap_or_else(|| err.to_string());
    let detail = if errno != 0 {
        format!(
            "SQLite: {words}; system: {}",
            std::io::Error::from_raw_os_error(errno)
        )
    } else {
        format!("SQLite: {words}")
    };
    Some(Unwritable {
        cause,
        state_dir: state_dir.to_owned(),
        detail,
    })
}

/// The system error SQLite last saw on `conn` (0 when none).
pub(super) fn system_errno(conn: &rusqlite::Connection) -> i32 {
    // SAFETY: the handle is valid while `conn` lives; sqlite3_system_errno only reads it.
    unsafe { ffi::sqlite3_system_errno(conn.handle()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("disk trouble".into()))
    }

    #[test]
    fn full_quota_and_io_errors_make_the_store_unwritable_and_say_where() {
        let dir = Path::new("/var/lib/ferry-state");
        let full = classify(&failure(ffi::SQLITE_FULL), 0, dir).unwrap();
        assert_eq!(full.cause, Cause::NoSpace);
        assert!(full.to_string().contains("/var/lib/ferry-state"), "{full}");
        assert!(full.to_string().contains("free space"), "{full}");
        let quota = classify(&failure(ffi::SQLITE_IOERR_WRITE), libc::EDQUOT, dir).unwrap();
        assert_eq!(quota.cause, Cause::Quota);
        assert!(quota.to_string().contains("quota"), "{quota}");
        let io = classify(&failure(ffi::SQLITE_IOERR_FSYNC), libc::EIO, dir).unwrap();
        assert_eq!(io.cause, Cause::Io);
        assert!(io.detail.contains("Input/output error"), "{}", io.detail);
        // A full disk seen behind an I/O error code is a full disk.
        let shm = classify(&failure(ffi::SQLITE_IOERR_SHMSIZE), libc::ENOSPC, dir).unwrap();
        assert_eq!(shm.cause, Cause::NoSpace);
        // Other failures are not about the disk.
        assert!(classify(&failure(ffi::SQLITE_CONSTRAINT), libc::ENOSPC, dir).is_none());
        assert!(classify(&rusqlite::Error::QueryReturnedNoRows, 0, dir).is_none());
    }
}
