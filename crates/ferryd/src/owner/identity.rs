//! Threads that are a user, for the system-wide daemon: a small pool of dedicated OS
//! threads per uid, each of which has taken on that user's file-system identity before it
//! runs any work.
//!
//! Linux checks every path lookup, open, create, rename, unlink and chmod against the
//! calling *thread's* file-system uid and gid (`fsuid`, `fsgid`), its supplementary
//! groups, and its effective capabilities. A thread of the pool, once, as it starts:
//!
//! 1. makes sure the daemon's folder for the user exists (`STATE/users/UID`, 0700, owned
//!    by the user, created as root inside a root-owned folder nobody else can write);
//! 2. calls `unshare(CLONE_FS)`, so that its umask and current folder are its own;
//! 3. sets its supplementary groups, then `setfsgid`, then `setfsuid`, each with the raw
//!    system call. glibc's `setgroups`/`setuid` wrappers change *every* thread of the
//!    process (POSIX wants that); the raw calls change this thread only. Changing the
//!    fsuid from 0 to another uid also clears the file-system capabilities
//!    (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`, `CAP_CHOWN`, …) from the
//!    thread's effective set, so root's overrides no longer apply;
//! 4. reads the ids back and refuses to run anything if they are not what was asked.
//!
//! From then on every file-system call the thread makes is checked as the user: a path
//! the user could not open, the thread cannot open; a symlink or `..` the user planted
//! leads only where the user could go anyway. Work is handed to the pool as closures;
//! a thread whose identity could not be set tells each closure so instead of running it.
//! Idle threads exit after a while (the next one looks the account up afresh, so a
//! change of groups is seen).
//!
//! Processes (handlers, notify commands) are not started from these threads: see
//! `process.rs`, which drops every id of the child for good before `exec`.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::account::Account;

/// Threads per uid at most (part files of parallel transfers open at once).
const MAX_THREADS: usize = 4;
/// An idle thread exits after this long.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// A piece of work for a pool: called with `Ok(())` on a thread that is the user, or with
/// the reason the identity could not be taken on (the work must then not be done).
pub(super) type Task = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The threads acting as one uid.
pub(super) struct Pool {
    uid: u32,
    /// `STATE/users/UID`: the daemon's folder for this user.
    private_dir: PathBuf,
    state: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    threads: usize,
    idle: usize,
}

impl Pool {
    pub(super) fn new(uid: u32, private_dir: PathBuf) -> Arc<Pool> {
        Arc::new(Pool {
            uid,
            private_dir,
            state: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        })
    }

    /// Queues `task`; a thread of the pool runs it as the user.
    pub(super) fn submit(self: &Arc<Self>, task: Task) {
        let mut q = self.state.lock();
        q.tasks.push_back(task);
        if q.idle > 0 {
            self.ready.notify_one();
            return;
        }
        if q.threads < MAX_THREADS {
            q.threads += 1;
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ferryd-uid-{}", self.uid))
                .spawn(move || pool.thread_main());
            if let Err(e) = spawned {
                q.threads -= 1;
                if q.threads == 0 {
                    // Nobody would ever run it: refuse it now.
                    if let Some(task) = q.tasks.pop_back() {
                        drop(q);
                        task(Err(io::Error::other(format!(
                            "no thread could be started to act as uid {}: {e}",
                            self.uid
                        ))));
                    }
                }
            }
        }
    }

    fn thread_main(self: Arc<Self>) {
        let identity = become_user(self.uid, &self.private_dir);
        if let Err(e) = identity {
            tracing::error!(uid = self.uid, "cannot act as the job's owner: {e}");
            // Refuse what is queued, then let the next thread try again (the account may
            // be fixed by then).
            loop {
                let task = {
                    let mut q = self.state.lock();
                    match q.tasks.pop_front() {
                        Some(t) => t,
                        None => {
                            q.threads -= 1;
                            return;
                        }
                    }
                };
                let refused = io::Error::new(e.kind(), e.to_string());
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(Err(refused))));
            }
        }
        loop {
            let task = {
                let mut q = self.state.lock();
                loop {
                    if let Some(t) = q.tasks.pop_front() {
                        break t;
                    }
                    q.idle += 1;
                    let timed_out = self.ready.wait_for(&mut q, IDLE_EXIT).timed_out();
                    q.idle -= 1;
                    if timed_out && q.tasks.is_empty() {
                        q.threads -= 1;
                        return;
                    }
                }
            };
            // A panic in the work loses that work only (its caller hears of it); the
            // thread's identity is unchanged by it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(Ok(()))));
        }
    }
}

/// Makes this thread `uid` for file-system purposes (see the module documentation).
fn become_user(uid: u32, private_dir: &Path) -> io::Result<()> {
    let account = Account::of(uid);
    let context = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("acting as uid {uid} ({}): {what}: {e}", account.name),
        )
    };
    ensure_private_dir(private_dir, &account)
        .map_err(|e| context(&format!("preparing {}", private_dir.display()), e))?;
    // SAFETY: unshare(CLONE_FS) only gives this thread its own umask, root and cwd.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(context("unshare(CLONE_FS)", io::Error::last_os_error()));
    }
    set_thread_identity(&account).map_err(|e| context("setting the thread's ids", e))?;
    // The folder for replies lives in the user's own folder: made as the user.
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .create(private_dir.join("replies"))
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => tracing::warn!(uid, "creating {}/replies: {e}", private_dir.display()),
    }
    Ok(())
}

/// Sets this thread's supplementary groups, fsgid and fsuid to `account`'s, with the
/// raw system calls (per thread), and checks them.
fn set_thread_identity(account: &Account) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = account.groups.clone();
    // SAFETY: the pointer and length describe `groups`; the call changes this thread only.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // setfsgid/setfsuid return the previous id whether or not they succeeded; asking with
    // an invalid id (-1) changes nothing and returns the current one.
    // SAFETY: setfsgid/setfsuid change this thread's file-system ids only.
    let fsgid = unsafe {
        libc::syscall(libc::SYS_setfsgid, account.gid);
        libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32
    };
    if fsgid != account.gid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setfsgid({}) left the thread in group {fsgid}", account.gid),
        ));
    }
    // SAFETY: as above.
    let fsuid = unsafe {
        libc::syscall(libc::SYS_setfsuid, account.uid);
        libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32
    };
    if fsuid != account.uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setfsuid({}) left the thread as uid {fsuid}", account.uid),
        ));
    }
    let mut now: Vec<libc::gid_t> = vec![0; groups.len() + 1];
    // SAFETY: `now` has room for the count passed.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, now.len(), now.as_mut_ptr()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    now.truncate(n as usize);
    let (mut want, mut got) = (groups, now);
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("setgroups({want:?}) left the thread in groups {got:?}"),
        ));
    }
    Ok(())
}

/// Creates `STATE/users/UID` (0700, owned by the user) if needed, or checks it: a real
/// folder (not a link) owned by the user. Its parent belongs to root and nobody else may
/// write in it, so nobody but root can have put anything at that name.
fn ensure_private_dir(dir: &Path, account: &Account) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        match std::fs::DirBuilder::new().mode(0o711).create(parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    if !m.file_type().is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    if m.uid() != account.uid || m.gid() != account.gid {
        std::os::unix::fs::lchown(dir, Some(account.uid), Some(account.gid))?;
    }
    if m.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
