//! The method's conversation with apt: capabilities first, then the configuration (the
//! sandbox user is taken before anything talks to ferryd), then any number of `600 URI
//! Acquire`, each fetched at once as a job of its own (apt pipelines up to
//! `Acquire::Max-Pipeline-Depth` files to a method), answered with `200 URI Start` and
//! `201 URI Done` or `400 URI Failure` as each ends, in whatever order; a `102 Status`
//! line while files are under way. When apt closes the pipe or stops the method
//! (SIGINT, SIGTERM), jobs still under way are suspended with their bytes.
//!
//! May use: every module of this crate, ferry-client, ferry-common.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_client::{ConnectOptions, ConnectionEvent, Manager};
use tokio::sync::mpsc;

use crate::failure::Failure;
use crate::fetch::{Fetched, Fetcher};
use crate::message::{Message, ParseError, Reader};
use crate::request::Request;
use crate::settings::Settings;
use crate::status::Progress;

/// How often the status line may change.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Writes whole messages to apt, one at a time.
#[derive(Clone)]
pub struct Output {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Output {
    /// Messages to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Output {
        Output {
            out: Arc::new(Mutex::new(Box::new(out))),
        }
    }

    /// Sends `m`. A failed write means apt is gone: the method ends.
    pub fn send(&self, m: &Message) {
        let mut out = self.out.lock().unwrap();
        if out
            .write_all(m.to_wire().as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }
}

/// The `100 Capabilities` apt reads first: files may be sent ahead (pipelined), the
/// configuration is wanted, and URIs come percent-encoded (as they go to the origin).
pub fn capabilities() -> Message {
    Message::new(100, "Capabilities")
        .with(
            "Version",
            concat!("1.0 (ferry ", env!("CARGO_PKG_VERSION"), ")"),
        )
        .with("Pipeline", "true")
        .with("Send-Config", "true")
        .with("Send-URI-Encoded", "true")
}

/// What came before the configuration: messages to handle after it (apt sends none, but
/// the protocol allows it) and the configuration itself, if apt sent one.
pub struct Start<R> {
    /// The reader, positioned after the configuration.
    pub reader: Reader<R>,
    /// Messages that came first.
    pub early: Vec<Message>,
    /// apt's configuration (`None`: apt closed the pipe first, as when it only asks a
    /// method for its capabilities).
    pub configuration: Option<Message>,
}

/// Reads apt's messages up to its configuration (blocking: no thread runs yet).
pub fn read_until_configuration<R: BufRead>(mut reader: Reader<R>) -> Result<Start<R>, String> {
    let mut early = Vec::new();
    loop {
        match reader.next_message() {
            Ok(None) | Err(_) => {
                return Ok(Start {
                    reader,
                    early,
                    configuration: None,
                })
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(m))) if m.code == 601 => {
                return Ok(Start {
                    reader,
                    early,
                    configuration: Some(m),
                })
            }
            Ok(Some(Ok(m))) => early.push(m),
        }
    }
}

/// A `401 General Failure`: the method cannot go on.
pub fn general_failure(message: &str) -> Message {
    Message::new(401, "General Failure").with("Message", message)
}

/// The answers for a fetched file: `200 URI Start` (apt prints its "Get:" line then),
/// then `201 URI Done` with the file and its hashes.
pub fn done_messages(req: &Request, fetched: &Fetched) -> [Message; 2] {
    let size = fetched.hashes.size;
    let start = Message::new(200, "URI Start")
        .with("URI", &req.uri)
        .with("Size", size)
        .with(
            "Resume-Point",
            if fetched.resumed_from > 0 {
                fetched.resumed_from.min(size).to_string()
            } else {
                String::new()
            },
        );
    let mut done = Message::new(201, "URI Done")
        .with("URI", &req.uri)
        .with("Filename", req.dest.display())
        .with("Size", size);
    for (name, value) in fetched.hashes.fields() {
        done = done.with(&name, value);
    }
    [start, done]
}

/// The socket of the ferryd to use: `Acquire::ferry::Socket`, else the system-wide
/// daemon's (`$FERRY_SOCKET`, else `/run/ferry/ferryd.sock`).
pub fn socket_of(settings: &Settings) -> PathBuf {
    settings
        .socket
        .clone()
        .unwrap_or_else(ferry_common::paths::system_socket_path)
}

/// Connects to ferryd; a failure is a transient failure of the file that needed it (apt
/// retries, and the next file tries again).
async fn connect(settings: &Settings) -> Result<Manager, Failure> {
    let socket = socket_of(settings);
    Manager::connect_with(ConnectOptions {
        socket: socket.clone(),
        autostart: false,
        reconnect_timeout: Some(settings.reconnect_timeout),
        ..ConnectOptions::default()
    })
    .await
    .map_err(|e| {
        Failure::transient(format!(
            "ferry: cannot reach ferryd on {}: {e}; install ferry and enable the system-wide \
             daemon (systemctl enable --now ferryd.socket), or name another socket with \
             Acquire::ferry::Socket",
            socket.display()
        ))
    })
}

/// The method's shared state: the connection (made at the first file) and the status.
struct Method {
    settings: Settings,
    out: Output,
    progress: Arc<Mutex<Progress>>,
    fetcher: tokio::sync::Mutex<Option<Arc<Fetcher>>>,
}

impl Method {
    /// The fetcher, connecting first if needed.
    async fn fetcher(&self) -> Result<Arc<Fetcher>, Failure> {
        let mut slot = self.fetcher.lock().await;
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let manager = connect(&self.settings).await?;
        self.follow_connection(&manager);
        let f = Arc::new(Fetcher::new(
            manager,
            self.settings.clone(),
            self.progress.clone(),
        ));
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Shows ferryd going away and coming back in the status line.
    fn follow_connection(&self, manager: &Manager) {
        let mut events = manager.connection_events();
        let progress = self.progress.clone();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                let away = match e {
                    ConnectionEvent::Lost { reason } | ConnectionEvent::GaveUp { reason } => {
                        Some(reason)
                    }
                    ConnectionEvent::Restored { .. } => None,
                };
                progress.lock().unwrap().set_daemon_away(away);
            }
        });
    }

    /// Handles one `600 URI Acquire` to its answer.
    async fn acquire(&self, m: Message) {
        let req = match Request::from_message(&m) {
            Ok(r) => r,
            Err(e) => {
                let uri = m.get("URI").unwrap_or("<UNKNOWN>");
                self.out.send(&Failure::plain(e.0).to_message(uri));
                return;
            }
        };
        let result = match self.fetcher().await {
            Ok(f) => {
                if self.settings.debug {
                    self.log(
                        &req.uri,
                        &format!("ferry job for {} → {}", req.url, req.dest.display()),
                    );
                }
                f.fetch(&req).await
            }
            Err(failure) => Err(failure),
        };
        match result {
            Ok(fetched) => {
                for m in done_messages(&req, &fetched) {
                    self.out.send(&m);
                }
            }
            Err(failure) => self.out.send(&failure.to_message(&req.uri)),
        }
    }

    /// A `101 Log` (shown with `Debug::pkgAcquire::Worker`).
    fn log(&self, uri: &str, text: &str) {
        self.out.send(
            &Message::new(101, "Log")
                .with("URI", uri)
                .with("Message", text),
        );
    }

    /// Sends the status line every [`STATUS_INTERVAL`] while it changes.
    async fn report_status(self: Arc<Self>) {
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        loop {
            tick.tick().await;
            let (line, uri) = {
                let mut p = self.progress.lock().unwrap();
                let line = p.take_line();
                (line, p.any_uri().map(str::to_string))
            };
            if let (Some(line), Some(uri)) = (line, uri) {
                self.out.send(
                    &Message::new(102, "Status")
                        .with("URI", uri)
                        .with("Message", line),
                );
            }
        }
    }
}

/// Runs the method after the configuration: answers every file apt asks for until apt
/// closes the pipe or stops the method. Returns the exit code.
pub async fn serve(
    settings: Settings,
    early: Vec<Message>,
    mut incoming: mpsc::Receiver<Result<Message, ParseError>>,
    out: Output,
) -> i32 {
    let method = Arc::new(Method {
        settings,
        out: out.clone(),
        progress: Arc::default(),
        fetcher: tokio::sync::Mutex::new(None),
    });
    tokio::spawn(method.clone().report_status());
    let mut tasks = tokio::task::JoinSet::new();
    let mut early = early.into_iter();
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut code = 0;
    loop {
        let next = match early.next() {
            Some(m) => Some(Ok(m)),
            None => tokio::select! {
                m = incoming.recv() => m,
                () = &mut stop => None,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            },
        };
        match next {
            None => break,
            Some(Err(e)) => {
                out.send(&general_failure(&format!("ferry: a message from apt: {e}")));
                code = 100;
                break;
            }
            Some(Ok(m)) if m.code == 600 => {
                let method = method.clone();
                tasks.spawn(async move { method.acquire(m).await });
            }
            // A configuration sent again, or anything else apt may send one day: nothing
            // to do.
            Some(Ok(_)) => {}
        }
    }
    // apt is done with this method: files still under way are ones it gave up.
    tasks.abort_all();
    if let Some(f) = method.fetcher.lock().await.as_ref() {
        f.suspend_running().await;
    }
    code
}

/// Resolves when apt stops the method (SIGINT when it is done with it, SIGTERM).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashes::FileHashes;

    #[test]
    fn the_capabilities_ask_for_the_configuration_and_pipelining() {
        let c = capabilities();
        assert_eq!(c.code, 100);
        assert!(c.flag("Pipeline"));
        assert!(c.flag("Send-Config"));
        assert!(c.flag("Send-URI-Encoded"));
        assert!(c.get("Version").unwrap().contains("ferry"));
    }

    #[test]
    fn messages_before_the_configuration_are_kept_and_eof_means_no_configuration() {
        let input = "600 URI Acquire\nURI: x\n\n601 Configuration\nConfig-Item: a=1\n\n600 URI Acquire\nURI: y\n\n";
        let mut start = read_until_configuration(Reader::new(input.as_bytes())).unwrap();
        assert_eq!(start.early.len(), 1);
        assert_eq!(start.configuration.unwrap().get("Config-Item"), Some("a=1"));
        let next = start.reader.next_message().unwrap().unwrap().unwrap();
        assert_eq!(next.get("URI"), Some("y"));
        let start = read_until_configuration(Reader::new(&b""[..])).unwrap();
        assert!(start.configuration.is_none());
        assert!(read_until_configuration(Reader::new(&b"garbage\n\n"[..])).is_err());
    }

    #[test]
    fn a_fetched_file_is_started_then_done_with_its_hashes_under_apts_uri() {
        let req = Request::from_message(
            &Message::new(600, "URI Acquire")
                .with("URI", "ferry+http://h/pool/a.deb")
                .with("Filename", "/var/cache/apt/archives/partial/a.deb"),
        )
        .unwrap();
        let fetched = Fetched {
            hashes: FileHashes {
                sha256: "aa".repeat(32),
                sha512: "bb".repeat(64),
                size: 100,
            },
            resumed_from: 40,
            from_peers: 0,
        };
        let [start, done] = done_messages(&req, &fetched);
        assert_eq!(start.code, 200);
        assert_eq!(start.get("URI"), Some("ferry+http://h/pool/a.deb"));
        assert_eq!(start.get("Size"), Some("100"));
        assert_eq!(start.get("Resume-Point"), Some("40"));
        assert_eq!(done.code, 201);
        assert_eq!(
            done.get("Filename"),
            Some("/var/cache/apt/archives/partial/a.deb")
        );
        assert_eq!(done.get("SHA256-Hash"), Some("aa".repeat(32).as_str()));
        assert_eq!(done.get("SHA512-Hash"), Some("bb".repeat(64).as_str()));
        assert_eq!(done.get("Checksum-FileSize-Hash"), Some("100"));
        let fresh = Fetched {
            resumed_from: 0,
            ..fetched
        };
        assert_eq!(done_messages(&req, &fresh)[0].get("Resume-Point"), None);
    }

    #[test]
    fn the_socket_is_the_configured_one_else_the_system_daemons() {
        let mut s = Settings::default();
        s.socket = Some(PathBuf::from("/tmp/x.sock"));
        assert_eq!(socket_of(&s), PathBuf::from("/tmp/x.sock"));
        let s = Settings::default();
        assert_eq!(socket_of(&s), ferry_common::paths::system_socket_path());
    }

    #[test]
    fn output_writes_whole_messages() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Shared::default();
        let out = Output::new(buf.clone());
        out.send(&general_failure("bad"));
        assert_eq!(
            String::from_utf8(buf.0.lock().unwrap().clone()).unwrap(),
            "401 General Failure\nMessage: bad\n\n"
        );
    }
}
