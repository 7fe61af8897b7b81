//! Where the socket, the state and the configuration live. `ferryd`, the
//! client library and the `ferry` command all follow these rules.
//!
//! Two daemons follow them: the per-user daemon (the default: a socket in the user's
//! runtime folder, state in their home) and the system-wide daemon (`ferryd --system`:
//! [`SYSTEM_SOCKET`], [`SYSTEM_STATE_DIR`], [`SYSTEM_CONFIG`]). `FERRY_SOCKET`,
//! `FERRY_STATE_DIR` and `FERRY_CONFIG` override both.
//!
//! Each rule reads the environment through a lookup function, so the `*_from` forms can
//! be checked without touching the process's environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Overrides the socket path.
pub const SOCKET_ENV: &str = "FERRY_SOCKET";
/// Overrides the state folder.
pub const STATE_DIR_ENV: &str = "FERRY_STATE_DIR";
/// Overrides the configuration file.
pub const CONFIG_ENV: &str = "FERRY_CONFIG";
/// The file name of the daemon's log when a client started it.
pub const DAEMON_LOG: &str = "ferryd.log";
/// The system-wide daemon's socket (mode 0666: every user of the machine may call).
pub const SYSTEM_SOCKET: &str = "/run/ferry/ferryd.sock";
/// The system-wide daemon's state folder.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/ferry";
/// The system-wide daemon's configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/ferry/ferryd.toml";

/// The current user's uid.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// A non-empty environment variable of this process.
fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// `name` from `env`, as a path, if set and not empty.
fn path_of(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Option<PathBuf> {
    env(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The socket ferryd serves: `$FERRY_SOCKET`, else `$XDG_RUNTIME_DIR/ferry/ferryd.sock`,
/// else `/tmp/ferry-$UID/ferryd.sock`.
pub fn socket_path() -> PathBuf {
    socket_path_from(process_env, current_uid())
}

/// [`socket_path`] with the environment read through `env` and the uid given.
pub fn socket_path_from(env: impl Fn(&str) -> Option<OsString>, uid: u32) -> PathBuf {
    if let Some(p) = path_of(&env, SOCKET_ENV) {
        return p;
    }
    if let Some(dir) = path_of(&env, "XDG_RUNTIME_DIR") {
        return dir.join("ferry").join("ferryd.sock");
    }
    PathBuf::from(format!("/tmp/ferry-{uid}")).join("ferryd.sock")
}

/// The folder of the job store: `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else
/// `~/.local/state/ferry`.
pub fn state_dir() -> PathBuf {
    state_dir_from(process_env)
}

/// [`state_dir`] with the environment read through `env`.
pub fn state_dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(p) = path_of(&env, STATE_DIR_ENV) {
        return p;
    }
    if let Some(dir) = path_of(&env, "XDG_STATE_HOME") {
        return dir.join("ferry");
    }
    home(&env).join(".local").join("state").join("ferry")
}

/// The daemon's configuration file: `$FERRY_CONFIG`, else
/// `$XDG_CONFIG_HOME/ferry/ferryd.toml`, else `~/.config/ferry/ferryd.toml`.
pub fn config_path() -> PathBuf {
    config_path_from(process_env)
}

/// [`config_path`] with the environment read through `env`.
pub fn config_path_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(p) = path_of(&env, CONFIG_ENV) {
        return p;
    }
    let base = path_of(&env, "XDG_CONFIG_HOME").unwrap_or_else(|| home(&env).join(".config"));
    base.join("ferry").join("ferryd.toml")
}

/// `$HOME`, else `/`.
fn home(env: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    path_of(env, "HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The socket of the system-wide ferryd: `$FERRY_SOCKET`, else [`SYSTEM_SOCKET`].
pub fn system_socket_path() -> PathBuf {
    system_socket_path_from(process_env)
}

/// [`system_socket_path`] with the environment read through `env`.
pub fn system_socket_path_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    path_of(&env, SOCKET_ENV).unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET))
}

/// The state folder of the system-wide ferryd: `$FERRY_STATE_DIR`, else
/// [`SYSTEM_STATE_DIR`].
pub fn system_state_dir() -> PathBuf {
    system_state_dir_from(process_env)
}

/// [`system_state_dir`] with the environment read through `env`.
pub fn system_state_dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    path_of(&env, STATE_DIR_ENV).unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR))
}

/// The configuration file of the system-wide ferryd: `$FERRY_CONFIG`, else
/// [`SYSTEM_CONFIG`].
pub fn system_config_path() -> PathBuf {
    system_config_path_from(process_env)
}

/// [`system_config_path`] with the environment read through `env`.
pub fn system_config_path_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    path_of(&env, CONFIG_ENV).unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG))
}

/// The single-instance lock beside `socket` (`ferryd.sock` → `ferryd.lock`): a running
/// daemon holds an exclusive `flock` on it.
pub fn lock_path(socket: &Path) -> PathBuf {
    socket.with_extension("lock")
}

/// The mark `ferry daemon stop` leaves beside `socket` (`ferryd.sock` →
/// `ferryd.stopped`): while it is there, clients that lost their daemon wait for one
/// instead of starting it again; a new command that needs the daemon (or `ferry daemon
/// start`) removes it and starts one.
pub fn stopped_mark(socket: &Path) -> PathBuf {
    socket.with_extension("stopped")
}

/// Where a daemon started by a client writes its output: `STATE_DIR/ferryd.log`.
pub fn daemon_log_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DAEMON_LOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn socket_rules_in_order() {
        let p = |vars: &[(&str, &str)]| socket_path_from(env_of(vars), 1234);
        assert_eq!(
            p(&[
                ("FERRY_SOCKET", "/s/x.sock"),
                ("XDG_RUNTIME_DIR", "/run/user/1")
            ]),
            Path::new("/s/x.sock")
        );
        assert_eq!(
            p(&[("FERRY_SOCKET", ""), ("XDG_RUNTIME_DIR", "/run/user/1")]),
            Path::new("/run/user/1/ferry/ferryd.sock"),
            "an empty variable counts as unset"
        );
        assert_eq!(p(&[]), Path::new("/tmp/ferry-1234/ferryd.sock"));
    }

    #[test]
    fn state_rules_in_order() {
        let p = |vars: &[(&str, &str)]| state_dir_from(env_of(vars));
        assert_eq!(
            p(&[("FERRY_STATE_DIR", "/st"), ("XDG_STATE_HOME", "/x")]),
            Path::new("/st")
        );
        assert_eq!(
            p(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]),
            Path::new("/x/ferry")
        );
        assert_eq!(p(&[("HOME", "/h")]), Path::new("/h/.local/state/ferry"));
        assert_eq!(p(&[]), Path::new("/.local/state/ferry"));
    }

    #[test]
    fn config_rules_in_order() {
        let p = |vars: &[(&str, &str)]| config_path_from(env_of(vars));
        assert_eq!(
            p(&[("FERRY_CONFIG", "/c.toml"), ("XDG_CONFIG_HOME", "/x")]),
            Path::new("/c.toml")
        );
        assert_eq!(
            p(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]),
            Path::new("/x/ferry/ferryd.toml")
        );
        assert_eq!(
            p(&[("HOME", "/h")]),
            Path::new("/h/.config/ferry/ferryd.toml")
        );
    }

    #[test]
    fn system_rules_take_the_overrides_then_the_fixed_paths() {
        let none = env_of(&[]);
        assert_eq!(
            system_socket_path_from(&none),
            Path::new("/run/ferry/ferryd.sock")
        );
        assert_eq!(system_state_dir_from(&none), Path::new("/var/lib/ferry"));
        assert_eq!(
            system_config_path_from(&none),
            Path::new("/etc/ferry/ferryd.toml")
        );
        let set = env_of(&[
            ("FERRY_SOCKET", "/t/s.sock"),
            ("FERRY_STATE_DIR", "/t/state"),
            ("FERRY_CONFIG", "/t/c.toml"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
            ("HOME", "/h"),
        ]);
        assert_eq!(system_socket_path_from(&set), Path::new("/t/s.sock"));
        assert_eq!(system_state_dir_from(&set), Path::new("/t/state"));
        assert_eq!(system_config_path_from(&set), Path::new("/t/c.toml"));
        let per_user_only = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1"), ("HOME", "/h")]);
        assert_eq!(
            system_socket_path_from(&per_user_only),
            Path::new(SYSTEM_SOCKET),
            "the per-user variables never move the system daemon"
        );
    }

    #[test]
    fn lock_and_log_beside_their_owners() {
        assert_eq!(
            lock_path(Path::new("/run/user/1/ferry/ferryd.sock")),
            Path::new("/run/user/1/ferry/ferryd.lock")
        );
        assert_eq!(
            daemon_log_path(Path::new("/st")),
            Path::new("/st/ferryd.log")
        );
    }
}
