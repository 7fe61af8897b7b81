//! Start-up and shutdown: the socket (or the one systemd passed), the single-instance
//! lock, the store, the scheduler, the server, systemd's readiness and watchdog
//! notifications, and a bounded drain on SIGTERM/SIGINT.
//!
//! The system-wide daemon's folders differ from the per-user one's: the socket folder is
//! 0755 and the socket 0666 (every user may call; each call is identified by the
//! kernel), the state folder 0711 with `users/` (0711) holding each user's own folder, so
//! that a thread acting as a user can reach that user's folder and nothing else; the
//! store's files are 0600 (the daemon's umask is 077).
//!
//! The top of the daemon: it wires every module together and may use all of them.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::net::UnixListener;

use crate::config::Config;
use crate::service::Service;
use crate::store::Store;

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub config: Config,
}

/// The socket passed by systemd socket activation, if any (`LISTEN_PID`/`LISTEN_FDS`).
fn activation_listener() -> Option<std::os::unix::net::UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: systemd hands us fd 3 as the first listening socket and nothing else owns it.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    // SAFETY: fd 3 is open (checked by fcntl returning non-negative).
    unsafe {
        let flags = libc::fcntl(3, libc::F_GETFD);
        if flags < 0 {
            return None;
        }
        libc::fcntl(3, libc::F_SETFD, flags | libc::FD_CLOEXEC);
    }
    Some(listener)
}

/// Creates the socket's folder with mode 0700, or 0755 for the system-wide daemon (a
/// folder that already exists must be ours).
fn prepare_socket_dir(dir: &Path, system: bool) -> anyhow::Result<()> {
    let mode = if system { 0o755 } else { 0o700 };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("creating the socket folder {}", dir.display()))?;
    }
    let meta = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != crate::paths::current_uid() {
        bail!(
            "the socket folder {} belongs to uid {}, not to you; choose another with FERRY_SOCKET",
            dir.display(),
            meta.uid()
        );
    }
    if system && meta.mode() & 0o777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .with_context(|| format!("opening the socket folder {} to users", dir.display()))?;
    }
    Ok(())
}

/// Creates the state folder: 0700 with `replies/` for the per-user daemon; 0711 with
/// `users/` (0711) for the system-wide one, whose users reach their own folders in it.
fn prepare_state_dir(dir: &Path, system: bool) -> anyhow::Result<()> {
    let mode = if system { 0o711 } else { 0o700 };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating the state folder {}", dir.display()))?;
    if !system {
        // Replies of upload-reply jobs without a reply file of their own go here.
        let replies = dir.join("replies");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&replies)
            .with_context(|| format!("creating {}", replies.display()))?;
        return Ok(());
    }
    use std::os::unix::fs::MetadataExt;
    for d in [dir.to_path_buf(), dir.join("users")] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&d)
            .with_context(|| format!("creating {}", d.display()))?;
        let meta = fs::symlink_metadata(&d).with_context(|| format!("reading {}", d.display()))?;
        if !meta.is_dir() || meta.uid() != crate::paths::current_uid() {
            bail!(
                "{} must be a folder of the daemon's user (uid {}); it belongs to uid {}",
                d.display(),
                crate::paths::current_uid(),
                meta.uid()
            );
        }
        if meta.mode() & 0o7777 != 0o711 {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o711))
                .with_context(|| format!("setting {} to 0711", d.display()))?;
        }
    }
    Ok(())
}

/// Holds the single-instance lock for the daemon's lifetime.
pub struct InstanceLock(#[allow(dead_code)] fs::File);

fn lock_instance(socket: &Path) -> anyhow::Result<InstanceLock> {
    let path = crate::paths::lock_path(socket);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    // SAFETY: flock on an open descriptor.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        bail!(
            "another ferryd is already running on {} (it holds {}); stop it with `ferry daemon stop`",
            socket.display(),
            path.display()
        );
    }
    Ok(InstanceLock(file))
}

/// Binds the socket (0600, or 0666 for the system-wide daemon), replacing a stale one
/// only after a connect attempt shows nobody answers on it.
fn bind_socket(socket: &Path, system: bool) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if fs::symlink_metadata(socket).is_ok() {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(_) => bail!(
                "a ferryd already answers on {}; stop it with `ferry daemon stop` first",
                socket.display()
            ),
            Err(_) => {
                tracing::info!(socket = %socket.display(), "removing a stale socket");
                fs::remove_file(socket)
                    .with_context(|| format!("removing the stale socket {}", socket.display()))?;
            }
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    let mode = if system { 0o666 } else { 0o600 };
    fs::set_permissions(socket, fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Pings systemd's watchdog (when the unit sets `WatchdogSec=`) at half its period, each
/// time after the service's state lock was taken and released: a daemon stuck on it stops
/// pinging and systemd restarts it.
fn watchdog(svc: std::sync::Arc<Service>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    tracing::info!(?period, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(period / 2).await;
            let probe = svc.clone();
            if tokio::task::spawn_blocking(move || probe.job_count())
                .await
                .is_err()
            {
                return;
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }))
}

/// Runs the daemon until SIGTERM, SIGINT or a Shutdown call.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let system = opts.config.is_system();
    prepare_state_dir(&opts.state_dir, system)?;

    let (std_listener, _lock, owns_socket) = match activation_listener() {
        Some(l) => {
            tracing::info!("using the socket passed by systemd");
            (l, None, false)
        }
        None => {
            let dir = opts.socket.parent().unwrap_or(Path::new("/"));
            prepare_socket_dir(dir, system)?;
            let lock = lock_instance(&opts.socket)?;
            (bind_socket(&opts.socket, system)?, Some(lock), true)
        }
    };
    std_listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(std_listener)?;

    let store = Store::open(&opts.state_dir)?;
    let mut config = opts.config.clone();
    config.socket_path = opts.socket.clone();
    let svc = Service::open(config, store, crate::paths::current_uid())?;
    if svc.config().peers.enabled {
        let peers =
            crate::peers::Peers::start(&svc.config().peers, &opts.state_dir, svc.shared_store())
                .await
                .context("peer caching ([peers] in ferryd.toml)")?;
        svc.attach_peers(peers);
    }
    tracing::info!(
        socket = %opts.socket.display(),
        state = %opts.state_dir.display(),
        mode = if system { "system" } else { "user" },
        "ferryd ready"
    );

    let engine = svc.run_engine();
    // A complete or cancel that a crash cut short is finished now, without any call.
    let finishing = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.finish_interrupted().await })
    };
    // A state disk that cannot be written pauses transfers until it can again.
    let store_watch = tokio::spawn(svc.clone().watch_store());
    let network = {
        let svc = svc.clone();
        tokio::spawn(crate::netwatch::watch(svc.connectivity(), move |change| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.network_changed(change).await });
        }))
    };
    let cost = {
        let svc = svc.clone();
        tokio::spawn(crate::costwatch::watch(
            svc.network_cost(),
            move |_metered| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.metered_changed().await });
            },
        ))
    };
    let housekeeping = {
        let svc = svc.clone();
        tokio::spawn(async move {
            loop {
                svc.housekeeping().await;
                tokio::select! {
                    _ = tokio::time::sleep(svc.config().housekeeping_interval) => {}
                    _ = svc.shutting_down() => break,
                }
            }
        })
    };

    let stop = {
        let svc = svc.clone();
        async move {
            tokio::select! {
                _ = termination() => svc.request_shutdown(),
                _ = svc.shutting_down() => {}
            }
        }
    };
    let server = tokio::spawn(crate::rpc::serve(
        svc.clone(),
        listener,
        opts.socket.clone(),
        opts.state_dir.clone(),
        {
            let svc = svc.clone();
            async move { svc.shutting_down().await }
        },
    ));
    // The socket answers (connections queue until the server takes them): tell systemd.
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(if system {
            "serving every user"
        } else {
            "serving its user"
        }),
    ]);
    let watchdog = watchdog(svc.clone());
    stop.await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }

    // Drain: workers checkpoint, the server finishes in-flight calls; both bounded.
    svc.stop_all().await;
    svc.stop_peers();
    let drain = svc.config().drain_timeout;
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("server error: {e}"),
        Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
        Err(_) => tracing::warn!("open calls did not finish within {drain:?}; closing anyway"),
    }
    engine.abort();
    housekeeping.abort();
    finishing.abort();
    store_watch.abort();
    network.abort();
    cost.abort();
    // The store is flushed before the socket goes, so a client that sees the socket gone
    // (`ferry daemon stop`) can start a new daemon at once.
    svc.close();
    if owns_socket {
        let _ = fs::remove_file(&opts.socket);
    }
    tracing::info!("ferryd stopped");
    Ok(())
}
