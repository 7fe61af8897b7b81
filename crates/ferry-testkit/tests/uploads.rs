//! Exercises the upload side of `TestServer` (tus 1.0, upload replies) with a
//! raw `std::net::TcpStream` client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferry_testkit::{random_bytes, Fault, TestServer};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn offset(&self) -> u64 {
        self.header("upload-offset").unwrap().parse().unwrap()
    }
}

/// A client connection with its read buffer.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn new(server: &TestServer) -> Client {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[&str], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        // The server may close the connection before reading the whole body.
        match self.stream.write_all(body) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
            Err(e) => panic!("write error: {e}"),
        }
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read error: {e}"),
        }
    }

    /// The next response, or `None` if the server closed the connection first.
    fn try_response(&mut self, head_only: bool) -> Option<Resp> {
        let (status, headers, consumed) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.unwrap(), headers, n);
            }
            if self.fill() == 0 {
                assert!(self.buf.is_empty(), "partial response head");
                return None;
            }
        };
        self.buf.drain(..consumed);
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if !head_only && status != 204 {
            let len: usize = resp.header("content-length").unwrap().parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill() > 0, "body cut short");
            }
            resp.body = self.buf.drain(..len).collect();
        }
        Some(resp)
    }

    fn response(&mut self, head_only: bool) -> Resp {
        self.try_response(head_only)
            .expect("connection closed before the response")
    }

    fn request(&mut self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Resp {
        self.send(method, path, headers, body);
        self.response(method == "HEAD")
    }

    /// Asserts that the server closed the connection.
    fn assert_closed(&mut self) {
        assert!(self.try_response(false).is_none(), "connection still open");
    }
}

const TUS: &str = "Tus-Resumable: 1.0.0";
const OCTETS: &str = "Content-Type: application/offset+octet-stream";

/// The path part of an absolute URL.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    &rest[rest.find('/').unwrap()..]
}

/// Creates an upload of `len` bytes; its location.
fn create(server: &TestServer, len: usize) -> String {
    let mut c = Client::new(server);
    let length = format!("Upload-Length: {len}");
    let r = c.request("POST", "/files/", &[TUS, &length], b"");
    assert_eq!(r.status, 201);
    r.header("location").unwrap().to_string()
}

fn head(c: &mut Client, path: &str) -> Resp {
    c.request("HEAD", path, &[TUS], b"")
}

fn patch(c: &mut Client, path: &str, offset: u64, body: &[u8]) -> Resp {
    let offset = format!("Upload-Offset: {offset}");
    c.request("PATCH", path, &[TUS, OCTETS, &offset], body)
}

#[test]
fn tus_options() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let mut c = Client::new(&server);
    for path in ["/files/", "/files"] {
        let r = c.request("OPTIONS", path, &[], b"");
        assert_eq!(r.status, 204);
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
        assert_eq!(r.header("tus-extension"), Some("creation"));
    }
    assert_eq!(server.request_count("/files/"), 1);
    assert_eq!(server.request_count("/files"), 1);
    // Paths outside the prefix are not tus.
    let r = c.request("OPTIONS", "/other/", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn tus_create_head_patch() {
    let server = TestServer::start();
    server.enable_tus("/files");
    let data = random_bytes(200_000, 7);
    let mut c = Client::new(&server);
    let r = c.request(
        "POST",
        "/files/",
        &[
            TUS,
            "Upload-Length: 200000",
            "Upload-Metadata: filename ZS5iaW4=",
        ],
        b"",
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    let location = r.header("location").unwrap().to_string();
    let prefix = format!("{}/files/", server.base_url());
    assert!(location.starts_with(&prefix), "{location}");
    let id = &location[prefix.len()..];
    assert!(!id.is_empty() && !id.contains('/'));
    let path = path_of(&location).to_string();
    assert_eq!(
        server.tus_metadata(&location).as_deref(),
        Some("filename ZS5iaW4=")
    );

    let r = head(&mut c, &path);
    assert_eq!(r.status, 200);
    assert_eq!(r.offset(), 0);
    assert_eq!(r.header("upload-length"), Some("200000"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(r.header("upload-metadata"), Some("filename ZS5iaW4="));

    // Two PATCHes on the same (persistent) connection.
    let r = patch(&mut c, &path, 0, &data[..120_000]);
    assert_eq!(r.status, 204);
    assert_eq!(r.offset(), 120_000);
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(server.tus_upload(&location), None, "not complete yet");
    let uploads = server.tus_uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].0, location);
    assert_eq!((uploads[0].1, uploads[0].2), (120_000, 200_000));
    assert_eq!(uploads[0].3, &data[..120_000]);

    let r = head(&mut c, &path);
    assert_eq!(r.offset(), 120_000);
    let r = patch(&mut c, &path, 120_000, &data[120_000..]);
    assert_eq!(r.status, 204);
    assert_eq!(r.offset(), 200_000);

    // Every way of naming the upload works.
    for name in [location.as_str(), path.as_str(), id] {
        assert_eq!(
            server.tus_upload(name).as_deref(),
            Some(&data[..]),
            "{name}"
        );
    }
    assert_eq!(server.tus_uploads()[0].1, 200_000);

    assert_eq!(server.request_count("/files/"), 1);
    let methods: Vec<_> = server
        .requests(&path)
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["HEAD", "PATCH", "HEAD", "PATCH"]);
    assert_eq!(server.requests(&path)[1].header("upload-offset"), Some("0"));
}

#[test]
fn tus_empty_upload_is_complete_at_once() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let location = create(&server, 0);
    assert_eq!(server.tus_upload(&location), Some(Vec::new()));
}

#[test]
fn tus_creation_errors() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let mut c = Client::new(&server);
    let r = c.request("POST", "/files/", &["Upload-Length: 10"], b"");
    assert_eq!(r.status, 412);
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    let r = c.request(
        "POST",
        "/files/",
        &["Tus-Resumable: 0.2.2", "Upload-Length: 10"],
        b"",
    );
    assert_eq!(r.status, 412);
    let r = c.request("POST", "/files/", &[TUS], b"");
    assert_eq!(r.status, 400);
    let r = c.request("POST", "/files/", &[TUS, "Upload-Length: ten"], b"");
    assert_eq!(r.status, 400);
    assert!(server.tus_uploads().is_empty());

    let r = head(&mut c, "/files/nope");
    assert_eq!(r.status, 404);
    let r = patch(&mut c, "/files/nope", 0, b"abc");
    assert_eq!(r.status, 404);
    assert_eq!(server.tus_upload("nope"), None);
}

#[test]
fn tus_patch_errors_leave_the_offset() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let location = create(&server, 10);
    let path = path_of(&location);
    let mut c = Client::new(&server);
    assert_eq!(patch(&mut c, path, 0, b"01234").status, 204);

    // Wrong offset: 409, and the body is drained so the connection stays usable.
    let r = patch(&mut c, path, 3, b"34567");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    // Wrong media type.
    let r = c.request(
        "PATCH",
        path,
        &[
            TUS,
            "Content-Type: application/octet-stream",
            "Upload-Offset: 5",
        ],
        b"56789",
    );
    assert_eq!(r.status, 415);
    // No Tus-Resumable.
    let r = c.request("PATCH", path, &[OCTETS, "Upload-Offset: 5"], b"56789");
    assert_eq!(r.status, 412);
    // No Upload-Offset.
    let r = c.request("PATCH", path, &[TUS, OCTETS], b"56789");
    assert_eq!(r.status, 400);
    // Past Upload-Length.
    let r = patch(&mut c, path, 5, b"56789X");
    assert_eq!(r.status, 400);

    assert_eq!(head(&mut c, path).offset(), 5);
    let r = patch(&mut c, path, 5, b"56789");
    assert_eq!(r.status, 204);
    assert_eq!(r.offset(), 10);
    assert_eq!(server.tus_upload(&location).unwrap(), b"0123456789");

    // A 409 answered to a client waiting for 100 Continue closes the connection.
    let mut c = Client::new(&server);
    c.send(
        "PATCH",
        path,
        &[
            TUS,
            OCTETS,
            "Upload-Offset: 0",
            "Content-Length: 5",
            "Expect: 100-continue",
        ],
        b"",
    );
    let r = c.response(false);
    assert_eq!(r.status, 409);
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed();
}

#[test]
fn tus_cut_on_prefix_then_resume_from_head() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let data = random_bytes(100_000, 8);
    // Pushed before the upload exists: applies to the next PATCH under /files/.
    server.push_fault("/files/", Fault::CutAfter(30_000));
    let location = create(&server, data.len());
    let path = path_of(&location);

    let mut c = Client::new(&server);
    let offset = format!("Upload-Offset: {}", 0);
    c.send("PATCH", path, &[TUS, OCTETS, &offset], &data);
    c.assert_closed();
    let uploads = server.tus_uploads();
    assert_eq!(uploads[0].1, 30_000);
    assert_eq!(uploads[0].3, &data[..30_000]);
    assert_eq!(server.tus_upload(&location), None);

    let mut c = Client::new(&server);
    let r = head(&mut c, path);
    assert_eq!(r.offset(), 30_000);
    let r = patch(&mut c, path, 30_000, &data[30_000..]);
    assert_eq!(r.status, 204);
    assert_eq!(r.offset(), 100_000);
    assert_eq!(server.tus_upload(&location).unwrap(), data);
    assert_eq!(server.request_count(path), 3);
}

#[test]
fn tus_cut_on_upload_path() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let data = random_bytes(5000, 9);
    let location = create(&server, data.len());
    let path = path_of(&location);
    server.push_fault(path, Fault::CutAfter(1234));

    let mut c = Client::new(&server);
    c.send("PATCH", path, &[TUS, OCTETS, "Upload-Offset: 0"], &data);
    c.assert_closed();
    let mut c = Client::new(&server);
    assert_eq!(head(&mut c, path).offset(), 1234);
    // The fault was one-shot.
    let r = patch(&mut c, path, 1234, &data[1234..]);
    assert_eq!(r.status, 204);
    assert_eq!(server.tus_upload(path).unwrap(), data);
}

#[test]
fn tus_client_going_away_keeps_received_bytes() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let location = create(&server, 1000);
    let path = path_of(&location);
    {
        let mut c = Client::new(&server);
        c.send(
            "PATCH",
            path,
            &[TUS, OCTETS, "Upload-Offset: 0", "Content-Length: 1000"],
            b"",
        );
        c.stream.write_all(&[7u8; 400]).unwrap();
    }
    ferry_testkit::wait_until(Duration::from_secs(5), "bytes kept", || {
        (server.tus_uploads()[0].1 == 400).then_some(())
    });
}

#[test]
fn tus_status_fault_on_prefix_hits_the_next_patch() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    server.push_fault("/files/", Fault::Status(503));
    // Creation is not affected by faults on the prefix.
    let location = create(&server, 6);
    let path = path_of(&location);

    let mut c = Client::new(&server);
    let r = head(&mut c, path);
    assert_eq!(r.status, 200);
    let r = patch(&mut c, path, 0, b"abcdef");
    assert_eq!(r.status, 503);
    assert_eq!(head(&mut c, path).offset(), 0);
    let r = patch(&mut c, path, 0, b"abcdef");
    assert_eq!(r.status, 204);
    assert_eq!(server.tus_upload(&location).unwrap(), b"abcdef");
}

#[test]
fn tus_stall_after_on_patch() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    let location = create(&server, 100);
    let path = path_of(&location).to_string();
    server.push_fault("/files/", Fault::StallAfter(40));
    let addr = server.addr();
    let sender = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: t\r\n{TUS}\r\n{OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: 100\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&[1u8; 100]).unwrap();
        let mut out = vec![0u8; 12];
        s.read_exact(&mut out).unwrap();
        out
    });
    ferry_testkit::wait_until(Duration::from_secs(5), "40 bytes", || {
        (server.tus_uploads()[0].1 == 40).then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.tus_uploads()[0].1, 40);
    server.release_stalls();
    assert_eq!(sender.join().unwrap(), b"HTTP/1.1 204");
    assert_eq!(server.tus_upload(&location).unwrap(), vec![1u8; 100]);
}

#[test]
fn tus_reply_on_completion_and_forget() {
    let server = TestServer::start();
    server.enable_tus("/files/");
    server.set_upload_reply("/files/", 200, b"upload complete\n".to_vec());
    let location = create(&server, 8);
    let path = path_of(&location);
    let mut c = Client::new(&server);
    let r = patch(&mut c, path, 0, b"0123");
    assert_eq!(r.status, 204);
    let r = patch(&mut c, path, 4, b"4567");
    assert_eq!(r.status, 200);
    assert_eq!(r.offset(), 8);
    assert_eq!(r.body, b"upload complete\n");

    assert!(server.tus_forget(&location));
    assert!(!server.tus_forget(&location));
    assert_eq!(head(&mut c, path).status, 404);
    assert_eq!(server.tus_upload(&location), None);
    assert!(server.tus_uploads().is_empty());
}

#[test]
fn upload_reply_for_put_and_post() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    // Defaults.
    let r = c.request("PUT", "/up", &[], b"data");
    assert_eq!((r.status, r.body.as_slice()), (201, &b""[..]));
    let r = c.request("POST", "/up", &[], b"data");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));

    server.set_upload_reply("/up", 200, b"<reply/>".to_vec());
    let r = c.request("PUT", "/up?x=1", &[], b"new data");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<reply/>");
    assert_eq!(server.uploaded("/up").unwrap(), b"new data");
    let r = c.request("POST", "/up", &[], b"posted");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<reply/>");

    server.set_upload_reply("/up", 202, Vec::new());
    let r = c.request("PUT", "/up", &[], b"x");
    assert_eq!((r.status, r.body.len()), (202, 0));
    // Faults take precedence.
    server.push_fault("/up", Fault::Status(500));
    assert_eq!(c.request("PUT", "/up", &[], b"y").status, 500);
    assert_eq!(server.uploaded("/up").unwrap(), b"x");
}
