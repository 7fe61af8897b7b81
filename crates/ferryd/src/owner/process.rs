//! Processes started for a job's owner: handlers (activation) and notify commands.
//!
//! A daemon runs as the owner (the per-user daemon, or a worker of the system-wide
//! daemon), so they are started as the daemon: in the per-user daemon's environment less
//! systemd's notification variables; in a worker, with only the user's `HOME`, `USER`,
//! `LOGNAME`, `SHELL` and `PATH` (as the broker set them) and the job's umask. Every descriptor above 2 is close-on-exec (Rust opens them so). Where their
//! output goes is `output.rs`'s. Each starts in its own process group (so a hung one is
//! killed with everything it started), in the folder registered for it, else the owner's
//! home — never in whatever folder the daemon was started from.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The home folder of `uid` from the password database; `/` when it has none, or it is
/// not a folder.
pub(super) fn home_of(uid: u32) -> PathBuf {
    super::account::passwd_entry(uid)
        .map(|user| user.dir)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `argv` as a command (no shell), standard input closed, output to `stdio`, in `workdir`,
/// in its own process group, with `umask` when given; as the daemon itself, in its
/// environment (less systemd's notification variables, which are the daemon's alone).
pub(super) fn command(
    argv: &[String],
    workdir: &Path,
    umask: Option<u32>,
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
        .env_remove("WATCHDOG_PID")
        .env_remove("FERRY_BROKER_FD");
    cmd.current_dir(workdir).process_group(0);
    if umask.is_some() {
        // A worker of the system-wide daemon: the program gets the user's own variables
        // (which the broker gave the worker) and nothing of the daemon's.
        let keep: Vec<(&str, std::ffi::OsString)> = ["HOME", "USER", "LOGNAME", "SHELL", "PATH"]
            .into_iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k, v)))
            .collect();
        cmd.env_clear().envs(keep);
    }
    if let Some(mask) = umask {
        let mask = mask as libc::mode_t;
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
    }
    Some(cmd)
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

    #[test]
    fn a_home_that_is_no_folder_gives_the_root_folder() {
        // Debian's `nobody` has `/nonexistent`; every entry is checked either way.
        for (name, uid, _, home) in super::super::account::tests::listed_accounts() {
            let expected = if home.is_dir() {
                home
            } else {
                PathBuf::from("/")
            };
            assert_eq!(home_of(uid), expected, "{name} ({uid})");
        }
    }
}
