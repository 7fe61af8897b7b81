//! Finding the daemon: the socket path, connecting over it, and starting `ferryd` when
//! none answers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_common::paths;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Error, Result};

/// The socket ferryd serves: `$FERRY_SOCKET`, else `$XDG_RUNTIME_DIR/ferry/ferryd.sock`,
/// else `/tmp/ferry-$UID/ferryd.sock` (the rule ferryd follows too).
pub fn default_socket_path() -> PathBuf {
    paths::socket_path()
}

/// The folder of the job store: `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else
/// `~/.local/state/ferry` (the rule ferryd follows too).
pub fn default_state_dir() -> PathBuf {
    paths::state_dir()
}

/// How [`crate::Manager::connect_with`] reaches the daemon.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The socket; default [`default_socket_path`].
    pub socket: PathBuf,
    /// Start `ferryd` when none answers (the binary beside this program, then `PATH`).
    pub autostart: bool,
    /// How long to wait for a started daemon to answer.
    pub start_timeout: Duration,
    /// How long to wait for a daemon that went away (it shut down, crashed or was killed)
    /// to come back — started again by this process when `autostart` is on, else by
    /// whoever runs it (systemd's socket activation, a user) — before a call, watch or
    /// subscription fails with [`crate::Error::DaemonGone`]. `None`: no waiting; the first
    /// sign of a daemon gone is the error. Default: 60 s.
    pub reconnect_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// The system-wide ferryd, which serves every user of the machine: socket
    /// `$FERRY_SOCKET`, else `/run/ferry/ferryd.sock`. It is started by systemd, never by
    /// a client, so `autostart` is off.
    pub fn system() -> ConnectOptions {
        ConnectOptions {
            socket: paths::system_socket_path(),
            autostart: false,
            ..ConnectOptions::default()
        }
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            socket: default_socket_path(),
            autostart: false,
            start_timeout: Duration::from_secs(15),
            reconnect_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Opens a gRPC channel over the Unix socket (fails at once if nobody listens).
pub(crate) async fn channel(socket: &Path) -> Result<Channel> {
    // Probe first: tonic connects lazily and would report a vaguer error later.
    tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Error::Unavailable {
            socket: socket.to_owned(),
            reason: if socket == Path::new(paths::SYSTEM_SOCKET) {
                format!(
                    "{e}; is the system-wide ferryd installed and its socket enabled? \
                     (`sudo systemctl enable --now ferryd.socket`)"
                )
            } else {
                format!("{e}; is ferryd running? (`ferry daemon start`)")
            },
        })?;
    let path = socket.to_owned();
    Endpoint::try_from("http://ferryd.local")
        .expect("static URI is valid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| Error::Unavailable {
            socket: socket.to_owned(),
            reason: e.to_string(),
        })
}

/// The `ferryd` binary to start: `$FERRY_DAEMON`, the one beside this program (or, for a
/// program cargo built into `examples/` or `deps/`, the one in the profile directory
/// above), then `PATH`.
pub fn find_daemon_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_DAEMON").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let beside = dir.join("ferryd");
            if beside.is_file() {
                return Some(beside);
            }
            let cargo_subdir = dir
                .file_name()
                .is_some_and(|n| n == "examples" || n == "deps");
            if let Some(profile) = dir.parent().filter(|_| cargo_subdir) {
                let above = profile.join("ferryd");
                if above.is_file() {
                    return Some(above);
                }
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ferryd"))
            .find(|p| p.is_file())
    })
}

/// Starts `ferryd` detached from this process (its own session; its log in
/// `STATE_DIR/ferryd.log.YYYY-MM-DD`, what it prints before in `STATE_DIR/ferryd.log`) and
/// waits until it answers on `socket`.
pub(crate) async fn start_daemon(socket: &Path, timeout: Duration) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let unavailable = |reason: String| Error::Unavailable {
        socket: socket.to_owned(),
        reason,
    };
    let bin = find_daemon_binary().ok_or_else(|| {
        unavailable(
            "no ferryd answers and no ferryd binary was found beside this program, on PATH \
             or in $FERRY_DAEMON; build it (`cargo build --release --bins` in ferry's \
             source tree) or install it beside `ferry`"
                .into(),
        )
    })?;
    let state_dir = default_state_dir();
    let log_path = paths::daemon_log_path(&state_dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| {
            unavailable(format!(
                "cannot open the daemon log in {}: {e}",
                state_dir.display()
            ))
        })?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut cmd = std::process::Command::new(&bin);
    if let Some(config) = std::env::var_os(paths::CONFIG_ENV).filter(|v| !v.is_empty()) {
        cmd.env(paths::CONFIG_ENV, absolute(Path::new(&config)));
    }
    // The daemon outlives this program: it must not hold this program's folder. Paths
    // given relative to this folder are handed on made absolute.
    // Its log: a file a day beside `ferryd.log` (which keeps what it says before logging
    // starts, a panic say).
    cmd.arg("--log-file").arg(&log_path);
    cmd.env(paths::SOCKET_ENV, absolute(socket))
        .env(paths::STATE_DIR_ENV, absolute(&state_dir))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| unavailable(e.to_string()))?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| unavailable(format!("starting {}: {e}", bin.display())))?;
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            // Reap the child in the background if it ever exits while we live.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another daemon may have won a start-up race: if so, it answers now.
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                return Ok(());
            }
            return Err(unavailable(format!(
                "{} exited with {status}; see {}",
                bin.display(),
                log_path.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(unavailable(format!(
                "started {} but it did not answer within {timeout:?}",
                bin.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
