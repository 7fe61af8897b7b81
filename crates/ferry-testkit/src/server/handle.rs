//! [`TestServer`], the handle a test holds: starting the server thread,
//! stopping it on drop, and the setters that shape what it serves (files,
//! modes, faults, upload replies, stall releases). What it received is read
//! through [`record`](super::record).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::accept::serve;
use super::state::{key_of, Shared, State};
use super::tls::{self, TlsMaterial};
use super::{Fault, Mode};

/// A local HTTP/1.1 server on `127.0.0.1` that serves in-memory files and can
/// misbehave on request. It stops when dropped (closing every connection).
///
/// * `GET`/`HEAD`: the file added with [`add_file`](Self::add_file) (`404` if
///   none), with `Accept-Ranges`, a strong `ETag`, `Last-Modified`, single
///   `Range` (`bytes=N-`, `bytes=N-M`, `bytes=-N`; `206` or `416`) and
///   `If-Range` support, shaped by the path's [`Mode`].
/// * `PUT`: the body (`Content-Length` or chunked, `Expect: 100-continue`
///   honoured) is kept for [`uploaded`](Self::uploaded); answers `201` with
///   no body, or what [`set_upload_reply`](Self::set_upload_reply) set.
/// * `POST`: the body is read and dropped; answers `200` with `ok\n`, or
///   what [`set_upload_reply`](Self::set_upload_reply) set.
/// * `PATCH`: the body is read and dropped; answers `200`.
/// * Other methods: `405`.
/// * Under a prefix given to [`enable_tus`](Self::enable_tus): the tus 1.0
///   core protocol and its creation extension (see there).
///
/// Connections are persistent unless the client sends `Connection: close`
/// (or speaks HTTP/1.0) or the response is close-delimited or cut.
/// A queued [`Fault`] applies to the next request of its path whatever the
/// method (except that faults queued on a tus prefix wait for the next tus
/// `PATCH` under it; see [`enable_tus`](Self::enable_tus)).
pub struct TestServer {
    addr: SocketAddr,
    base_url: String,
    pub(super) shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Binds `127.0.0.1:0`, spawns the server thread and returns once the
    /// server is listening.
    pub fn start() -> TestServer {
        Self::launch(None)
    }

    /// Like [`start`](Self::start), but speaking HTTPS (TLS 1.2 or 1.3, ALPN
    /// `http/1.1`) with a certificate for `localhost` and `127.0.0.1` signed by
    /// a CA generated for this server alone; [`TlsMaterial`] tells where that
    /// CA's certificate is. Everything else behaves as over plain HTTP.
    /// [`base_url`](Self::base_url) is then `https://localhost:PORT` (the
    /// server still listens on `127.0.0.1` only).
    pub fn start_tls() -> (TestServer, TlsMaterial) {
        let (material, acceptor) = tls::generate(false);
        (Self::launch(Some(acceptor)), material)
    }

    /// Like [`start_tls`](Self::start_tls), but the handshake requires a client
    /// certificate signed by the server's CA (mutual TLS): a client without one
    /// is refused with a TLS alert. [`TlsMaterial::client_cert_pem_path`] and
    /// [`TlsMaterial::client_key_pem_path`] are one it accepts.
    pub fn start_tls_requiring_client_cert() -> (TestServer, TlsMaterial) {
        let (material, acceptor) = tls::generate(true);
        (Self::launch(Some(acceptor)), material)
    }

    fn launch(tls: Option<TlsAcceptor>) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set test server listener non-blocking");
        let addr = listener.local_addr().expect("test server local address");
        let base_url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let (release, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            base_url: base_url.clone(),
            release,
        });
        let (stop, stop_rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || serve(listener, tls, thread_shared, stop_rx))
            .expect("spawn test server thread");
        TestServer {
            addr,
            base_url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a server
    /// started with [`start_tls`](Self::start_tls).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// [`base_url`](Self::base_url) followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// Serves `data` at `path` for `GET` and `HEAD`, replacing any previous
    /// content; the path gets a new `ETag` and `Last-Modified`.
    pub fn add_file(&self, path: &str, data: Vec<u8>) {
        self.shared.lock().set_file(key_of(path), data);
    }

    /// The current `ETag` of `path` (with its quotes), if a file is served there.
    pub fn etag(&self, path: &str) -> Option<String> {
        self.shared
            .lock()
            .files
            .get(&key_of(path))
            .map(|f| f.etag.clone())
    }

    /// Sets the persistent behaviour of `path` (default: [`Mode::default`]).
    pub fn set_mode(&self, path: &str, mode: Mode) {
        self.shared.lock().modes.insert(key_of(path), mode);
    }

    /// Queues a one-shot fault: it applies to the next request of `path` only.
    /// Several faults are applied to successive requests in FIFO order.
    pub fn push_fault(&self, path: &str, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(key_of(path))
            .or_default()
            .push_back(fault);
    }

    /// Drops the faults queued for `path` that no request has taken yet (a
    /// fault meant for a request the client never made would otherwise hit
    /// its next attempt).
    pub fn clear_faults(&self, path: &str) {
        self.shared.lock().faults.remove(&key_of(path));
    }

    /// From now on, a `PUT` or `POST` to `path` answers with `status` and
    /// `body` (`Content-Type: text/plain` when not empty) instead of the
    /// default (`201` with no body for `PUT`, `200` with `ok\n` for `POST`).
    /// The request body is still read first, and a `PUT` body is still kept
    /// for [`uploaded`](Self::uploaded) whatever the status. Queued faults
    /// take precedence.
    ///
    /// On a tus upload URL (prefix + id) or on a tus prefix given to
    /// [`enable_tus`](Self::enable_tus) (then for every upload under it), it
    /// instead replaces the `204` of the `PATCH` that completes an upload: that
    /// response gets this status and body (plus `Upload-Offset` and
    /// `Tus-Resumable`), which lets a test hand a reply body to the client.
    pub fn set_upload_reply(&self, path: &str, status: u16, body: Vec<u8>) {
        self.shared
            .lock()
            .upload_replies
            .insert(key_of(path), (status, body));
    }

    /// Wakes every connection currently held by [`Fault::Stall`] or
    /// [`Fault::StallAfter`] (including requests already recorded whose stall
    /// has not begun yet); they then carry on normally.
    pub fn release_stalls(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
