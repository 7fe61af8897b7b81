//! Where the socket and the state live (DESIGN §3).

use std::path::PathBuf;

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The current user's uid.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// `$FERRY_SOCKET`, else `$XDG_RUNTIME_DIR/ferry/ferryd.sock`, else `/tmp/ferry-$UID/ferryd.sock`.
pub fn socket_path() -> PathBuf {
    if let Some(p) = env_path("FERRY_SOCKET") {
        return p;
    }
    if let Some(dir) = env_path("XDG_RUNTIME_DIR") {
        return dir.join("ferry").join("ferryd.sock");
    }
    PathBuf::from(format!("/tmp/ferry-{}", current_uid())).join("ferryd.sock")
}

/// `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else `~/.local/state/ferry`.
pub fn state_dir() -> PathBuf {
    if let Some(p) = env_path("FERRY_STATE_DIR") {
        return p;
    }
    if let Some(dir) = env_path("XDG_STATE_HOME") {
        return dir.join("ferry");
    }
    let home = env_path("HOME").unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local").join("state").join("ferry")
}
