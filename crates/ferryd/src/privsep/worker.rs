//! A worker's side of its control link to the broker: the client connections the broker
//! hands over (they become the gRPC server's incoming connections), the broker's answers,
//! the machine's transfer slots, and when to leave. [`BrokerLink`] implements the ports
//! the layers below own for the machine: `rpc::Broker` (an administrator's calls to other
//! users' workers, stopping the machine's daemon) and `service::Machine` (the machine's
//! job count).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::ipc;
use super::protocol::{Call, FromWorker, Refusal, RefusalKind, ToWorker};
use crate::model::Caller;
use crate::rpc::{BoxStream, PeerStream};
use crate::service::{Service, ServiceError};

type Answer = (Result<Vec<u32>, Refusal>, Vec<OwnedFd>);

/// This worker's link to the broker.
pub struct BrokerLink {
    mailbox: mpsc::UnboundedSender<FromWorker>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_request: AtomicU64,
    /// Client connections open now.
    open: AtomicUsize,
    /// The unfinished jobs last reported (`u64::MAX`: none yet).
    last_unfinished: AtomicU64,
}

/// The control link the broker gave this process (`FERRY_BROKER_FD`, descriptor 3).
pub fn inherited_link() -> anyhow::Result<std::os::unix::net::UnixStream> {
    let fd: i32 = std::env::var("FERRY_BROKER_FD")
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "a worker is started by the system-wide ferryd (`ferryd --system`), which \
                 passes it a control link (FERRY_BROKER_FD); it does not run on its own"
            )
        })?;
    // SAFETY: fstat on a descriptor number only reads its metadata into `st`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        anyhow::bail!("FERRY_BROKER_FD={fd} is not a socket the broker passed");
    }
    // SAFETY: the broker passed this descriptor for this purpose; nothing else owns it.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // Close-on-exec from now on: handlers and notify commands must not inherit it.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(stream.as_raw_fd(), libc::F_GETFD);
        libc::fcntl(stream.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC);
    }
    std::env::remove_var("FERRY_BROKER_FD");
    Ok(stream)
}

impl BrokerLink {
    /// Starts the link on `stream`: returns it and the client connections the broker
    /// hands over (for the gRPC server). `svc` hears the broker's slots and stop.
    pub fn start(
        stream: std::os::unix::net::UnixStream,
        svc: Arc<Service>,
    ) -> anyhow::Result<(Arc<BrokerLink>, BoxStream<PeerStream>)> {
        let (tx, rx) = ipc::link(stream)?;
        let (mail_tx, mut mail_rx) = mpsc::unbounded_channel::<FromWorker>();
        tokio::spawn(async move {
            while let Some(msg) = mail_rx.recv().await {
                if tx.send(&msg, &[]).await.is_err() {
                    return;
                }
            }
        });
        let link = Arc::new(BrokerLink {
            mailbox: mail_tx,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            last_unfinished: AtomicU64::new(u64::MAX),
        });
        let (conn_tx, conn_rx) = mpsc::channel(64);
        tokio::spawn(link.clone().read(rx, conn_tx, svc));
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        Ok((link, Box::pin(incoming)))
    }

    fn send(&self, msg: FromWorker) {
        let _ = self.mailbox.send(msg);
    }

    /// Tells the broker the store is open and connections may come.
    pub fn ready(&self) {
        self.send(FromWorker::Ready);
    }

    /// Reads the broker's messages until the link ends (the broker stopped or died: this
    /// worker stops too, as on SIGTERM).
    async fn read(
        self: Arc<Self>,
        mut rx: ipc::Receiver,
        conns: mpsc::Sender<Result<PeerStream, Status>>,
        svc: Arc<Service>,
    ) {
        loop {
            let (msg, mut fds) = match rx.recv::<ToWorker>().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    tracing::info!("the broker closed the control link: stopping");
                    break;
                }
                Err(e) => {
                    tracing::warn!("the control link broke ({e}): stopping");
                    break;
                }
            };
            match msg {
                ToWorker::Connection { id, admin } => {
                    let Some(fd) = fds.pop() else { continue };
                    let std = std::os::unix::net::UnixStream::from(fd);
                    let stream = match std
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::UnixStream::from_std(std))
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!("a connection from the broker could not be used: {e}");
                            self.send(FromWorker::Closed { connection: id });
                            continue;
                        }
                    };
                    self.open.fetch_add(1, Ordering::SeqCst);
                    let link = self.clone();
                    let peer = PeerStream::from_broker(
                        stream,
                        id,
                        admin,
                        Box::new(move |id| {
                            link.open.fetch_sub(1, Ordering::SeqCst);
                            link.send(FromWorker::Closed { connection: id });
                        }),
                    );
                    if conns.send(Ok(peer)).await.is_err() {
                        break;
                    }
                }
                ToWorker::Answer { request, result } => {
                    if let Some(tx) = self.pending.lock().remove(&request) {
                        let _ = tx.send((result, fds));
                    }
                }
                ToWorker::Slots { granted } => svc.set_machine_slots(granted),
                ToWorker::Metrics { round } => {
                    let (link, svc) = (self.clone(), svc.clone());
                    tokio::spawn(async move {
                        let snapshot = svc.metrics_snapshot().await;
                        link.send(FromWorker::Metrics { round, snapshot });
                    });
                }
                ToWorker::Leave(true) => {
                    tracing::info!(
                        "idle: leaving (the user's next connection starts a worker again)"
                    );
                    break;
                }
                ToWorker::Leave(false) => {}
                ToWorker::Stop => {
                    tracing::info!("the broker stops: stopping");
                    break;
                }
            }
        }
        svc.request_shutdown();
        // Answers that will never come.
        self.pending.lock().clear();
    }

    /// Asks the broker; its answer (and descriptors).
    async fn request(&self, call: Call) -> Result<Answer, Status> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(request, tx);
        self.send(FromWorker::Request { request, call });
        rx.await
            .map_err(|_| Status::unavailable("the system-wide ferryd is stopping: try again"))
    }

    /// Keeps the broker told of what this worker wants and has: the transfer slots it
    /// would use, its unfinished jobs, and — once it has had no client and nothing to do
    /// for `idle_timeout` — that it may leave. Runs until the service stops.
    pub async fn keep_broker_told(self: Arc<Self>, svc: Arc<Service>, idle_timeout: Duration) {
        let mut wanted = svc.slots_wanted();
        let mut idle_since: Option<tokio::time::Instant> = None;
        let mut asked = false;
        let tick = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let slots = *wanted.borrow_and_update();
            self.send(FromWorker::WantSlots { slots });
            tokio::select! {
                _ = wanted.changed() => continue,
                _ = tokio::time::sleep(tick) => {}
                _ = svc.shutting_down() => return,
            }
            svc.report_unfinished();
            let idle = self.open.load(Ordering::SeqCst) == 0 && svc.is_idle();
            if !idle {
                idle_since = None;
                asked = false;
                continue;
            }
            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
            if !asked && since.elapsed() >= idle_timeout {
                // The broker says yes only if it handed over no connection meanwhile.
                self.send(FromWorker::MayLeave);
                asked = true;
            } else if asked && since.elapsed() >= idle_timeout * 2 {
                // The broker said no (a connection came and went): ask again later.
                idle_since = None;
                asked = false;
            }
        }
    }
}

fn status(r: Refusal) -> Status {
    match r.kind {
        RefusalKind::PermissionDenied => Status::permission_denied(r.message),
        RefusalKind::ResourceExhausted => Status::resource_exhausted(r.message),
        RefusalKind::Unavailable => Status::unavailable(r.message),
    }
}

#[tonic::async_trait]
impl crate::rpc::Broker for BrokerLink {
    async fn admin_connect(
        &self,
        connection: u64,
    ) -> Result<Vec<(u32, tokio::net::UnixStream)>, Status> {
        let (result, fds) = self.request(Call::AdminConnect { connection }).await?;
        let uids = result.map_err(status)?;
        if uids.len() != fds.len() {
            return Err(Status::internal(
                "the broker's answer did not match its connections",
            ));
        }
        uids.into_iter()
            .zip(fds)
            .map(|(uid, fd)| {
                let std = std::os::unix::net::UnixStream::from(fd);
                std.set_nonblocking(true)?;
                Ok((uid, tokio::net::UnixStream::from_std(std)?))
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Status::internal(format!("a connection from the broker: {e}")))
    }

    async fn shutdown(&self, connection: u64) -> Result<(), Status> {
        let (result, _) = self.request(Call::Shutdown { connection }).await?;
        result.map(|_| ()).map_err(status)
    }
}

#[async_trait::async_trait]
impl crate::service::Machine for BrokerLink {
    async fn reserve_jobs(
        &self,
        caller: &Caller,
        jobs: u32,
        unfinished_now: u64,
    ) -> Result<(), ServiceError> {
        self.unfinished(unfinished_now);
        let connection = caller.connection.unwrap_or(0);
        let answer = self.request(Call::Reserve { connection, jobs }).await;
        // The broker counted the reservation: the next count is sent whatever it is.
        self.last_unfinished.store(u64::MAX, Ordering::Relaxed);
        let (result, _) = answer.map_err(|s| ServiceError::Unavailable(s.message().to_string()))?;
        result.map(|_| ()).map_err(|r| match r.kind {
            RefusalKind::ResourceExhausted => ServiceError::ResourceExhausted(r.message),
            RefusalKind::PermissionDenied => ServiceError::PermissionDenied(r.message),
            RefusalKind::Unavailable => ServiceError::Unavailable(r.message),
        })
    }

    fn unfinished(&self, jobs: u64) {
        if self.last_unfinished.swap(jobs, Ordering::Relaxed) != jobs {
            self.send(FromWorker::Unfinished { jobs });
        }
    }
}
