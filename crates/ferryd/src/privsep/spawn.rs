//! Starting one of ferry's own processes as an account, with nothing of root left: the
//! broker starts each user's worker (as that user) and the cache process (as the system
//! user `_ferry`) this way.
//!
//! In the child, between `fork` and `exec` (one thread; raw system calls on data
//! prepared before the fork, nothing allocates):
//!
//! 1. the control link becomes descriptor 3 (the only one the new program inherits:
//!    every other descriptor is close-on-exec, and `close_range` marks any stray one);
//! 2. every capability leaves the bounding set and the ambient set, so nothing the
//!    program runs later can get one back (this takes `CAP_SETPCAP`);
//! 3. the supplementary groups, then the real, effective and saved gids, then the uids
//!    become the account's; a uid of 0 (root's own worker) also clears the effective,
//!    permitted and inheritable sets with `capset`, so root's worker holds none;
//! 4. `PR_SET_NO_NEW_PRIVS`: no set-uid program or file capability raises it again;
//! 5. its own `RLIMIT_NOFILE`, umask 077 (the process's own files are private; the files
//!    it makes for a job get the job's mode explicitly), and `/` as its folder.
//!
//! The environment is a clean one: the account's `HOME`, `USER`, `LOGNAME`, `SHELL`, a
//! fixed `PATH`, `RUST_LOG` and `NO_COLOR` if the broker has them, the machine's proxy
//! settings if the broker has them ([`PROXY_VARIABLES`]: what a job's `proxy = "system"`
//! means, set by an administrator in the unit's environment), and what the caller adds.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use crate::owner::Account;

/// The descriptor the control link has in the started process.
pub const CONTROL_FD: i32 = 3;

/// `PATH` of a process started for a user.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// `PATH` of a process started for root.
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The proxy variables a worker takes from the broker: a job's default proxy (`system`) is
/// the machine's, as curl and every other client of the machine read it.
pub const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// What is needed to start a process as an account.
pub struct Start<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub account: &'a Account,
    /// The child's end of the control link (becomes descriptor 3).
    pub control: OwnedFd,
    /// The child's `RLIMIT_NOFILE` (soft and hard).
    pub max_files: u64,
    /// More environment variables.
    pub env: Vec<(String, String)>,
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// A command that starts `start.program` as `start.account` (see the module
/// documentation). The control descriptor stays open here until the command is dropped.
pub fn command(start: Start<'_>) -> io::Result<tokio::process::Command> {
    let account = start.account;
    let mut cmd = tokio::process::Command::new(start.program);
    cmd.arg0("ferryd")
        .args(&start.args)
        .stdin(Stdio::null())
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
        )
        .env("FERRY_BROKER_FD", CONTROL_FD.to_string())
        .kill_on_drop(false);
    for key in ["RUST_LOG", "NO_COLOR", "RUST_BACKTRACE"]
        .into_iter()
        .chain(PROXY_VARIABLES)
    {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in &start.env {
        cmd.env(k, v);
    }
    // Raising a limit above the broker's own hard limit needs a capability it does not
    // keep: a larger wish is held to that limit.
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limits into `own`.
    let max_files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) } == 0 {
        start.max_files.min(own.rlim_max)
    } else {
        start.max_files
    };
    let drop = Demotion {
        control: start.control,
        uid: account.uid,
        gid: account.gid,
        groups: account.groups.clone(),
        last_cap: last_capability(),
        max_files,
    };
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || drop.apply());
    }
    Ok(cmd)
}

/// What the child does to itself before `exec`.
struct Demotion {
    control: OwnedFd,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    last_cap: u32,
    max_files: u64,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl Demotion {
    fn apply(&self) -> io::Result<()> {
        let check = |r: libc::c_long| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: raw system calls on memory owned by `self` or on the stack, which
        // outlive them; this is the single-threaded child before exec.
        unsafe {
            let fd = self.control.as_raw_fd();
            if fd == CONTROL_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                check(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) as libc::c_long)?;
            } else {
                // dup2's copy is not close-on-exec.
                if libc::dup2(fd, CONTROL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for cap in 0..=self.last_cap {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
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
            let mut header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let none = [CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            check(libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                none.as_ptr(),
            ))?;
            if libc::getuid() != self.uid
                || libc::geteuid() != self.uid
                || libc::getegid() != self.gid
            {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
            let limit = libc::rlimit {
                rlim_cur: self.max_files,
                rlim_max: self.max_files,
            };
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &limit) as libc::c_long)?;
            libc::umask(0o077);
            check(libc::chdir(c"/".as_ptr()) as libc::c_long)?;
            libc::syscall(
                libc::SYS_close_range,
                (CONTROL_FD + 1) as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        Ok(())
    }
}

/// Keeps only `keep` of this process's capabilities (effective and permitted; none
/// inheritable, none ambient) and drops every other from the bounding set: the broker
/// calls it once at start-up. Fails when the process could not drop them.
pub fn keep_only_capabilities(keep: &[u32]) -> io::Result<()> {
    let last = last_capability();
    let mut mask = [0u32; 2];
    for &c in keep {
        mask[(c / 32) as usize] |= 1 << (c % 32);
    }
    // SAFETY: prctl and capset on this process with stack data that outlives the calls.
    unsafe {
        for cap in 0..=last {
            if keep.contains(&cap) {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(io::Error::last_os_error());
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: mask[0],
                permitted: mask[0],
                inheritable: 0,
            },
            CapData {
                effective: mask[1],
                permitted: mask[1],
                inheritable: 0,
            },
        ];
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The effective capabilities of process `pid` (from `/proc/PID/status`, `CapEff`).
pub fn effective_capabilities(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no CapEff line"))
}
