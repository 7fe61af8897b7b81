//! Accounts, as the system's name service knows them: the passwd entry and groups of a
//! uid (whose identity a system-wide daemon takes on), a group's id by name (the admin
//! group), and a process's file-mode creation mask (the umask a job is created with).

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// The group of a uid that has no passwd entry (Debian's `nogroup`).
const NOGROUP: u32 = 65534;

/// What a process running as a user gets: ids, groups and the passwd entry's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group the user is in (the primary one included), as `initgroups` sets them.
    pub groups: Vec<u32>,
    /// The login name (the uid in decimal when it has no passwd entry).
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    /// The account of `uid`: its passwd entry and groups, or, for a uid without a passwd
    /// entry, [`Account::unnamed`].
    pub fn of(uid: u32) -> Account {
        passwd_entry(uid).unwrap_or_else(|| Account::unnamed(uid))
    }

    /// A uid the name service does not know: group `nogroup`, no other groups, home `/`.
    pub fn unnamed(uid: u32) -> Account {
        Account {
            uid,
            gid: NOGROUP,
            groups: vec![NOGROUP],
            name: uid.to_string(),
            home: PathBuf::from("/"),
            shell: PathBuf::from("/bin/sh"),
        }
    }
}

/// Calls `f` with a growing buffer until it stops answering ERANGE (the `_r` functions
/// of the name service); `None` on any other failure or when nothing was found.
fn with_buffer<T>(
    mut f: impl FnMut(&mut Vec<libc::c_char>) -> Result<Option<T>, i32>,
) -> Option<T> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        match f(&mut buf) {
            Ok(v) => return v,
            Err(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(_) => return None,
        }
    }
}

fn passwd_entry(uid: u32) -> Option<Account> {
    let (name, gid, home, shell) = with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
        if r != 0 {
            return Err(r);
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: getpwuid_r filled pw's strings with NUL-terminated text inside buf.
        let text =
            |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        Ok(Some((
            text(pw.pw_name),
            pw.pw_gid,
            text(pw.pw_dir),
            text(pw.pw_shell),
        )))
    })?;
    let groups = groups_of(&name, gid);
    Some(Account {
        uid,
        gid,
        groups,
        name,
        home: PathBuf::from(if home.is_empty() { "/".into() } else { home }),
        shell: PathBuf::from(if shell.is_empty() {
            "/bin/sh".into()
        } else {
            shell
        }),
    })
}

/// The groups of user `name` whose primary group is `gid` (`getgrouplist`).
fn groups_of(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; n as usize];
        let asked = n;
        // SAFETY: groups holds n entries; getgrouplist writes at most that many and sets n.
        let r = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n <= asked {
            n = asked * 2;
        }
        if n > 65536 {
            return vec![gid];
        }
    }
}

/// The id of group `name`, if the name service knows it.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value to be overwritten.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if r != 0 {
            return Err(r);
        }
        Ok((!found.is_null()).then_some(gr.gr_gid))
    })
}

/// The umask of process `pid` (the `Umask:` line of `/proc/PID/status`, Linux 4.7 and
/// later), if it can be read.
pub fn process_umask(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_and_in_its_group() {
        let root = Account::of(0);
        assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-ferry-xyz"), None);
    }

    #[test]
    fn an_unknown_uid_gets_nogroup_and_no_home() {
        let a = Account::of(3_999_999_999);
        assert_eq!(a, Account::unnamed(3_999_999_999));
        assert_eq!(a.groups, vec![NOGROUP]);
    }

    #[test]
    fn this_process_umask_is_read() {
        // SAFETY: umask only swaps the mask; restored at once.
        let mine = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        assert_eq!(process_umask(std::process::id()), Some(mine as u32));
        assert_eq!(process_umask(u32::MAX), None);
    }
}
