//! Privilege separation of the system-wide daemon (`ferryd --system`), as OpenSSH's: the
//! process that holds privilege does almost nothing, and every user's work runs in a
//! process of that user.
//!
//! - The **broker** (`broker.rs`, root, a handful of capabilities) accepts on the
//!   machine's socket, reads who connected, and hands the connection to that user's
//!   worker (`SCM_RIGHTS`), starting it when none runs. It answers what only the machine
//!   can: administrators' reach into other users' workers, the machine's job count and
//!   transfer slots, stopping.
//! - A **worker** per user (`worker.rs` here; the rest is the per-user daemon's code) runs
//!   as that user, with no capability, `no_new_privs` and its own descriptor limit, its
//!   store in `STATE/users/UID/`. Its transfers, files, handlers and notify commands are
//!   the user's, checked by the kernel as the user's.
//! - The **cache process** (`cache.rs`, as the system user `_ferry`) holds the fleet's
//!   identity, the peer cache and the peer port; workers reach it on a local socket
//!   (`cache_protocol.rs`; files and shared downloads go over as descriptors, never
//!   paths) and fetch from peers through its gateway (`gateway.rs`). `cachelink.rs` is a
//!   worker's side, `cache_supervisor.rs` the broker's.
//! - `spawn.rs` starts a process as an account with nothing of root left; `ipc.rs` frames
//!   the control links (messages with descriptors); `protocol.rs` says what goes on them;
//!   `migrate.rs` moves the single store of earlier versions into one store per user.
//!
//! The top of the system-wide daemon, like `daemon.rs` for the per-user one: it may use
//! every module, but the broker itself uses only the configuration, the accounts and the
//! peer-credential reader (it opens no user path, makes no network request and reads no
//! job).

pub mod broker;
pub mod cache;
pub mod cache_protocol;
pub mod cache_supervisor;
pub mod cachelink;
pub mod gateway;
pub mod ipc;
pub mod migrate;
pub mod protocol;
pub mod spawn;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The cache process's local socket, beside the machine's socket.
pub fn cache_socket(socket: &Path) -> PathBuf {
    socket.with_file_name("ferryd-cache.sock")
}

/// The cache process's gateway to the peers, beside the machine's socket.
pub fn gateway_socket(socket: &Path) -> PathBuf {
    socket.with_file_name("ferryd-peers.sock")
}

use anyhow::Context;
use futures::StreamExt;

pub use broker::Options;

/// Runs the broker until SIGTERM, SIGINT or root's `Shutdown`.
pub async fn run_broker(
    opts: Options,
    listener: std::os::unix::net::UnixListener,
    cache: Option<(cache_supervisor::CacheSetup, crate::owner::Account)>,
) -> anyhow::Result<()> {
    let socket = opts.socket.clone();
    let drain = opts.config.drain_timeout;
    let cache_task = cache.map(|(setup, account)| {
        let cache_dir = opts.state_dir.join("cache");
        let program = opts.program.try_clone();
        let config_path = opts.config_path.clone();
        (setup, account, cache_dir, program, config_path)
    });
    // The metrics endpoint, bound before the broker drops capabilities (where it was given
    // CAP_NET_BIND_SERVICE, a port below 1024 works; the packaged unit gives none).
    let metrics_listener = crate::daemon::bind_metrics(&opts.config.metrics.listen)?;
    let metrics_socket = match &opts.config.metrics.listen {
        crate::config::MetricsListen::Unix(p) => Some(p.clone()),
        _ => None,
    };
    let keep: Vec<u32> = broker::KEPT_CAPABILITIES.iter().map(|(c, _)| *c).collect();
    spawn::keep_only_capabilities(&keep)
        .context("dropping the capabilities the broker does not need (it must start as root)")?;
    tracing::info!(
        capabilities = ?broker::KEPT_CAPABILITIES.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        "broker: kept only these capabilities"
    );
    let broker = broker::Broker::new(opts);
    let cache = match cache_task {
        Some((setup, account, dir, program, config_path)) => {
            Some(tokio::spawn(cache_supervisor::supervise(
                setup,
                account,
                program?,
                dir,
                config_path,
                broker.stopping(),
            )))
        }
        None => None,
    };
    broker.start_known();
    let metrics = metrics_listener.map(|l| {
        let source: crate::metrics::SharedSource = Arc::new(MachineMetrics(broker.clone()));
        let stop = broker.stopping();
        tokio::spawn(crate::metrics::serve(source, l, async move {
            stop.cancelled().await
        }))
    });
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let mut incoming = Box::pin(crate::rpc::accept_connections(listener));
    let terminated = crate::daemon::termination();
    tokio::pin!(terminated);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving every user, each in a worker of their own"),
    ]);
    tracing::info!(socket = %socket.display(), "ferryd ready (system-wide broker)");
    let stop = broker.stopping();
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period / 2).await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
    });
    loop {
        tokio::select! {
            conn = incoming.next() => match conn {
                Some(Ok(stream)) => match stream.into_std() {
                    Ok(s) => broker.accepted(s),
                    Err(e) => tracing::warn!("a connection could not be handed over: {e}"),
                },
                Some(Err(e)) => tracing::debug!("accept: {e}"),
                None => break,
            },
            _ = &mut terminated => break,
            _ = stop.cancelled() => break,
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    drop(incoming);
    broker.shutdown(drain).await;
    if let Some(c) = cache {
        let _ = tokio::time::timeout(drain, c).await;
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(m) = metrics {
        m.abort();
    }
    if let Some(p) = metrics_socket {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("ferryd stopped");
    Ok(())
}

/// The machine's metrics: the broker adds up its workers' numbers.
struct MachineMetrics(Arc<broker::Broker>);

#[async_trait::async_trait]
impl crate::metrics::Source for MachineMetrics {
    async fn snapshot(&self) -> crate::model::MetricsSnapshot {
        self.0.metrics().await
    }
}
