//! ferryd as a stock gRPC client sees it, with no ferry code on the client side: the
//! `:authority` that such clients send on a Unix socket (the socket's path, or its
//! percent-encoding) is answered instead of reset, and 50 000 jobs page through
//! `ListJobs` with tonic's generated client and its default 4 MiB limit.
//! (`wire.rs` has the other `stock_client_*` tests: reflection, pages of long files, the
//! end of streams at shutdown.) Python's grpcio and grpcurl are tried from
//! `clients/python/tests`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use common::DEADLINE;
use ferry_proto::v1 as pb;
use ferry_testkit::TestEnv;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A plain tonic channel over the daemon's socket with tonic's defaults, as a client in
/// any language would have.
async fn stock_channel(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to the test daemon")
}

/// HTTP/2 as a gRPC client writes it, by hand: tonic (and every Rust HTTP stack) refuses
/// to send an `:authority` that is not a URI authority, so the requests of the clients
/// that do are built here byte by byte.
mod raw_h2 {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    /// A frame: 24-bit length, type, flags, stream id.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// An HPACK integer with an `n`-bit prefix (RFC 7541, 5.1).
    fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        out.push(value as u8);
    }

    /// A header block of literal fields, never indexed and never Huffman-coded (RFC 7541,
    /// 6.2.2): no state shared with the server's decoder.
    pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            integer(&mut out, 0, 7, name.len());
            out.extend(name.as_bytes());
            integer(&mut out, 0, 7, value.len());
            out.extend(value.as_bytes());
        }
        out
    }

    /// A gRPC message in its 5-byte envelope (not compressed).
    pub fn grpc_message(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    }
}

/// What became of one stream.
#[derive(Debug, Default)]
struct StreamOutcome {
    data: Vec<u8>,
    reset: Option<u32>,
    ended: bool,
}

/// Sends `Daemon/Status` once per authority, each on its own stream of one connection,
/// and reads until every stream ended or was reset.
async fn status_with_authorities(socket: &Path, authorities: &[&str]) -> Vec<StreamOutcome> {
    use raw_h2::*;
    let mut conn = UnixStream::connect(socket).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for (i, authority) in authorities.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let block = header_block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/ferry.v1.Daemon/Status"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]);
        out.extend(frame(HEADERS, END_HEADERS, stream, &block));
        let request = grpc_message(&pb::StatusRequest {}.encode_to_vec());
        out.extend(frame(DATA, END_STREAM, stream, &request));
    }
    conn.write_all(&out).await.unwrap();

    let mut outcomes: HashMap<u32, StreamOutcome> = HashMap::new();
    let settled = |o: &HashMap<u32, StreamOutcome>| {
        o.values().filter(|s| s.ended || s.reset.is_some()).count() == authorities.len()
    };
    let read = async {
        while !settled(&outcomes) {
            let mut head = [0u8; 9];
            conn.read_exact(&mut head).await.expect("a frame");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            conn.read_exact(&mut payload)
                .await
                .expect("a frame's payload");
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap()
                }
                GOAWAY => panic!("the daemon closed the connection: {payload:?}"),
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    outcomes.entry(stream).or_default().reset = Some(code);
                }
                DATA => {
                    let o = outcomes.entry(stream).or_default();
                    o.data.extend(&payload);
                    o.ended |= flags & END_STREAM != 0;
                }
                HEADERS => outcomes.entry(stream).or_default().ended |= flags & END_STREAM != 0,
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("every stream ends");
    (0..authorities.len())
        .map(|i| outcomes.remove(&(1 + 2 * i as u32)).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_authority_of_a_unix_socket_is_answered() {
    let env = TestEnv::new();
    let daemon = env.start_daemon();
    let path = env.socket.to_str().unwrap().to_owned();
    // grpcurl 1.8 and grpc-java send the path; gRPC's C core (grpc-python) its
    // percent-encoding, without the leading slash.
    let encoded = path.trim_start_matches('/').replace('/', "%2F");
    let authorities = [path.as_str(), encoded.as_str(), "localhost"];
    let outcomes = status_with_authorities(&env.socket, &authorities).await;
    for (authority, outcome) in authorities.iter().zip(outcomes) {
        assert_eq!(outcome.reset, None, "{authority}: the stream was reset");
        assert!(outcome.data.len() > 5, "{authority}: {outcome:?}");
        let status = pb::StatusResponse::decode(&outcome.data[5..])
            .unwrap_or_else(|e| panic!("{authority}: not a StatusResponse: {e}"));
        assert_eq!(status.socket_path, path, "{authority}");
        assert_eq!(status.pid, daemon.pid(), "{authority}");
    }
}

/// Pages through `ListJobs` with `page_size` until the last page; returns the ids in the
/// order received and the number of pages.
async fn list_all(
    client: &mut pb::jobs_client::JobsClient<Channel>,
    page_size: i32,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_jobs(pb::ListJobsRequest {
                all: false,
                all_users: false,
                page_size,
                page_token: token,
            })
            .await
            .expect("a page fits a stock client's 4 MiB limit")
            .into_inner();
        pages += 1;
        ids.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            return (ids, pages);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_pages_through_50000_jobs() {
    const JOBS: usize = 50_000;
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let mut client = pb::jobs_client::JobsClient::new(stock_channel(&env.socket).await);

    let started = Instant::now();
    let creating = futures::stream::iter(0..JOBS)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let request = pb::CreateJobRequest {
                    display_name: format!("job {i:05}"),
                    description: "d".repeat(64),
                    ..Default::default()
                };
                client
                    .create_job(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .job
                    .unwrap()
                    .id
            }
        })
        .buffer_unordered(64);
    let mut created: Vec<String> = creating.collect().await;
    eprintln!("created {JOBS} jobs in {:?}", started.elapsed());
    created.sort(); // UUIDv7: creation order, as ListJobs answers

    let started = Instant::now();
    let (ids, pages) = list_all(&mut client, 1000).await;
    eprintln!(
        "listed {JOBS} jobs in {pages} pages in {:?}",
        started.elapsed()
    );
    assert_eq!(ids.len(), JOBS);
    assert_eq!(ids, created, "every job once, oldest first");
    assert_eq!(pages, JOBS / 1000, "pages of the largest size");

    // The default page size (0: 100).
    let (ids, pages) = list_all(&mut client, 0).await;
    assert_eq!(ids, created);
    assert_eq!(pages, JOBS / 100);
}
