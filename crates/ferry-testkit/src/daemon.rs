//! Running the real `ferryd` and `ferry` binaries from integration tests (found, and
//! built when needed, by [`crate::binaries`]).

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::binaries::target_dir_bin;

/// How often [`wait_until`] and friends poll.
const POLL: Duration = Duration::from_millis(20);
/// How long [`TestEnv::start_daemon`] waits for the daemon's socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Daemon::terminate`] waits for the daemon to exit.
const TERM_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `f` every 20 ms until it returns `Some`, and returns that value.
/// Panics with `what` if `deadline` passes first.
pub fn wait_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = f() {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Async twin of [`wait_until`]: polls the synchronous `f` every 20 ms,
/// sleeping with `tokio::time::sleep` in between (so the runtime keeps running).
pub async fn wait_until_async<T>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = f() {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_until_async`], for a condition that is itself async:
/// `wait_until_future(d, "job done", || async { client.state().await.done().then_some(()) })`.
pub async fn wait_until_future<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A private directory for one test: daemon socket, state and files.
/// Everything is deleted when it is dropped.
#[derive(Debug)]
pub struct TestEnv {
    /// The temporary directory holding everything else.
    pub dir: tempfile::TempDir,
    /// The daemon socket, `dir/run/ferryd.sock` (`dir/run` is left for the
    /// daemon to create).
    pub socket: PathBuf,
    /// The daemon state directory, `dir/state` (not created).
    pub state_dir: PathBuf,
    /// A directory for downloaded or uploaded files, `dir/files` (created).
    pub files: PathBuf,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Creates a fresh temporary directory and `dir/files`.
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("create temporary test directory");
        let socket = dir.path().join("run").join("ferryd.sock");
        let state_dir = dir.path().join("state");
        let files = dir.path().join("files");
        fs::create_dir_all(&files).expect("create test files directory");
        TestEnv {
            dir,
            socket,
            state_dir,
            files,
        }
    }

    /// The daemon log, `dir/ferryd.log`, which every start appends to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ferryd.log")
    }

    /// The `FERRY_SOCKET` and `FERRY_STATE_DIR` pairs of this environment, for
    /// spawning other programs.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            (
                "FERRY_SOCKET".to_string(),
                self.socket.to_string_lossy().into_owned(),
            ),
            (
                "FERRY_STATE_DIR".to_string(),
                self.state_dir.to_string_lossy().into_owned(),
            ),
        ]
    }

    /// A [`Command`] for the `ferry` binary with this environment's
    /// `FERRY_SOCKET` and `FERRY_STATE_DIR` (the rest of the environment,
    /// including `FERRY_BIN_DIR`, is inherited).
    pub fn ferry(&self) -> Command {
        let mut cmd = Command::new(target_dir_bin("ferry"));
        cmd.envs(self.envs());
        cmd
    }

    /// Starts `ferryd` with no extra arguments; see [`start_daemon_with`](Self::start_daemon_with).
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    /// Starts `ferryd` with `args` and this environment's `FERRY_SOCKET` and
    /// `FERRY_STATE_DIR` (and `RUST_LOG=ferryd=debug` unless `RUST_LOG` is
    /// set), its output appended to [`log_path`](Self::log_path). Returns once
    /// the socket accepts connections; panics with the log if the daemon exits
    /// first or 20 s pass.
    pub fn start_daemon_with(&self, args: &[&str]) -> Daemon {
        self.start_daemon_wrapped(&[], args)
    }

    /// As [`start_daemon_with`](Self::start_daemon_with), with `ferryd` run through
    /// `prefix` (for example `ip netns exec NS`, see [`crate::NetLab::client_prefix`]);
    /// the prefix must exec the daemon, so that its pid is the daemon's.
    pub fn start_daemon_wrapped(&self, prefix: &[String], args: &[&str]) -> Daemon {
        let log = self.log_path();
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open daemon log");
        let _ = writeln!(out, "==== ferry-testkit: starting ferryd {args:?} ====");
        let err = out.try_clone().expect("clone daemon log handle");

        let bin = target_dir_bin("ferryd");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(args)
            .envs(self.envs())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "ferryd=debug");
        }
        if std::env::var_os("NO_COLOR").is_none() {
            cmd.env("NO_COLOR", "1");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", bin.display()));
        // Built before waiting, so that a panic below kills the child.
        let mut daemon = Daemon { child, log };

        let end = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "ferryd exited ({status}) before accepting connections on {}; log:\n{}",
                    self.socket.display(),
                    daemon.log_text()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return daemon;
            }
            if Instant::now() >= end {
                panic!(
                    "ferryd did not accept connections on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.socket.display(),
                    daemon.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A running `ferryd`, killed (SIGKILL) and reaped when dropped if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The log file its stdout and stderr are appended to.
    pub log: PathBuf,
}

impl Daemon {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon with SIGKILL (if still running) and reaps it.
    pub fn kill9(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (if still running) and waits up to 30 s for the daemon to
    /// exit; panics with the log if it does not.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not
        // reaped yet, so the pid still designates it.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        self.wait_exit(TERM_TIMEOUT)
    }

    /// Waits up to `timeout` for the daemon to exit on its own and returns its
    /// status; otherwise kills it and panics with the log.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(e) => panic!("cannot wait for ferryd: {e}"),
            }
            if Instant::now() >= end {
                self.kill9();
                panic!(
                    "ferryd (pid {}) did not exit within {timeout:?}; log:\n{}",
                    self.pid(),
                    self.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The exit status if the daemon has exited, without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The whole log file (lossily decoded).
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_env_layout() {
        let env = TestEnv::new();
        assert!(env.files.is_dir());
        assert_eq!(env.socket, env.dir.path().join("run/ferryd.sock"));
        assert!(!env.socket.parent().unwrap().exists());
        let envs = env.envs();
        assert_eq!(envs[0].0, "FERRY_SOCKET");
        assert_eq!(envs[1].0, "FERRY_STATE_DIR");
    }

    #[test]
    fn wait_until_returns_value() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(5), "counter", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for nothing")]
    fn wait_until_times_out() {
        wait_until::<()>(Duration::from_millis(50), "nothing", || None);
    }
}
