//! A local HTTP/1.1 server for tests that can misbehave on purpose.
//!
//! The server is hand-written on top of a tokio [`TcpListener`] and
//! [`httparse`] so that it can lie: cut connections, announce wrong lengths,
//! stall, change content between requests, and so on. It runs on its own
//! thread with its own single-threaded tokio runtime, so it can be used from
//! synchronous tests and from async tests alike.
//!
//! Paths are keyed without their query string: a request for `/a?x=1` is
//! served from, recorded under and faulted like `/a` (the recorded
//! [`RecordedRequest::path`] keeps the full request target).
//!
//! The same server can also speak the [tus 1.0] resumable upload protocol
//! under a path prefix ([`TestServer::enable_tus`]) and can be served over
//! HTTPS with a throw-away CA ([`TestServer::start_tls`]).
//!
//! [tus 1.0]: https://tus.io/protocols/resumable-upload

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

mod tls;
mod tus;

pub use tls::TlsMaterial;
use tus::TusUpload;

/// Size of the pieces the body is written in when not throttled.
const PIECE: usize = 64 * 1024;
/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Persistent behaviour of one path (see [`TestServer::set_mode`]).
///
/// The default value is normal, well-behaved HTTP/1.1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mode {
    /// Always answer `200` with the whole body even if a `Range` was given.
    /// `Accept-Ranges: bytes` is still advertised (the server lies).
    pub ignore_range: bool,
    /// Send the body with neither `Content-Length` nor chunking: the end of the
    /// body is the end of the connection (`Connection: close`). No
    /// `Accept-Ranges`, `ETag` or `Last-Modified` is sent and `Range` is ignored.
    pub no_content_length: bool,
    /// Send `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// Pace the body so that its average rate is about this many bytes per
    /// second (small pieces with sleeps in between).
    pub throttle_bytes_per_sec: Option<u64>,
    /// Omit `ETag` and `Last-Modified`; `If-Range` then never matches.
    pub no_validators: bool,
    /// Serve the file compressed, with `Content-Encoding: gzip`, whatever the
    /// request's `Accept-Encoding` says (a server that compresses anyway).
    /// The body is [`gzip`] of the file's content; `Content-Length`, ranges
    /// and `Content-Range` count bytes of that compressed body (as RFC 9110
    /// says for a content coding), and the `ETag` is that of the file.
    pub gzip: bool,
}

/// A one-shot misbehaviour for the next request of a path
/// (see [`TestServer::push_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Send the normal headers (with the full `Content-Length`), then close the
    /// connection after this many bytes of the response body (of the `206`
    /// body for a range request). For an upload (a request with a body), close
    /// the connection after receiving this many bytes of the request body.
    CutAfter(u64),
    /// Answer with this status and a short text body (e.g. 500, 503, 404).
    Status(u16),
    /// Answer with this status and `Retry-After: <secs>` (e.g. 429 or 503).
    StatusRetryAfter(u16, u64),
    /// Answer `302 Found` with this `Location` (absolute URL or path).
    Redirect(String),
    /// Answer with this redirect status (301, 302, 303, 307, 308) and `Location`.
    RedirectWith(u16, String),
    /// Accept the request (and read its body, if any) but do not answer until
    /// [`TestServer::release_stalls`] is called or the client disconnects.
    /// Once released, the request is answered normally.
    Stall,
    /// Send the headers and this many body bytes, then hold the connection open
    /// sending nothing until [`TestServer::release_stalls`] is called or the
    /// client disconnects; once released, the rest of the body is sent. For an
    /// upload, stop reading the request body after this many bytes instead
    /// (until released; a client disconnect is not noticed then).
    StallAfter(u64),
    /// Before answering, replace the content of the path (new `ETag`, new
    /// `Last-Modified`), then answer normally.
    ChangeContent(Vec<u8>),
    /// Answer normally, plus one response header `X-Padding` whose value is
    /// this many bytes (`a`s): e.g. `1 << 20` for a head of over 1 MiB,
    /// larger than HTTP clients accept.
    HugeHeader(usize),
    /// Answer a `GET` of a served file with `206 Partial Content` carrying the
    /// file's bytes from this offset to its end, with a `Content-Range` and
    /// `Content-Length` that truthfully describe those bytes, whatever
    /// `Range` (or none) and `If-Range` the request had: a consistent-looking
    /// answer to another question. An offset past the end answers `416`.
    WrongContentRange(u64),
    /// Answer as usual (status, `Content-Range`, validators) but with
    /// `Transfer-Encoding: chunked` instead of `Content-Length`, and after the
    /// real bytes keep sending filler bytes (`0xEE`) for ever, until the
    /// client goes away: a body that never ends.
    EndlessBody,
    /// Send the normal headers (with the true `Content-Length`), then the
    /// body followed by this many filler bytes (`0xEE`) it does not count,
    /// then close the connection: a `Content-Length` shorter than the body.
    ExtraBytes(u64),
}

/// One request received by the [`TestServer`], recorded when its head was read
/// (before its body, and before it is answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, including any query string.
    pub path: String,
    /// All headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// `N` from a `Range: bytes=N-` or `Range: bytes=N-M` header.
    pub range_start: Option<u64>,
}

impl RecordedRequest {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A served file.
#[derive(Clone)]
struct FileEntry {
    data: Arc<Vec<u8>>,
    etag: String,
    last_modified: SystemTime,
}

#[derive(Default)]
struct State {
    files: HashMap<String, FileEntry>,
    modes: HashMap<String, Mode>,
    faults: HashMap<String, VecDeque<Fault>>,
    requests: HashMap<String, Vec<RecordedRequest>>,
    uploads: HashMap<String, Vec<u8>>,
    /// Status and body answering a `PUT`/`POST` (or completing a tus upload).
    upload_replies: HashMap<String, (u16, Vec<u8>)>,
    /// Enabled tus prefixes, each ending with `/`.
    tus_prefixes: Vec<String>,
    /// tus uploads in order of creation.
    tus_uploads: Vec<TusUpload>,
    /// Number of tus uploads created so far (for their ids).
    tus_created: u64,
    /// Bumped on every content change so that every change gets a new ETag.
    version: u64,
}

impl State {
    fn set_file(&mut self, key: String, data: Vec<u8>) {
        self.version += 1;
        let mut hasher = Sha256::new();
        hasher.update(&data);
        hasher.update(self.version.to_le_bytes());
        let etag = format!("\"{}\"", &hex::encode(hasher.finalize())[..32]);
        // HTTP dates have a resolution of one second: make sure a change gets a
        // Last-Modified different from the previous one.
        let now = UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
        let last_modified = match self.files.get(&key) {
            Some(old) if old.last_modified >= now => old.last_modified + Duration::from_secs(1),
            _ => now,
        };
        self.files.insert(
            key,
            FileEntry {
                data: Arc::new(data),
                etag,
                last_modified,
            },
        );
    }
}

struct Shared {
    state: Mutex<State>,
    /// [`TestServer::base_url`], for absolute `Location`s.
    base_url: String,
    /// Generation counter bumped by [`TestServer::release_stalls`].
    release: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
    shared: Arc<Shared>,
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
        let (material, acceptor) = tls::generate();
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

    /// Every request received for `path`, in order of arrival.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .get(&key_of(path))
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests were received for `path`.
    pub fn request_count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .get(&key_of(path))
            .map_or(0, Vec::len)
    }

    /// The body of the last complete `PUT` to `path`, if any.
    pub fn uploaded(&self, path: &str) -> Option<Vec<u8>> {
        self.shared.lock().uploads.get(&key_of(path)).cloned()
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

/// SHA-256 of `data`, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `data` as a gzip member (RFC 1952), the body [`Mode::gzip`] serves.
///
/// The deflate stream uses stored (uncompressed) blocks only, so no
/// compression library is needed; any gzip reader decodes it (`gzip -d`).
/// The output is always the same for the same input (no name, mtime 0).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 65_535;
    let mut out = Vec::with_capacity(data.len() + data.len() / BLOCK * 5 + 32);
    // ID1 ID2, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=unix.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    let mut blocks = data.chunks(BLOCK).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE, reflected, as gzip uses).
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `len` pseudo-random bytes, always the same for the same `seed`
/// (xorshift64*; not for cryptography).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // splitmix64 of the seed, so that nearby seeds give unrelated streams and
    // a zero seed works.
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The key a path is stored under: the request target without scheme,
/// authority and query string.
fn key_of(target: &str) -> String {
    let mut path = target;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// Body of the server thread.
fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build test server runtime");
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("register test server listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = shared.clone();
                        match &tls {
                            None => {
                                tokio::spawn(handle_connection(shared, Box::new(stream)));
                            }
                            Some(acceptor) => {
                                let handshake = acceptor.accept(stream);
                                tokio::spawn(async move {
                                    if let Ok(stream) = handshake.await {
                                        handle_connection(shared, Box::new(stream)).await;
                                    }
                                });
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    });
    // Dropping the runtime drops every connection task, closing its socket.
    drop(rt);
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Minor HTTP version (0 for HTTP/1.0, 1 for HTTP/1.1).
    minor: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> io::Result<u64> {
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| bad("bad Content-Length")),
        }
    }

    fn has_body(&self) -> io::Result<bool> {
        Ok(self.chunked() || self.content_length()? > 0)
    }

    fn wants_close(&self) -> bool {
        if self.minor == 0 {
            !self.has_token("connection", "keep-alive")
        } else {
            self.has_token("connection", "close")
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// What to do with the connection after a response.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// How a body is to be sent.
struct BodyPlan {
    chunked: bool,
    throttle: Option<u64>,
    cut_after: Option<u64>,
    stall_after: Option<u64>,
    /// [`Fault::EndlessBody`]: filler after the body, for ever.
    endless: bool,
    /// [`Fault::ExtraBytes`]: this many filler bytes after the body, then close.
    extra: Option<u64>,
    /// [`Fault::WrongContentRange`]: answer `206` from this offset.
    wrong_range: Option<u64>,
}

/// The filler byte of [`Fault::EndlessBody`] and [`Fault::ExtraBytes`].
const FILLER: u8 = 0xEE;

/// A client connection: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    stream: Box<dyn Io>,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    shared: Arc<Shared>,
    /// Whether a `100 Continue` is owed before the request body is read.
    continue_owed: bool,
    /// [`Fault::HugeHeader`]: padding for the next response head.
    padding: usize,
}

async fn handle_connection(shared: Arc<Shared>, stream: Box<dyn Io>) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        shared,
        continue_owed: false,
        padding: 0,
    };
    while let Ok(Next::KeepAlive) = conn.serve_one().await {}
    let _ = conn.stream.shutdown().await;
}

impl Conn {
    /// Reads more bytes into the buffer (at most `max`); 0 means end of stream.
    async fn fill(&mut self, max: usize) -> io::Result<usize> {
        if std::mem::take(&mut self.continue_owed) {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let mut tmp = vec![0u8; max.clamp(1, PIECE)];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Makes sure at least `n` bytes are buffered, reading no more than needed.
    async fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Reads the next request head; `None` at a clean end of stream.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 96];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head {
                            method: req.method.unwrap_or("").to_string(),
                            target: req.path.unwrap_or("/").to_string(),
                            minor: req.version.unwrap_or(1),
                            headers: req
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.name.to_ascii_lowercase(),
                                        String::from_utf8_lossy(h.value).into_owned(),
                                    )
                                })
                                .collect(),
                        };
                        self.buf.drain(..len);
                        return Ok(Some(head));
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => return Err(bad("request head too large")),
                    Err(e) => return Err(bad(&e.to_string())),
                }
            }
            if self.fill(PIECE).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if self.fill(PIECE).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads the whole request body (`Content-Length` or chunked).
    async fn read_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked() {
            let mut body = Vec::new();
            loop {
                let line = self.read_line().await?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to an empty line.
                    while !self.read_line().await?.is_empty() {}
                    return Ok(body);
                }
                self.fill_to(size + 2).await?;
                body.extend_from_slice(&self.buf[..size]);
                if &self.buf[size..size + 2] != b"\r\n" {
                    return Err(bad("chunk not followed by CRLF"));
                }
                self.buf.drain(..size + 2);
            }
        } else {
            let len = usize::try_from(head.content_length()?).map_err(|_| bad("body too large"))?;
            self.fill_to(len).await?;
            Ok(self.buf.drain(..len).collect())
        }
    }

    /// Holds the connection until stalls are released (`true`) or the client
    /// goes away (`false`). `generation` is the release generation seen when the
    /// request was recorded.
    async fn hold(&mut self, generation: u64) -> bool {
        let mut rx = self.shared.release.subscribe();
        let mut tmp = [0u8; 4096];
        loop {
            tokio::select! {
                released = rx.wait_for(|g| *g != generation) => return released.is_ok(),
                read = self.stream.read(&mut tmp) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                },
            }
        }
    }

    async fn write_head(
        &mut self,
        status: u16,
        headers: &[(&str, String)],
        close: bool,
    ) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
        out.push_str(&format!(
            "Date: {}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        ));
        out.push_str("Server: ferry-testkit\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let padding = std::mem::take(&mut self.padding);
        if padding > 0 {
            out.push_str("X-Padding: ");
            out.extend(std::iter::repeat_n('a', padding));
            out.push_str("\r\n");
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        self.stream.write_all(out.as_bytes()).await
    }

    /// Sends a short, complete response.
    async fn simple(
        &mut self,
        head: &Head,
        status: u16,
        mut headers: Vec<(&str, String)>,
        body: &[u8],
        close: bool,
    ) -> io::Result<Next> {
        let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
        if !bodiless {
            headers.push(("Content-Length", body.len().to_string()));
            if !body.is_empty() {
                headers.push(("Content-Type", "text/plain".to_string()));
            }
        }
        self.write_head(status, &headers, close).await?;
        if !bodiless && head.method != "HEAD" {
            self.stream.write_all(body).await?;
        }
        self.stream.flush().await?;
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Sends `data` as a body according to `plan`, starting right after the head.
    async fn send_body(
        &mut self,
        data: &[u8],
        plan: &BodyPlan,
        generation: u64,
    ) -> io::Result<Next> {
        let total = data.len() as u64;
        let piece = match plan.throttle {
            Some(rate) => (rate / 20).clamp(1, PIECE as u64),
            None => PIECE as u64,
        };
        let mut sent = 0u64;
        let mut stall_after = plan.stall_after;
        let mut pace_start = Instant::now();
        let mut pace_base = 0u64;
        loop {
            if let Some(cut) = plan.cut_after.filter(|&c| c < total) {
                if sent >= cut {
                    self.stream.flush().await?;
                    return Ok(Next::Close);
                }
            }
            if let Some(stall) = stall_after {
                if sent >= stall.min(total) {
                    self.stream.flush().await?;
                    if !self.hold(generation).await {
                        return Ok(Next::Close);
                    }
                    stall_after = None;
                    pace_start = Instant::now();
                    pace_base = sent;
                }
            }
            if sent >= total {
                if plan.endless {
                    // Filler for ever: the write fails once the client goes away.
                    let filler = vec![FILLER; piece as usize];
                    if plan.chunked {
                        let mut framed = format!("{:x}\r\n", filler.len()).into_bytes();
                        framed.extend_from_slice(&filler);
                        framed.extend_from_slice(b"\r\n");
                        self.stream.write_all(&framed).await?;
                    } else {
                        self.stream.write_all(&filler).await?;
                    }
                    if let Some(rate) = plan.throttle.filter(|&r| r > 0) {
                        tokio::time::sleep(Duration::from_secs_f64(piece as f64 / rate as f64))
                            .await;
                    }
                    continue;
                }
                break;
            }
            let mut end = (sent + piece).min(total);
            for stop in [plan.cut_after, stall_after].into_iter().flatten() {
                if stop > sent {
                    end = end.min(stop);
                }
            }
            let bytes = &data[sent as usize..end as usize];
            if plan.chunked {
                let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
                framed.extend_from_slice(bytes);
                framed.extend_from_slice(b"\r\n");
                self.stream.write_all(&framed).await?;
            } else {
                self.stream.write_all(bytes).await?;
            }
            sent = end;
            if let Some(rate) = plan.throttle.filter(|&r| r > 0) {
                let due =
                    pace_start + Duration::from_secs_f64((sent - pace_base) as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if plan.chunked {
            self.stream.write_all(b"0\r\n\r\n").await?;
        }
        if let Some(extra) = plan.extra {
            let filler = vec![FILLER; usize::try_from(extra).unwrap_or(usize::MAX)];
            self.stream.write_all(&filler).await?;
            self.stream.flush().await?;
            return Ok(Next::Close);
        }
        self.stream.flush().await?;
        // A cut longer than the body still ends the connection.
        Ok(if plan.cut_after.is_some() {
            Next::Close
        } else {
            Next::KeepAlive
        })
    }

    /// Reads, records and answers one request.
    async fn serve_one(&mut self) -> io::Result<Next> {
        let Some(head) = self.read_head().await? else {
            return Ok(Next::Close);
        };
        let key = key_of(&head.target);
        let range = head.header("range").and_then(parse_range);
        let (fault, mode, generation, tus) = {
            let mut state = self.shared.lock();
            state
                .requests
                .entry(key.clone())
                .or_default()
                .push(RecordedRequest {
                    method: head.method.clone(),
                    path: head.target.clone(),
                    headers: head.headers.clone(),
                    range_start: range.as_ref().and_then(ByteRange::start),
                });
            let tus = state.tus_route(&key, &head.method);
            let fault = match &tus {
                Some(route) => route.pop_fault(&mut state, &key),
                None => {
                    let fault = state.faults.get_mut(&key).and_then(VecDeque::pop_front);
                    if let Some(Fault::ChangeContent(data)) = &fault {
                        state.set_file(key.clone(), data.clone());
                    }
                    fault
                }
            };
            let mode = state.modes.get(&key).cloned().unwrap_or_default();
            (fault, mode, *self.shared.release.borrow(), tus)
        };
        let close = head.wants_close();
        self.continue_owed = head.has_token("expect", "100-continue");
        if let Some(&Fault::HugeHeader(n)) = fault.as_ref() {
            self.padding = n;
        }
        if let Some(route) = tus.as_ref().filter(|r| r.is_patch()) {
            return self
                .tus_patch(&head, &key, route, fault, generation, close)
                .await;
        }

        // The request body, if any.
        let mut body = Vec::new();
        if head.has_body()? {
            // How many body bytes a fault may wait for (not more than sent).
            let upto = |n: u64| {
                let n = if head.chunked() {
                    n
                } else {
                    n.min(head.content_length().unwrap_or(0))
                };
                usize::try_from(n).unwrap_or(usize::MAX)
            };
            match fault {
                Some(Fault::CutAfter(n)) => {
                    let _ = self.fill_to(upto(n)).await;
                    return Ok(Next::Close);
                }
                Some(Fault::StallAfter(n)) => {
                    self.fill_to(upto(n)).await?;
                    // The client is blocked sending: wait for the release only.
                    let mut rx = self.shared.release.subscribe();
                    if rx.wait_for(|g| *g != generation).await.is_err() {
                        return Ok(Next::Close);
                    }
                }
                _ => {}
            }
            body = self.read_body(&head).await?;
        }
        self.continue_owed = false;

        let mut plan = BodyPlan {
            chunked: mode.chunked && !mode.no_content_length,
            throttle: mode.throttle_bytes_per_sec,
            cut_after: None,
            stall_after: None,
            endless: matches!(fault, Some(Fault::EndlessBody)),
            extra: None,
            wrong_range: None,
        };
        if matches!(fault, Some(Fault::Stall)) && !self.hold(generation).await {
            return Ok(Next::Close);
        }
        if let Some(next) = self.answer_fault(&head, fault.as_ref(), close).await? {
            return Ok(next);
        }
        match fault {
            Some(Fault::CutAfter(n)) if !head.has_body()? => plan.cut_after = Some(n),
            Some(Fault::StallAfter(n)) if !head.has_body()? => plan.stall_after = Some(n),
            Some(Fault::ExtraBytes(n)) => plan.extra = Some(n),
            Some(Fault::WrongContentRange(at)) => plan.wrong_range = Some(at),
            _ => {}
        }

        if let Some(route) = tus {
            // A cut or a stall of a bodiless tus request happens before its answer.
            if plan.cut_after.is_some() {
                return Ok(Next::Close);
            }
            if plan.stall_after.is_some() && !self.hold(generation).await {
                return Ok(Next::Close);
            }
            return self.serve_tus(&head, &key, &route, close).await;
        }

        match head.method.as_str() {
            "GET" | "HEAD" => {
                self.serve_file(&head, &key, &mode, plan, generation, close)
                    .await
            }
            "PUT" | "POST" => {
                let reply = {
                    let mut state = self.shared.lock();
                    if head.method == "PUT" {
                        state.uploads.insert(key.clone(), body);
                    }
                    state.upload_replies.get(&key).cloned()
                };
                let (status, body) = reply.unwrap_or_else(|| {
                    if head.method == "PUT" {
                        (201, Vec::new())
                    } else {
                        (200, b"ok\n".to_vec())
                    }
                });
                self.simple(&head, status, Vec::new(), &body, close).await
            }
            "PATCH" => self.simple(&head, 200, Vec::new(), b"ok\n", close).await,
            _ => {
                let headers = vec![("Allow", "GET, HEAD, PUT, POST, PATCH".to_string())];
                self.simple(&head, 405, headers, b"method not allowed\n", close)
                    .await
            }
        }
    }

    /// Answers as `fault` says if it is a fault that replaces the answer
    /// (statuses and redirects); `None` otherwise.
    async fn answer_fault(
        &mut self,
        head: &Head,
        fault: Option<&Fault>,
        close: bool,
    ) -> io::Result<Option<Next>> {
        let next = match fault {
            Some(&Fault::Status(code)) => {
                let msg = format!("injected fault: {} {}\n", code, reason(code));
                self.simple(head, code, Vec::new(), msg.as_bytes(), close)
                    .await?
            }
            Some(&Fault::StatusRetryAfter(code, secs)) => {
                let msg = format!("injected fault: {} {}\n", code, reason(code));
                let headers = vec![("Retry-After", secs.to_string())];
                self.simple(head, code, headers, msg.as_bytes(), close)
                    .await?
            }
            Some(Fault::Redirect(location)) => {
                let headers = vec![("Location", location.clone())];
                self.simple(head, 302, headers, b"", close).await?
            }
            Some(&Fault::RedirectWith(code, ref location)) => {
                let headers = vec![("Location", location.clone())];
                self.simple(head, code, headers, b"", close).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(next))
    }

    async fn serve_file(
        &mut self,
        head: &Head,
        key: &str,
        mode: &Mode,
        plan: BodyPlan,
        generation: u64,
        close: bool,
    ) -> io::Result<Next> {
        let file = self.shared.lock().files.get(key).cloned();
        let Some(file) = file else {
            return self
                .simple(head, 404, Vec::new(), b"not found\n", close)
                .await;
        };
        let data = if mode.gzip {
            Arc::new(gzip(&file.data))
        } else {
            file.data.clone()
        };
        let total = data.len() as u64;
        let last_modified = httpdate::fmt_http_date(file.last_modified);
        let validators = !mode.no_validators && !mode.no_content_length;

        let mut range = if mode.ignore_range || mode.no_content_length {
            None
        } else {
            head.header("range").and_then(parse_range)
        };
        if let (Some(_), Some(if_range)) = (&range, head.header("if-range")) {
            let if_range = if_range.trim();
            if !validators || (if_range != file.etag && if_range != last_modified) {
                range = None;
            }
        }

        let mut headers: Vec<(&str, String)> = Vec::new();
        headers.push(("Content-Type", "application/octet-stream".to_string()));
        if !mode.no_content_length {
            headers.push(("Accept-Ranges", "bytes".to_string()));
        }
        if validators {
            headers.push(("ETag", file.etag.clone()));
            headers.push(("Last-Modified", last_modified));
        }
        if mode.gzip {
            headers.push(("Content-Encoding", "gzip".to_string()));
        }
        if let Some(at) = plan.wrong_range.filter(|_| head.method == "GET") {
            // Whatever was asked: the bytes from `at`, described truthfully.
            range = Some(ByteRange::From(at));
        }

        let (status, start, end) = match range.map(|r| r.resolve(total)) {
            None => (200, 0, total),
            Some(None) => {
                headers.push(("Content-Range", format!("bytes */{total}")));
                return self.simple(head, 416, headers, b"", close).await;
            }
            Some(Some((start, end))) => {
                headers.push((
                    "Content-Range",
                    format!("bytes {}-{}/{}", start, end - 1, total),
                ));
                (206, start, end)
            }
        };

        let close = close || mode.no_content_length;
        let mut plan = plan;
        if plan.endless && !mode.no_content_length {
            plan.chunked = true;
        }
        if mode.no_content_length {
            // Close-delimited body.
        } else if plan.chunked {
            headers.push(("Transfer-Encoding", "chunked".to_string()));
        } else {
            headers.push(("Content-Length", (end - start).to_string()));
        }
        self.write_head(status, &headers, close).await?;
        if head.method == "HEAD" {
            self.stream.flush().await?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
        let next = self
            .send_body(&data[start as usize..end as usize], &plan, generation)
            .await?;
        Ok(if close { Next::Close } else { next })
    }
}

/// A single byte range from a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=N-`
    From(u64),
    /// `bytes=N-M` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N` (the last N bytes)
    Suffix(u64),
}

impl ByteRange {
    fn start(&self) -> Option<u64> {
        match *self {
            ByteRange::From(n) | ByteRange::FromTo(n, _) => Some(n),
            ByteRange::Suffix(_) => None,
        }
    }

    /// The half-open byte interval to send, or `None` if unsatisfiable.
    fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(n) if n < total => Some((n, total)),
            ByteRange::FromTo(n, m) if n < total => Some((n, m.saturating_add(1).min(total))),
            ByteRange::Suffix(k) if k > 0 && total > 0 => Some((total - k.min(total), total)),
            _ => None,
        }
    }
}

/// Parses a single-range `Range` header; anything else is ignored (`None`).
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(ByteRange::Suffix);
    }
    let start = a.parse().ok()?;
    if b.is_empty() {
        return Some(ByteRange::From(start));
    }
    let end = b.parse().ok()?;
    (end >= start).then_some(ByteRange::FromTo(start, end))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
