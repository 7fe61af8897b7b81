//! Accounts, as the system's name service knows them: the passwd entry and groups of a
//! uid (whose identity a system-wide daemon takes on), a group's id by name (the admin
//! group), and a process's file-mode creation mask (the umask a job is created with).

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

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
        passwd_entry(uid).map_or_else(|| Account::unnamed(uid), account_of)
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

/// The passwd entry of `uid` (nix's `getpwuid_r`), if the name service has one. A lookup
/// that fails (the name service unreachable) counts as no entry, as it always has: the
/// uid is then served as [`Account::unnamed`] (`nogroup`, home `/`).
pub(super) fn passwd_entry(uid: u32) -> Option<User> {
    User::from_uid(Uid::from_raw(uid)).ok().flatten()
}

fn account_of(user: User) -> Account {
    let gid = user.gid.as_raw();
    let groups = groups_of(&user.name, gid);
    let or = |path: PathBuf, default: &str| {
        if path.as_os_str().is_empty() {
            PathBuf::from(default)
        } else {
            path
        }
    };
    Account {
        uid: user.uid.as_raw(),
        gid,
        groups,
        home: or(user.dir, "/"),
        shell: or(user.shell, "/bin/sh"),
        name: user.name,
    }
}

/// The groups of user `name` whose primary group is `gid`, as `initgroups` would set
/// them (`getgrouplist`); only `gid` when the name service cannot say.
fn groups_of(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    match getgrouplist(&cname, Gid::from_raw(gid)) {
        Ok(groups) => groups.into_iter().map(Gid::as_raw).collect(),
        Err(_) => vec![gid],
    }
}

/// The id of group `name`, if the name service knows it.
pub fn group_id(name: &str) -> Option<u32> {
    Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
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
pub(super) mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    /// The passwd entries as `getent passwd` lists them, the first of each uid (the one
    /// `getpwuid` answers with): (name, uid, gid, home).
    pub(in crate::owner) fn listed_accounts() -> Vec<(String, u32, u32, PathBuf)> {
        let out = Command::new("getent").arg("passwd").output().unwrap();
        assert!(out.status.success(), "getent passwd: {out:?}");
        let mut seen = BTreeSet::new();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                let uid = f.get(2)?.parse().ok()?;
                let gid = f.get(3)?.parse().ok()?;
                let home = PathBuf::from(f.get(5)?);
                seen.insert(uid).then(|| (f[0].to_string(), uid, gid, home))
            })
            .collect()
    }

    /// `id -G NAME`: the groups `initgroups` gives the user, as a set.
    fn groups_by_id(name: &str) -> BTreeSet<u32> {
        let out = Command::new("id").args(["-G", name]).output().unwrap();
        assert!(out.status.success(), "id -G {name}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect()
    }

    #[test]
    fn every_account_is_what_the_name_service_and_id_say() {
        let listed = listed_accounts();
        assert!(listed.iter().any(|a| a.1 == 0), "no root in {listed:?}");
        for (name, uid, gid, home) in listed.into_iter().take(200) {
            let a = Account::of(uid);
            assert_eq!((a.uid, a.gid, &a.name), (uid, gid, &name), "{a:?}");
            let expected_home = if home.as_os_str().is_empty() {
                PathBuf::from("/")
            } else {
                home
            };
            assert_eq!(a.home, expected_home, "{a:?}");
            // Supplementary groups too (on Debian, e.g. postgres in ssl-cert), not only
            // the primary one.
            let groups: BTreeSet<u32> = a.groups.iter().copied().collect();
            assert_eq!(groups, groups_by_id(&name), "{a:?}");
        }
    }

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
