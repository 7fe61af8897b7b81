//! Processes started for a job's owner: handlers (activation) and notify commands.
//!
//! The per-user daemon starts them as itself, with its own environment. The system-wide
//! daemon starts them as the owner for good: in the child, between `fork` and `exec`, it
//! sets the supplementary groups, then the real, effective and saved gids, then the uids
//! (raw system calls: the child has one thread, and nothing there may allocate), the
//! owner's umask, and only then changes to the working folder (so a folder the owner
//! cannot enter is refused, as it would be for them). The environment is a clean one:
//! `HOME`, `USER`, `LOGNAME`, `SHELL` from the passwd entry, a fixed `PATH`, and the
//! `FERRY_` variables the caller adds. Every descriptor above 2 is closed at `exec`.
//! Where their output goes is `output.rs`'s. Each starts in its own process group (so a
//! hung one is killed with everything it started), in the folder registered for it, else
//! the owner's home — never in whatever folder the daemon was started from.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::account::Account;

/// `PATH` of a process started for a user.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// `PATH` of a process started for root.
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// `argv` as a command (no shell), standard input closed, output to `stdio`, in `workdir`,
/// in its own process group; as the daemon itself, in its environment (less systemd's notification
/// variables, which are the daemon's alone).
pub(super) fn command(
    argv: &[String],
    workdir: &Path,
    stdio: (Stdio, Stdio),
) -> Option<tokio::process::Command> {
    let (program, args) = argv.split_first()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdio.0)
        .stderr(stdio.1)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    cmd.current_dir(workdir).process_group(0);
    Some(cmd)
}

/// `argv` as a command that runs as `account` (see the module documentation), with
/// `umask`, in `workdir` else the account's home (else `/`), with a clean environment.
pub(super) fn command_as(
    account: &Account,
    umask: u32,
    argv: &[String],
    workdir: Option<&str>,
    stdio: (Stdio, Stdio),
) -> io::Result<Option<tokio::process::Command>> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(None);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdio.0)
        .stderr(stdio.1)
        .process_group(0)
        .env_clear()
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .env("SHELL", &account.shell)
        .env(
            "PATH",
            if account.uid == 0 {
                ROOT_PATH
            } else {
                USER_PATH
            },
        );
    let demotion = Demotion {
        uid: account.uid,
        gid: account.gid,
        groups: account.groups.clone(),
        umask: umask as libc::mode_t,
        workdir: workdir.map(cstring).transpose()?,
        home: cstring(account.home.as_path())?,
    };
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || demotion.apply());
    }
    Ok(Some(cmd))
}

fn cstring(p: impl AsRef<Path>) -> io::Result<CString> {
    CString::new(p.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// What the child does to itself before `exec`.
struct Demotion {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    umask: libc::mode_t,
    workdir: Option<CString>,
    home: CString,
}

impl Demotion {
    /// Runs in the child: groups, gids, uids, umask, folder, descriptors. Any failure
    /// stops the child before `exec` (the spawn fails with that error).
    fn apply(&self) -> io::Result<()> {
        let check = |r: libc::c_long| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: raw system calls on memory owned by `self`, which outlives them.
        unsafe {
            check(libc::syscall(
                libc::SYS_setgroups,
                self.groups.len(),
                self.groups.as_ptr(),
            ))?;
            check(libc::syscall(
                libc::SYS_setresgid,
                self.gid,
                self.gid,
                self.gid,
            ))?;
            check(libc::syscall(
                libc::SYS_setresuid,
                self.uid,
                self.uid,
                self.uid,
            ))?;
            if self.uid != 0 && (libc::geteuid() == 0 || libc::getegid() != self.gid) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            libc::umask(self.umask);
            match &self.workdir {
                Some(dir) => check(libc::chdir(dir.as_ptr()) as libc::c_long)?,
                None => {
                    if libc::chdir(self.home.as_ptr()) != 0 {
                        libc::chdir(c"/".as_ptr());
                    }
                }
            }
            // Descriptors the daemon opened without close-on-exec (none should be) do
            // not reach the user's program. Kernels before 5.11 lack this; then the
            // daemon's own close-on-exec flags are all there is.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        Ok(())
    }
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
