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
#[derive(Debug)]
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub config: Config,
    /// Per-user daemon, or a worker of the system-wide daemon.
    pub role: Role,
}

/// Which daemon this process is.
#[derive(Debug)]
pub enum Role {
    /// The per-user daemon, on its socket: the one systemd passed, else its own.
    PerUser(Option<std::os::unix::net::UnixListener>),
    /// A worker of the system-wide daemon: its connections come from the broker on this
    /// control link (`privsep/`); `import`: its user's store split from the single store
    /// of an earlier version, moved into the state folder if that has none yet.
    Worker {
        link: std::os::unix::net::UnixStream,
        import: Option<PathBuf>,
    },
}

/// The listening socket systemd passed by socket activation (`LISTEN_PID`/`LISTEN_FDS`,
/// through sd-notify), if any. Called before any thread exists: it unsets the variables.
pub fn activation_listener() -> anyhow::Result<Option<std::os::unix::net::UnixListener>> {
    // SAFETY: called from main before the runtime (or any other thread) starts, so
    // nothing reads the environment while it changes.
    let mut fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .context("reading the sockets systemd passed (LISTEN_FDS)")?;
    let Some((fd, _name)) = fds.next() else {
        return Ok(None);
    };
    // SAFETY: fstat and getsockopt only read the descriptor's metadata into locals.
    let listening = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let mut accepting: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::fstat(fd, &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
            && libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut accepting as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
            && accepting == 1
    };
    if !listening {
        bail!("systemd passed descriptor {fd}, which is not a listening socket (check the .socket unit)");
    }
    // SAFETY: systemd handed us this listening socket and nothing else owns it.
    Ok(Some(unsafe {
        std::os::unix::net::UnixListener::from_raw_fd(fd)
    }))
}

/// Creates the socket's folder with mode 0700, or 0755 for the system-wide daemon (a
/// folder that already exists must be ours).
pub fn prepare_socket_dir(dir: &Path, system: bool) -> anyhow::Result<()> {
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
pub fn prepare_state_dir(dir: &Path, system: bool) -> anyhow::Result<()> {
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

/// Moves a store the broker split from the single store of an earlier version into
/// `state_dir`, unless the worker already has one (then the split one is left alone and
/// said so). Done as the user, in folders that are the user's.
fn import_store(from: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let to = state_dir.join("ferry.db");
    if !from.exists() {
        return Ok(());
    }
    if to.exists() {
        tracing::warn!(
            split = %from.display(),
            "this user already has a store; the one split from the single system-wide store is left where it is"
        );
        return Ok(());
    }
    fs::rename(from, &to)
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    if let Some(dir) = from.parent() {
        let _ = fs::remove_dir(dir);
    }
    tracing::info!(store = %to.display(), "the jobs of the single system-wide store are here now");
    Ok(())
}

/// A worker's lock on its user's store (`STATE/ferryd.lock`), waiting (bounded) for a
/// worker of the same user that is still stopping to let go of it.
async fn lock_worker(state_dir: &Path) -> anyhow::Result<InstanceLock> {
    let path = state_dir.join("ferryd.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(InstanceLock(file));
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "another worker of this user still holds {} after a minute",
                path.display()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Holds the single-instance lock for the daemon's lifetime.
pub struct InstanceLock(#[allow(dead_code)] fs::File);

pub fn lock_instance(socket: &Path) -> anyhow::Result<InstanceLock> {
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

/// Binds the metrics endpoint's address (`[metrics] listen`): a TCP address, or a Unix
/// socket made 0600 as the daemon's own; `None` when the endpoint is off.
pub fn bind_metrics(
    listen: &crate::config::MetricsListen,
) -> anyhow::Result<Option<crate::metrics::Listener>> {
    use crate::config::MetricsListen;
    use crate::metrics::Listener;
    let listener = match listen {
        MetricsListen::Off => return Ok(None),
        MetricsListen::Tcp(addr) => {
            let l = std::net::TcpListener::bind(addr).with_context(|| {
                format!("binding the metrics endpoint to {addr} ([metrics] listen in ferryd.toml)")
            })?;
            l.set_nonblocking(true)?;
            Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
        }
        MetricsListen::Unix(path) => {
            let l = bind_socket(path, false)
                .context("the metrics endpoint ([metrics] listen in ferryd.toml)")?;
            l.set_nonblocking(true)?;
            Listener::Unix(UnixListener::from_std(l)?)
        }
    };
    tracing::info!(listen = %listen, "serving metrics at /metrics");
    Ok(Some(listener))
}

/// Binds the socket (0600, or 0666 for the system-wide daemon), replacing a stale one
/// only after a connect attempt shows nobody answers on it.
pub fn bind_socket(
    socket: &Path,
    system: bool,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
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

/// Takes SIGTERM and SIGINT now, and returns what resolves at the first of them. Call it
/// once, before the daemon says it is ready, and keep the future: a handler taken later
/// (or taken anew on each turn of a loop) misses a signal that comes in between, and the
/// daemon would not stop (`systemctl stop` would wait for its timeout).
pub fn termination() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
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
    // A worker's folder is the user's own under the system state folder: private, as a
    // per-user daemon's.
    prepare_state_dir(&opts.state_dir, false)?;

    let (listener, link, _lock, owns_socket) = match opts.role {
        Role::PerUser(Some(l)) => {
            tracing::info!("using the socket passed by systemd");
            (Some(l), None, None, false)
        }
        Role::PerUser(None) => {
            let dir = opts.socket.parent().unwrap_or(Path::new("/"));
            prepare_socket_dir(dir, false)?;
            let lock = lock_instance(&opts.socket)?;
            (
                Some(bind_socket(&opts.socket, false)?),
                None,
                Some(lock),
                true,
            )
        }
        Role::Worker { link, import } => {
            let lock = lock_worker(&opts.state_dir).await?;
            if let Some(from) = import {
                import_store(&from, &opts.state_dir)?;
            }
            (None, Some(link), Some(lock), false)
        }
    };

    let store = Store::open(&opts.state_dir)?;
    let mut config = opts.config.clone();
    config.socket_path = opts.socket.clone();
    let svc = Service::open(config, store, crate::paths::current_uid())?;
    // A worker of the system-wide daemon reaches the fleet through the machine's cache
    // process, which holds the fleet's identity.
    if svc.config().peers.enabled && system {
        let link = crate::privsep::cachelink::CacheLink::start(
            crate::privsep::cache_socket(&opts.socket),
            crate::privsep::gateway_socket(&opts.socket),
        )
        .await
        .context("reaching the machine's cache process")?;
        svc.attach_peers(link);
    }
    if svc.config().peers.enabled && !system {
        let peers =
            crate::peers::Peers::start(&svc.config().peers, &opts.state_dir, svc.shared_store())
                .await
                .context("peer caching ([peers] in ferryd.toml)")?;
        svc.attach_peers(peers);
    }
    // The metrics endpoint: the per-user daemon's own (a worker of the system-wide daemon
    // has none: the broker serves the machine's, asking each worker, privsep/).
    let metrics_listen = if system {
        &crate::config::MetricsListen::Off
    } else {
        &svc.config().metrics.listen
    };
    let metrics = match bind_metrics(metrics_listen)? {
        Some(l) => {
            let stop = svc.clone();
            let shutdown = async move { stop.shutting_down().await };
            let source: crate::metrics::SharedSource = svc.clone();
            Some(tokio::spawn(crate::metrics::serve(source, l, shutdown)))
        }
        None => None,
    };
    // Where connections come from: the socket, or the broker.
    let (incoming, broker) = match (listener, link) {
        (Some(l), _) => {
            l.set_nonblocking(true)?;
            (crate::rpc::listen(UnixListener::from_std(l)?), None)
        }
        (None, Some(link)) => {
            let (broker, incoming) = crate::privsep::worker::BrokerLink::start(link, svc.clone())?;
            svc.attach_machine(broker.clone());
            tokio::spawn(
                broker
                    .clone()
                    .keep_broker_told(svc.clone(), svc.config().system.worker_idle_timeout),
            );
            (incoming, Some(broker))
        }
        (None, None) => unreachable!("a daemon has a socket or a broker"),
    };
    tracing::info!(
        socket = %opts.socket.display(),
        state = %opts.state_dir.display(),
        mode = if system { "worker of the system-wide daemon" } else { "user" },
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
    // The network's cost: NetworkManager says whether it is metered, ModemManager
    // whether it roams; a change of either re-reads the state and applies it.
    let cost_changed = |svc: std::sync::Arc<Service>| {
        move || {
            let svc = svc.clone();
            tokio::spawn(async move { svc.cost_changed().await });
        }
    };
    let cost = tokio::spawn(crate::costwatch::watch(
        svc.network_cost(),
        cost_changed(svc.clone()),
    ));
    let roaming = tokio::spawn(crate::costwatch::watch_roaming(
        svc.network_cost(),
        cost_changed(svc.clone()),
    ));
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
        let terminated = termination();
        async move {
            tokio::select! {
                _ = terminated => svc.request_shutdown(),
                _ = svc.shutting_down() => {}
            }
        }
    };
    let server = tokio::spawn(crate::rpc::serve(
        svc.clone(),
        incoming,
        broker
            .clone()
            .map(|b| b as std::sync::Arc<dyn crate::rpc::Broker>),
        opts.socket.clone(),
        opts.state_dir.clone(),
        {
            let svc = svc.clone();
            async move { svc.shutting_down().await }
        },
    ));
    // The socket answers (connections queue until the server takes them): tell systemd,
    // or the broker, which hands over the connections waiting for this worker.
    match &broker {
        Some(b) => b.ready(),
        None => {
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("serving its user"),
            ]);
        }
    }
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
    roaming.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    if let crate::config::MetricsListen::Unix(path) = &svc.config().metrics.listen {
        if !system {
            let _ = fs::remove_file(path);
        }
    }
    // The store is flushed before the socket goes, so a client that sees the socket gone
    // (`ferry daemon stop`) can start a new daemon at once.
    svc.close();
    if owns_socket {
        let _ = fs::remove_file(&opts.socket);
    }
    tracing::info!("ferryd stopped");
    Ok(())
}
