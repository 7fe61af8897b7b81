//! Becoming apt's sandbox user. apt starts every method as the user it runs as (root for
//! `apt-get update`), and its own methods give up root for `APT::Sandbox::User` (`_apt`)
//! once they have the configuration; this method does the same, before it talks to
//! ferryd, so that ferryd sees `_apt` as the caller and writes apt's `partial/` folders
//! (which apt gives to `_apt`) as `_apt`.
//!
//! May use: nix.

use nix::unistd::{geteuid, setgroups, setresgid, setresuid, User};

/// Becomes `user` (its uid, its primary group as the only group) and forbids gaining
/// privileges again, when running as root; does nothing otherwise. Must run before any
/// other thread starts: the ids are set for the calling thread's process as a whole only
/// through glibc's wrappers, and no thread should ever have run as root beside it.
pub fn drop_to(user: &str) -> Result<(), String> {
    if !geteuid().is_root() {
        return Ok(());
    }
    let account = User::from_name(user)
        .map_err(|e| format!("cannot look up apt's sandbox user {user}: {e}"))?
        .ok_or_else(|| {
            format!(
                "apt's sandbox user {user} (APT::Sandbox::User) does not exist; create it or \
                 set APT::Sandbox::User"
            )
        })?;
    let fail = |what: &str, e: nix::Error| format!("cannot become {user} ({what}): {e}");
    setgroups(&[account.gid]).map_err(|e| fail("setgroups", e))?;
    setresgid(account.gid, account.gid, account.gid).map_err(|e| fail("setresgid", e))?;
    setresuid(account.uid, account.uid, account.uid).map_err(|e| fail("setresuid", e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs", e))?;
    Ok(())
}
