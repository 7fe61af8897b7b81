//! The connection to ferryd that every [`crate::Manager`] clone shares, and how it rides
//! out a daemon restart: calls that find the daemon gone wait for it to come back
//! (starting it again where autostart is allowed), with backoff, then carry on over a new
//! connection.
//!
//! One reconnection at a time: callers that saw the same broken connection wait for the
//! one attempt under way and then use its result (a generation counter tells a caller
//! whether the connection it saw was already replaced). Every attempt is announced on a
//! broadcast channel ([`ConnectionEvent`]), so a program can tell its user.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use ferry_proto::v1 as pb;
use ferry_proto::v1::{
    daemon_client::DaemonClient, jobs_client::JobsClient,
    notifications_client::NotificationsClient, peers_client::PeersClient,
    queries_client::QueriesClient,
};
use tokio::sync::broadcast;
use tonic::transport::Channel;

use crate::error::{gone_reason, is_gone, never_ran};
use crate::{connect, ConnectOptions, Error, Result};

/// Largest message either way (ferryd allows the same).
const MAX_MESSAGE: usize = 64 << 20;

/// The first pause between reconnection attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long a daemon that accepted the connection may take to answer `Status` before the
/// attempt counts as failed (a stopping daemon's socket may accept and never answer).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How many times one call is tried over new connections before it gives up (each try
/// already waited for the daemon to come back: this only bounds a daemon that keeps
/// dying).
const MAX_CALL_ATTEMPTS: usize = 5;

/// What happens to the connection, as [`crate::Manager::connection_events`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The daemon went away; the library is reconnecting. `reason` is a sentence.
    Lost {
        /// What happened.
        reason: String,
    },
    /// Connected again, to the daemon with process id `pid`; `started` when this process
    /// started it (autostart).
    Restored {
        /// The new daemon's process id.
        pid: u32,
        /// This process started it.
        started: bool,
    },
    /// The daemon did not come back in time: calls fail with [`Error::DaemonGone`].
    GaveUp {
        /// Why, as a sentence.
        reason: String,
    },
}

/// The stubs of ferryd's five services, sharing one connection.
#[derive(Clone)]
pub(crate) struct Rpc {
    pub(crate) jobs: JobsClient<Channel>,
    pub(crate) notifications: NotificationsClient<Channel>,
    pub(crate) queries: QueriesClient<Channel>,
    pub(crate) daemon: DaemonClient<Channel>,
    pub(crate) peers: PeersClient<Channel>,
    /// Which connection of the [`Conn`] these stubs use (0 first, then one more per
    /// reconnection).
    pub(crate) generation: u64,
}

impl Rpc {
    fn new(channel: Channel, generation: u64) -> Rpc {
        Rpc {
            generation,
            jobs: JobsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            notifications: NotificationsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            queries: QueriesClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            daemon: DaemonClient::new(channel.clone()),
            peers: PeersClient::new(channel),
        }
    }
}

/// Whether a call may be sent again after its connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reading, or a change that gives the same result when made twice (resume, suspend,
    /// set properties, register an object): always sent again.
    Always,
    /// A change that must not happen twice (create, add files, cancel, complete): sent
    /// again only when it certainly never ran; otherwise the caller hears that it may or
    /// may not have happened.
    IfNeverRan,
}

/// The shared connection.
pub(crate) struct Conn {
    options: ConnectOptions,
    rpc: RwLock<Rpc>,
    generation: AtomicU64,
    reconnecting: tokio::sync::Mutex<()>,
    events: broadcast::Sender<ConnectionEvent>,
}

impl Conn {
    /// Connects as `options` say, starting ferryd if asked and needed.
    pub(crate) async fn open(options: ConnectOptions) -> Result<Conn> {
        let channel = match connect::channel(&options.socket).await {
            Ok(c) => c,
            Err(Error::Unavailable { .. }) if options.autostart => {
                // A new command that needs the daemon starts it, stopped on purpose or not.
                let _ = std::fs::remove_file(ferry_common::paths::stopped_mark(&options.socket));
                connect::start_daemon(&options.socket, options.start_timeout).await?;
                connect::channel(&options.socket).await?
            }
            Err(e) => return Err(e),
        };
        Ok(Conn {
            options,
            rpc: RwLock::new(Rpc::new(channel, 0)),
            generation: AtomicU64::new(0),
            reconnecting: tokio::sync::Mutex::new(()),
            events: broadcast::channel(16).0,
        })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.options.socket
    }

    /// Whether calls wait for a daemon that went away.
    pub(crate) fn reconnects(&self) -> bool {
        self.options.reconnect_timeout.is_some()
    }

    /// The stubs of the current connection.
    pub(crate) fn rpc(&self) -> Rpc {
        self.rpc
            .read()
            .expect("the stubs lock is never poisoned")
            .clone()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// The error of a call that failed with `status`.
    pub(crate) fn error(&self, status: tonic::Status) -> Error {
        Error::from_status(status, self.socket())
    }

    /// Runs `call` on the current connection. When the daemon went away, waits for it to
    /// come back ([`Conn::reconnect`]) and runs `call` again if `retry` allows; a refusal
    /// by the daemon is returned as it is.
    pub(crate) async fn call<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T>
    where
        F: FnMut(Rpc) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempts = 0;
        loop {
            let rpc = self.rpc();
            let generation = rpc.generation;
            let status = match call(rpc).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(s) => s,
            };
            attempts += 1;
            if !is_gone(&status) {
                return Err(Error::Status(status));
            }
            if retry == Retry::IfNeverRan && !never_ran(&status) {
                return Err(Error::DaemonGone {
                    socket: self.socket().to_owned(),
                    reason: format!(
                        "{} while the call was under way, so it may or may not have been \
                         carried out: look at the job (`ferry info`) before trying again",
                        gone_reason(&status)
                    ),
                });
            }
            if !self.reconnects() || attempts >= MAX_CALL_ATTEMPTS {
                return Err(self.error(status));
            }
            self.reconnect(generation, gone_reason(&status)).await?;
        }
    }

    /// Waits until a daemon answers again on the socket, starting one where autostart is
    /// allowed, with backoff, for at most the reconnect timeout; then every later call
    /// uses the new connection. `seen` is the generation of the connection the caller
    /// found broken: if it was replaced meanwhile, this returns at once.
    pub(crate) async fn reconnect(&self, seen: u64, reason: String) -> Result<()> {
        let _one_at_a_time = self.reconnecting.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        let gone = |reason: String| Error::DaemonGone {
            socket: self.socket().to_owned(),
            reason,
        };
        let Some(window) = self.options.reconnect_timeout else {
            return Err(gone(reason));
        };
        let _ = self.events.send(ConnectionEvent::Lost {
            reason: reason.clone(),
        });
        let deadline = Instant::now() + window;
        let mut backoff = FIRST_BACKOFF;
        let mut started = false;
        loop {
            let next = self.generation.load(Ordering::SeqCst) + 1;
            match self.try_connect(next).await {
                Ok((rpc, pid)) => {
                    self.generation.store(next, Ordering::SeqCst);
                    *self.rpc.write().expect("the stubs lock is never poisoned") = rpc;
                    let _ = self.events.send(ConnectionEvent::Restored { pid, started });
                    return Ok(());
                }
                Err(Refused::NobodyListens)
                    if self.options.autostart
                        && !ferry_common::paths::stopped_mark(self.socket()).exists() =>
                {
                    // A daemon that fails to start (another one still holds the lock while
                    // it stops) is tried again after the backoff.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if connect::start_daemon(self.socket(), left.min(self.options.start_timeout))
                        .await
                        .is_ok()
                    {
                        started = true;
                        continue;
                    }
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                let why = format!(
                    "{reason}, and it did not come back within {} s{}",
                    window.as_secs(),
                    if self.options.autostart {
                        ""
                    } else {
                        " (start it with `ferry daemon start`)"
                    }
                );
                let _ = self.events.send(ConnectionEvent::GaveUp {
                    reason: why.clone(),
                });
                return Err(gone(why));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A new connection (of generation `generation`) to a daemon that answers `Status`,
    /// and that daemon's pid.
    async fn try_connect(&self, generation: u64) -> Result<(Rpc, u32), Refused> {
        let channel = connect::channel(self.socket())
            .await
            .map_err(|_| Refused::NobodyListens)?;
        let rpc = Rpc::new(channel, generation);
        let mut daemon = rpc.daemon.clone();
        let probe = daemon.status(pb::StatusRequest {});
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(status)) => Ok((rpc, status.into_inner().pid)),
            _ => Err(Refused::NoAnswer),
        }
    }
}

/// Why a reconnection attempt failed.
enum Refused {
    /// Nothing accepts connections on the socket.
    NobodyListens,
    /// Something accepted but did not answer (a daemon stopping, or not ready).
    NoAnswer,
}
