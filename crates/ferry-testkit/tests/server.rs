//! Exercises `TestServer` with a raw `std::net::TcpStream` client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry_testkit::{random_bytes, sha256_hex, wait_until, Fault, Mode, TestServer};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the connection was closed by the server after the body.
    eof: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send(stream: &mut TcpStream, method: &str, path: &str, extra: &[&str]) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
}

/// Reads one response; tolerates a body cut short by the server.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Resp {
    let mut eof = false;
    let (status, headers, consumed) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(buf).unwrap() {
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
        if fill(stream, buf) == 0 {
            panic!("connection closed before response head");
        }
    };
    buf.drain(..consumed);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        eof: false,
    };
    if head_only || status == 204 || status == 304 {
        return resp;
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if fill(stream, buf) == 0 {
                    resp.eof = true;
                    return resp;
                }
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if fill(stream, buf) == 0 {
                    resp.body.extend_from_slice(buf);
                    resp.eof = true;
                    return resp;
                }
            }
            resp.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                return resp;
            }
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            if fill(stream, buf) == 0 {
                eof = true;
                break;
            }
        }
        let take = len.min(buf.len());
        resp.body = buf.drain(..take).collect();
    } else {
        while fill(stream, buf) > 0 {}
        resp.body = std::mem::take(buf);
        eof = true;
    }
    resp.eof = eof;
    resp
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut tmp = [0u8; 65536];
    match stream.read(&mut tmp) {
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            n
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("read error: {e}"),
    }
}

/// One request on a fresh connection.
fn request(server: &TestServer, method: &str, path: &str, extra: &[&str]) -> Resp {
    let mut s = connect(server);
    send(&mut s, method, path, extra);
    read_response(&mut s, &mut Vec::new(), method == "HEAD")
}

fn get(server: &TestServer, path: &str, extra: &[&str]) -> Resp {
    request(server, "GET", path, extra)
}

/// Asserts that the server closed the connection.
fn assert_closed(stream: &mut TcpStream) {
    let mut tmp = [0u8; 16];
    match stream.read(&mut tmp) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}

#[test]
fn full_get() {
    let server = TestServer::start();
    let data = random_bytes(300_000, 1);
    server.add_file("/a.bin", data.clone());
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.url("/a.bin"), format!("{}/a.bin", server.base_url()));

    let r = get(&server, "/a.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2);
    assert_eq!(Some(etag.to_string()), server.etag("/a.bin"));
    assert!(httpdate::parse_http_date(r.header("last-modified").unwrap()).is_ok());
    assert_eq!(sha256_hex(&r.body), sha256_hex(&data));
    assert_eq!(server.request_count("/a.bin"), 1);
    let req = &server.requests("/a.bin")[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/a.bin");
    assert_eq!(req.header("HOST"), Some("test"));
    assert_eq!(req.range_start, None);
}

#[test]
fn unknown_path_is_404() {
    let server = TestServer::start();
    let r = get(&server, "/missing", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(server.request_count("/missing"), 1);
}

#[test]
fn query_string_is_ignored_for_lookup() {
    let server = TestServer::start();
    server.add_file("/q", b"hello".to_vec());
    let r = get(&server, "/q?token=1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert_eq!(server.requests("/q")[0].path, "/q?token=1");
}

#[test]
fn range_requests() {
    let server = TestServer::start();
    let data = random_bytes(1000, 2);
    server.add_file("/r", data.clone());

    let r = get(&server, "/r", &["Range: bytes=100-"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-999/1000"));
    assert_eq!(r.header("content-length"), Some("900"));
    assert_eq!(r.body, &data[100..]);

    let r = get(&server, "/r", &["Range: bytes=10-19"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, &data[10..20]);

    let r = get(&server, "/r", &["Range: bytes=990-5000"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(r.body, &data[990..]);

    let r = get(&server, "/r", &["Range: bytes=-10"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[990..]);

    let r = get(&server, "/r", &["Range: bytes=1000-"]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));

    let starts: Vec<_> = server
        .requests("/r")
        .iter()
        .map(|r| r.range_start)
        .collect();
    assert_eq!(
        starts,
        vec![Some(100), Some(10), Some(990), None, Some(1000)]
    );
}

#[test]
fn if_range() {
    let server = TestServer::start();
    let data = random_bytes(1000, 3);
    server.add_file("/f", data.clone());
    let first = get(&server, "/f", &[]);
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();

    let r = get(
        &server,
        "/f",
        &["Range: bytes=500-", &format!("If-Range: {etag}")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[500..]);

    let r = get(
        &server,
        "/f",
        &["Range: bytes=500-", &format!("If-Range: {lm}")],
    );
    assert_eq!(r.status, 206);

    let r = get(&server, "/f", &["Range: bytes=500-", "If-Range: \"other\""]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);

    // Replacing the content changes ETag and Last-Modified.
    server.add_file("/f", data.clone());
    let r = get(
        &server,
        "/f",
        &["Range: bytes=500-", &format!("If-Range: {etag}")],
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.header("etag").unwrap(), etag);
    assert_ne!(r.header("last-modified").unwrap(), lm);
    let r = get(
        &server,
        "/f",
        &["Range: bytes=500-", &format!("If-Range: {lm}")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn head_has_headers_but_no_body() {
    let server = TestServer::start();
    server.add_file("/h", vec![7; 4321]);
    let mut s = connect(&server);
    let mut buf = Vec::new();
    send(&mut s, "HEAD", "/h", &[]);
    let r = read_response(&mut s, &mut buf, true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("4321"));
    assert!(r.header("etag").is_some());
    // The next response on the same connection follows immediately: no body.
    send(&mut s, "GET", "/h", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![7; 4321]);
    assert_eq!(server.requests("/h")[0].method, "HEAD");
}

#[test]
fn keep_alive_and_connection_close() {
    let server = TestServer::start();
    server.add_file("/k", b"keep".to_vec());
    let mut s = connect(&server);
    let mut buf = Vec::new();
    for _ in 0..3 {
        send(&mut s, "GET", "/k", &[]);
        let r = read_response(&mut s, &mut buf, false);
        assert_eq!(r.body, b"keep");
    }
    send(&mut s, "GET", "/k", &["Connection: close"]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.body, b"keep");
    assert_eq!(r.header("connection"), Some("close"));
    assert_closed(&mut s);
    assert_eq!(server.request_count("/k"), 4);
}

#[test]
fn cut_after_closes_early() {
    let server = TestServer::start();
    let data = random_bytes(200_000, 4);
    server.add_file("/c", data.clone());
    server.push_fault("/c", Fault::CutAfter(70_000));
    let r = get(&server, "/c", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(r.eof);
    assert_eq!(r.body, &data[..70_000]);

    // One-shot: the next request is normal, and can resume.
    let r = get(&server, "/c", &["Range: bytes=70000-"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[70_000..]);
}

#[test]
fn faults_are_fifo() {
    let server = TestServer::start();
    server.add_file("/s", b"body".to_vec());
    server.push_fault("/s", Fault::Status(503));
    server.push_fault("/s", Fault::StatusRetryAfter(429, 7));
    server.push_fault("/s", Fault::Status(500));
    let r = get(&server, "/s", &[]);
    assert_eq!(r.status, 503);
    let r = get(&server, "/s", &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = get(&server, "/s", &[]);
    assert_eq!(r.status, 500);
    let r = get(&server, "/s", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body");
}

#[test]
fn status_fault_keeps_connection_usable() {
    let server = TestServer::start();
    server.add_file("/s", b"body".to_vec());
    server.push_fault("/s", Fault::Status(500));
    let mut s = connect(&server);
    let mut buf = Vec::new();
    send(&mut s, "GET", "/s", &[]);
    assert_eq!(read_response(&mut s, &mut buf, false).status, 500);
    send(&mut s, "GET", "/s", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"body");
}

#[test]
fn redirect() {
    let server = TestServer::start();
    server.add_file("/to", b"target".to_vec());
    server.push_fault("/from", Fault::Redirect("/to".to_string()));
    let r = get(&server, "/from", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/to"));
    server.push_fault("/from", Fault::RedirectWith(307, server.url("/to")));
    let r = get(&server, "/from", &[]);
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some(server.url("/to").as_str()));
}

#[test]
fn change_content() {
    let server = TestServer::start();
    server.add_file("/x", b"old content".to_vec());
    let first = get(&server, "/x", &[]);
    server.push_fault("/x", Fault::ChangeContent(b"new content!".to_vec()));
    let etag = first.header("etag").unwrap();
    let r = get(
        &server,
        "/x",
        &["Range: bytes=4-", &format!("If-Range: {etag}")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"new content!");
    assert_ne!(r.header("etag"), first.header("etag"));
    assert_ne!(r.header("last-modified"), first.header("last-modified"));
}

#[test]
fn ignore_range_mode() {
    let server = TestServer::start();
    let data = random_bytes(5000, 5);
    server.add_file("/i", data.clone());
    server.set_mode(
        "/i",
        Mode {
            ignore_range: true,
            ..Mode::default()
        },
    );
    let r = get(&server, "/i", &["Range: bytes=100-"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(server.requests("/i")[0].range_start, Some(100));
}

#[test]
fn no_content_length_mode() {
    let server = TestServer::start();
    let data = random_bytes(150_000, 6);
    server.add_file("/n", data.clone());
    server.set_mode(
        "/n",
        Mode {
            no_content_length: true,
            ..Mode::default()
        },
    );
    let r = get(&server, "/n", &["Range: bytes=100-"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("accept-ranges"), None);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("last-modified"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.eof);
    assert_eq!(r.body, data);
}

#[test]
fn no_validators_mode() {
    let server = TestServer::start();
    server.add_file("/v", vec![1; 100]);
    server.set_mode(
        "/v",
        Mode {
            no_validators: true,
            ..Mode::default()
        },
    );
    let r = get(&server, "/v", &["Range: bytes=50-"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("last-modified"), None);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
}

#[test]
fn chunked_mode() {
    let server = TestServer::start();
    let data = random_bytes(200_000, 7);
    server.add_file("/ch", data.clone());
    server.set_mode(
        "/ch",
        Mode {
            chunked: true,
            ..Mode::default()
        },
    );
    let mut s = connect(&server);
    let mut buf = Vec::new();
    send(&mut s, "GET", "/ch", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert!(!r.eof);
    assert_eq!(r.body, data);
    // Still keep-alive, and ranges work.
    send(&mut s, "GET", "/ch", &["Range: bytes=199000-"]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[199_000..]);
}

#[test]
fn throttle_paces_body() {
    let server = TestServer::start();
    let data = random_bytes(30_000, 8);
    server.add_file("/t", data.clone());
    server.set_mode(
        "/t",
        Mode {
            throttle_bytes_per_sec: Some(100_000),
            ..Mode::default()
        },
    );
    let started = Instant::now();
    let r = get(&server, "/t", &[]);
    let elapsed = started.elapsed();
    assert_eq!(r.body, data);
    assert!(
        elapsed >= Duration::from_millis(250),
        "too fast: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "too slow: {elapsed:?}");
}

#[test]
fn stall_until_released() {
    let server = TestServer::start();
    server.add_file("/st", b"stalled body".to_vec());
    server.push_fault("/st", Fault::Stall);
    let mut s = connect(&server);
    send(&mut s, "GET", "/st", &[]);
    wait_until(Duration::from_secs(5), "stalled request", || {
        (server.request_count("/st") == 1).then_some(())
    });
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut tmp = [0u8; 16];
    let err = s.read(&mut tmp).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    server.release_stalls();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"stalled body");
}

#[test]
fn stall_after_sends_prefix_then_rest() {
    let server = TestServer::start();
    let data = random_bytes(100_000, 9);
    server.add_file("/sa", data.clone());
    server.push_fault("/sa", Fault::StallAfter(1000));
    let mut s = connect(&server);
    send(&mut s, "GET", "/sa", &[]);
    // Read the head and the first 1000 bytes.
    let mut buf = Vec::new();
    let head_end = loop {
        fill(&mut s, &mut buf);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.len() >= i + 4 + 1000 {
                break i + 4;
            }
        }
    };
    assert_eq!(&buf[head_end..], &data[..1000]);
    assert!(String::from_utf8_lossy(&buf[..head_end]).contains("Content-Length: 100000"));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut tmp = [0u8; 16];
    assert!(s.read(&mut tmp).is_err(), "nothing more before release");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    server.release_stalls();
    let mut rest = vec![0u8; 99_000];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(rest, &data[1000..]);
}

#[test]
fn stall_ends_when_client_disconnects_and_drop_does_not_hang() {
    let server = TestServer::start();
    server.add_file("/d", vec![0; 10]);
    server.push_fault("/d", Fault::Stall);
    server.push_fault("/d", Fault::StallAfter(5));
    let mut a = connect(&server);
    send(&mut a, "GET", "/d", &[]);
    let mut b = connect(&server);
    send(&mut b, "GET", "/d", &[]);
    wait_until(Duration::from_secs(5), "both requests", || {
        (server.request_count("/d") == 2).then_some(())
    });
    drop(a);
    // `b` is still held when the server is dropped; dropping must not hang and
    // must close the connection.
    drop(server);
    let mut rest = Vec::new();
    let _ = b.read_to_end(&mut rest);
}

#[test]
fn put_is_recorded() {
    let server = TestServer::start();
    let data = random_bytes(100_000, 10);
    let mut s = connect(&server);
    let mut buf = Vec::new();
    let head = format!(
        "PUT /up HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&data).unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 201);
    assert_eq!(server.uploaded("/up").unwrap(), data);

    // Chunked upload on the same connection, with Expect: 100-continue.
    s.write_all(
        b"PUT /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let cont = read_response(&mut s, &mut buf, true);
    assert_eq!(cont.status, 100);
    s.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 201);
    assert_eq!(server.uploaded("/up").unwrap(), b"hello world");

    s.write_all(b"POST /up HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    // A POST's body is kept too (an upload job may send its file with POST).
    assert_eq!(server.uploaded("/up").unwrap(), b"abc");
    let methods: Vec<_> = server
        .requests("/up")
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["PUT", "PUT", "POST"]);
}

#[test]
fn put_cut_after() {
    let server = TestServer::start();
    server.push_fault("/up", Fault::CutAfter(10));
    let mut s = connect(&server);
    s.write_all(b"PUT /up HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    assert_closed(&mut s);
    assert_eq!(server.uploaded("/up"), None);
}

#[test]
fn random_bytes_is_deterministic() {
    assert_eq!(random_bytes(1000, 42), random_bytes(1000, 42));
    assert_ne!(random_bytes(1000, 42), random_bytes(1000, 43));
    assert_eq!(random_bytes(13, 0).len(), 13);
    assert_eq!(&random_bytes(100, 5)[..50], &random_bytes(50, 5)[..]);
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn usable_from_async_tests() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = TestServer::start();
        server.add_file("/async", b"ok".to_vec());
        let addr = server.addr();
        let body = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            send(&mut s, "GET", "/async", &["Connection: close"]);
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(body.ends_with(b"\r\n\r\nok"));
        ferry_testkit::wait_until_async(Duration::from_secs(5), "count", || {
            (server.request_count("/async") == 1).then_some(())
        })
        .await;
        drop(server);
    });
}

#[test]
fn server_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TestServer>();
}

#[test]
fn huge_header_fault_pads_one_response() {
    let server = TestServer::start();
    let data = random_bytes(10_000, 20);
    server.add_file("/h", data.clone());
    server.push_fault("/h", Fault::HugeHeader(1 << 20));
    let mut s = connect(&server);
    let mut buf = Vec::new();
    send(&mut s, "GET", "/h", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    let padding = r.header("x-padding").expect("the padding header");
    assert_eq!(padding.len(), 1 << 20);
    assert!(padding.bytes().all(|b| b == b'a'));
    assert_eq!(r.body, data);
    // One-shot, and the connection stays usable.
    send(&mut s, "GET", "/h", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-padding"), None);
    assert_eq!(r.body, data);
}

#[test]
fn wrong_content_range_fault_answers_another_range() {
    let server = TestServer::start();
    let data = random_bytes(1000, 21);
    server.add_file("/w", data.clone());
    let etag = server.etag("/w").unwrap();
    server.push_fault("/w", Fault::WrongContentRange(100));
    server.push_fault("/w", Fault::WrongContentRange(300));
    server.push_fault("/w", Fault::WrongContentRange(5000));

    let if_range = format!("If-Range: {etag}");
    let r = get(&server, "/w", &["Range: bytes=500-", &if_range]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-999/1000"));
    assert_eq!(r.header("content-length"), Some("900"));
    assert_eq!(r.body, &data[100..]);

    // Even without a Range.
    let r = get(&server, "/w", &[]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 300-999/1000"));
    assert_eq!(r.body, &data[300..]);

    // Past the end: 416.
    let r = get(&server, "/w", &["Range: bytes=10-"]);
    assert_eq!(r.status, 416);

    // One-shot each: the next answer is right.
    let r = get(&server, "/w", &["Range: bytes=500-"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 500-999/1000"));
    assert_eq!(r.body, &data[500..]);
}

/// Reads a response head and then `want` bytes of its chunked body (or fewer
/// if the connection ends), without waiting for the body's end.
fn read_chunked_prefix(stream: &mut TcpStream, want: usize) -> (Resp, Vec<u8>) {
    let mut buf = Vec::new();
    let r = read_response(stream, &mut buf, true);
    let mut body = Vec::new();
    while body.len() < want {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            assert!(fill(stream, &mut buf) > 0, "body ended early");
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
        assert!(size > 0, "the chunked body ended");
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            assert!(fill(stream, &mut buf) > 0, "body ended early");
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
    (r, body)
}

#[test]
fn endless_body_fault_never_ends() {
    let server = TestServer::start();
    let data = random_bytes(1000, 22);
    server.add_file("/e", data.clone());
    server.push_fault("/e", Fault::EndlessBody);
    server.push_fault("/e", Fault::EndlessBody);

    let mut s = connect(&server);
    send(&mut s, "GET", "/e", &["Range: bytes=100-"]);
    let (r, body) = read_chunked_prefix(&mut s, 2_000_000);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-999/1000"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("etag").is_some());
    assert!(body.len() >= 2_000_000, "far past the 900 bytes announced");
    assert_eq!(&body[..900], &data[100..]);
    assert!(body[900..].iter().all(|&b| b == 0xEE));
    drop(s);

    let mut s = connect(&server);
    send(&mut s, "GET", "/e", &[]);
    let (r, body) = read_chunked_prefix(&mut s, 100_000);
    assert_eq!(r.status, 200);
    assert_eq!(&body[..1000], &data[..]);
    drop(s);

    // The client going away ends the endless body; the next answer is normal.
    let r = get(&server, "/e", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.body, data);
}

#[test]
fn extra_bytes_fault_sends_more_than_content_length() {
    let server = TestServer::start();
    let data = random_bytes(1000, 23);
    server.add_file("/x", data.clone());
    server.push_fault("/x", Fault::ExtraBytes(5000));
    let mut s = connect(&server);
    let mut buf = Vec::new();
    send(&mut s, "GET", "/x", &[]);
    let r = read_response(&mut s, &mut buf, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.body, data);
    // Then 5000 bytes nobody announced, then the end of the connection.
    while fill(&mut s, &mut buf) > 0 {}
    assert_eq!(buf, vec![0xEE; 5000]);
}

#[test]
fn gzip_mode_compresses_whatever_was_asked() {
    let server = TestServer::start();
    let data = random_bytes(200_000, 24);
    let encoded = ferry_testkit::gzip(&data);
    assert_eq!(&encoded[..3], &[0x1f, 0x8b, 8]);
    server.add_file("/z", data.clone());
    server.set_mode(
        "/z",
        Mode {
            gzip: true,
            ..Mode::default()
        },
    );
    let r = get(&server, "/z", &["Accept-Encoding: identity"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-length"),
        Some(encoded.len().to_string().as_str())
    );
    assert_eq!(r.body, encoded);
    assert_eq!(r.header("etag").map(str::to_string), server.etag("/z"));

    // Ranges count compressed bytes.
    let r = get(&server, "/z", &["Range: bytes=1000-"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000-{}/{}", encoded.len() - 1, encoded.len()).as_str())
    );
    assert_eq!(r.body, &encoded[1000..]);
}

#[test]
fn gzip_is_readable_by_gzip() {
    // Empty, one block, several blocks (stored blocks hold at most 65 535 bytes).
    for data in [Vec::new(), b"hello".to_vec(), random_bytes(200_000, 25)] {
        let encoded = ferry_testkit::gzip(&data);
        // gzip is an Essential package of Debian: every machine that builds ferry has it.
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn gzip -dc (the gzip program)");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&encoded).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success(), "gzip -d accepts it");
        assert_eq!(sha256_hex(&out.stdout), sha256_hex(&data));
    }
}
