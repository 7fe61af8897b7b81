//! What real clients (grpc-python, grpcurl, grpc-js) found, each against the real daemon
//! through a stock client where one was involved (tonic's generated clients with their
//! defaults, as `wire.rs`; the Python client's tests run grpc-python and grpcurl on the
//! same findings): data-query batches under gRPC's 4 MiB limit whatever `batch_size`
//! asks, a shutdown that does not wait for a client that stopped reading, a tus upload's
//! progress after a cut, reflection that sends a file's dependencies and serves
//! `google.rpc.ErrorInfo`, WQL's `job_type`, the Rust client's batch size, SOCKS5
//! proxies. `cargo test parity_` runs them.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{fast_retries, follow_states, manager, settle, DEADLINE};
use ferry_client::{
    CallFlags, CallId, CallStatus, FileSpec, JobProperties, JobState, JobType, MeteredPolicy,
    NewJob, Object, ObjectSink, QueryOptions, StatusCode, Value,
};
use ferry_proto::v1 as pb;
use ferry_testkit::{random_bytes, sha256_hex, Fault, TestEnv, TestServer};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// A plain tonic channel over the daemon's socket with tonic's defaults (a 4 MiB limit on
/// received messages, like every stock gRPC client); `window`: the HTTP/2 stream window,
/// when the test needs a small one.
async fn stock_channel(socket: &Path, window: Option<u32>) -> Channel {
    let socket = socket.to_owned();
    Endpoint::try_from("http://ferryd.local")
        .unwrap()
        .initial_stream_window_size(window)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to the test daemon")
}

/// A job of `n` files whose URLs are 40 KB long: `n` × 40 KB of `File` objects.
async fn job_of_long_urls(env: &TestEnv, m: &ferry_client::Manager, n: u32) {
    let job = m.create_job("long URLs").await.unwrap();
    let url = |i: u32| format!("http://127.0.0.1:9/{i}?{}", "q".repeat(40_000));
    for start in (0..n).step_by(20) {
        let specs = (start..(start + 20).min(n))
            .map(|i| FileSpec::new(url(i), env.files.join(format!("f{i}")).to_string_lossy()))
            .collect();
        job.add_files(specs).await.unwrap();
    }
}

/// `batch_size` 10 000 over 5 MB of objects: a stock client reads every batch (each
/// stopped before about 1 MiB) instead of failing with `RESOURCE_EXHAUSTED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_exec_query_batches_fit_a_stock_client_whatever_batch_size_asks() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    job_of_long_urls(&env, &m, 120).await;
    let mut queries =
        pb::queries_client::QueriesClient::new(stock_channel(&env.socket, None).await);
    let mut stream = queries
        .exec_query(pb::ExecQueryRequest {
            wql: "SELECT * FROM File".into(),
            flags: pb::CallFlag::SendStatus as u32,
            batch_size: 10_000,
        })
        .await
        .unwrap()
        .into_inner();
    let mut batches = Vec::new();
    let mut progress = Vec::new();
    let status = loop {
        let message = stream
            .message()
            .await
            .expect("every message fits the client's 4 MiB limit")
            .expect("the stream ends with a final status");
        match message.kind.unwrap() {
            pb::exec_query_response::Kind::Batch(b) => {
                assert!(
                    b.encoded_len() <= (1 << 20) + (64 << 10),
                    "a batch of about 1 MiB at most: {}",
                    b.encoded_len()
                );
                batches.push(b.objects.len());
            }
            pb::exec_query_response::Kind::Progress(p) => progress.push(p.done),
            pb::exec_query_response::Kind::Status(s) => break s,
        }
    };
    assert_eq!(status.code, pb::FinalStatusCode::Ok as i32, "{status:?}");
    assert_eq!(
        batches.iter().sum::<usize>(),
        120,
        "every file: {batches:?}"
    );
    assert!(batches.len() >= 5, "{batches:?}");
    assert_eq!(progress.last(), Some(&120));
    // The Rust client reads them all too, whatever batch size it asks.
    let options = QueryOptions {
        batch_size: 10_000,
        ..Default::default()
    };
    let all = m
        .exec_query_with("SELECT index FROM File", options)
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
}

/// A client that opened a data query and stopped reading it does not hold the
/// shutdown: with `drain_timeout` an hour, the daemon still stops (it waited the whole
/// `drain_timeout` for such a stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    let env = TestEnv::new();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(&config, "drain_timeout = \"1h\"\n").unwrap();
    let mut d = env.start_daemon_with(&["--config", config.to_str().unwrap()]);
    let m = manager(&env).await;
    // 12 MB of objects, far more than the client's 64 KiB window and what the daemon
    // buffers: the daemon's sending blocks once the client stops reading.
    job_of_long_urls(&env, &m, 300).await;
    let channel = stock_channel(&env.socket, Some(65_535)).await;
    let mut stream = pb::queries_client::QueriesClient::new(channel)
        .exec_query(pb::ExecQueryRequest {
            wql: "SELECT * FROM File".into(),
            flags: 0,
            batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the first batch");
    // The client reads no more (`stream` stays open until the end of the test).

    m.shutdown_daemon().await.unwrap();
    let exited = tokio::task::block_in_place(|| d.wait_exit(DEADLINE));
    assert!(exited.success(), "{exited:?}");
    let log = d.log_text();
    assert!(
        log.contains("closing the connections still open"),
        "the stalled client's connection was closed: {log}"
    );
    assert!(!log.contains("open calls did not finish"), "{log}");
    drop(stream);
}

/// A tus upload cut after 700 000 bytes: once the cut is known the job shows what the
/// server holds (700 000: one step back from the bytes sent), never 0, and goes on from
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_tus_progress_after_a_cut_is_the_server_offset_never_0() {
    const CUT: u64 = 700_000;
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.enable_tus("/files/");
    server.push_fault("/files/", Fault::CutAfter(CUT));
    let m = manager(&env).await;
    let data = random_bytes(3 << 20, 30);
    let src = env.files.join("tus.bin");
    std::fs::write(&src, &data).unwrap();
    let job = m
        .create_job_with(NewJob {
            job_type: JobType::Upload,
            ..NewJob::upload("tus progress", "tus")
        })
        .await
        .unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/files/"), src.to_str().unwrap())
        .await
        .unwrap();
    let watch = job.watch().await.unwrap();
    job.resume().await.unwrap();
    let (states, seen) = follow_states(watch, |s| {
        matches!(s, JobState::Transferred | JobState::Error)
    })
    .await;
    assert_eq!(states.last(), Some(&JobState::Transferred), "{states:?}");
    let shown: Vec<(JobState, u64)> = seen
        .iter()
        .map(|i| (i.state(), i.bytes_transferred))
        .collect();
    let cut = shown
        .iter()
        .position(|(s, _)| *s == JobState::TransientError)
        .unwrap_or_else(|| panic!("the cut was seen: {shown:?}"));
    assert_eq!(
        shown[cut].1, CUT,
        "after the cut: what the server holds: {shown:?}"
    );
    assert!(
        shown[cut..].iter().all(|(_, b)| *b >= CUT),
        "never below what the server confirmed after the cut (never 0): {shown:?}"
    );
    let uploads = server.tus_uploads();
    assert_eq!(uploads.len(), 1, "one upload, created once");
    assert_eq!(sha256_hex(&uploads[0].3), sha256_hex(&data));
}

/// Reflection as a stock client asks it: a symbol's file comes with its dependencies in
/// the same answer, google.rpc.ErrorInfo (the type of error details) is served, an
/// unknown symbol is an error answer on a stream that goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_stock_reflection_sends_dependencies_and_error_info() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = ServerReflectionClient::new(stock_channel(&env.socket, None).await)
        .server_reflection_info(tokio_stream_receiver(rx))
        .await
        .unwrap()
        .into_inner();
    let mut ask = async |m| {
        tx.send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        })
        .await
        .unwrap();
        replies.message().await.unwrap().unwrap().message_response
    };
    let files = |r: Option<MessageResponse>| -> Vec<(String, Vec<String>)> {
        match r {
            Some(MessageResponse::FileDescriptorResponse(f)) => f
                .file_descriptor_proto
                .iter()
                .map(|b| {
                    let f = prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap();
                    (f.name().to_string(), f.dependency)
                })
                .collect(),
            other => panic!("not files: {other:?}"),
        }
    };
    let jobs = files(ask(MessageRequest::FileContainingSymbol("ferry.v1.Jobs".into())).await);
    assert_eq!(
        jobs,
        [
            (
                "ferry/v1/jobs.proto".to_string(),
                vec!["ferry/v1/common.proto".to_string()]
            ),
            ("ferry/v1/common.proto".to_string(), vec![])
        ]
    );
    let info = files(
        ask(MessageRequest::FileContainingSymbol(
            "google.rpc.ErrorInfo".into(),
        ))
        .await,
    );
    let names: Vec<&str> = info.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "google/rpc/error_details.proto",
            "google/protobuf/duration.proto"
        ]
    );
    match ask(MessageRequest::FileContainingSymbol(
        "ferry.v1.Nothing".into(),
    ))
    .await
    {
        Some(MessageResponse::ErrorResponse(e)) => {
            assert_eq!(e.error_code, tonic::Code::NotFound as i32, "{e:?}")
        }
        other => panic!("not an error answer: {other:?}"),
    }
    match ask(MessageRequest::ListServices(String::new())).await {
        Some(MessageResponse::ListServicesResponse(l)) => {
            assert!(l.service.iter().any(|s| s.name == "ferry.v1.Queries"))
        }
        other => panic!("the stream goes on after an unknown symbol: {other:?}"),
    }
}

/// WQL names the job's type `job_type` as the API does (and still `type`); `yielding`
/// and `on_metered` are conditions like any property; a SELECT list shows `job_type` as
/// asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_wql_says_job_type_as_the_api_and_queries_yielding_and_on_metered() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let upload = m
        .create_job_with(NewJob::upload("an upload", "tus"))
        .await
        .unwrap();
    let download = m.create_job("a download").await.unwrap();
    download
        .set(JobProperties {
            on_metered: Some(MeteredPolicy::Continue),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids = |objects: &[Object]| -> Vec<String> {
        objects
            .iter()
            .map(|o| o.get_str("id").unwrap().to_string())
            .collect()
    };
    let uploads = m
        .exec_query("SELECT id, job_type FROM Job WHERE job_type = 'upload'")
        .await
        .unwrap();
    assert_eq!(ids(&uploads), [upload.id().to_string()]);
    assert_eq!(
        uploads[0].properties[1],
        ("job_type".to_string(), Value::String("upload".into())),
        "shown under the name the query used"
    );
    let downloads = m
        .exec_query("SELECT id FROM Job WHERE type = 'download'")
        .await
        .unwrap();
    assert_eq!(ids(&downloads), [download.id().to_string()]);
    let continuing = m
        .exec_query(
            "SELECT id, yielding, on_metered FROM Job WHERE yielding = FALSE \
             AND on_metered = 'continue' AND job_type <> 'upload'",
        )
        .await
        .unwrap();
    assert_eq!(ids(&continuing), [download.id().to_string()]);
    assert_eq!(
        continuing[0].get("on_metered"),
        Some(&Value::String("continue".into()))
    );
    let e = m
        .exec_query("SELECT id FROM Job WHERE kind = 'upload'")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("job_type (another name of type)"),
        "{e}"
    );
    let mut events = m
        .exec_notification_query_semisync(
            "SELECT TargetInstance.job_type FROM __InstanceModificationEvent \
             WHERE TargetInstance ISA 'Job' AND TargetInstance.job_type = 'upload'",
        )
        .await
        .unwrap();
    download
        .set(JobProperties {
            description: Some("not an upload".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    upload
        .set(JobProperties {
            description: Some("changed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let next = events.next(DEADLINE, 1).await.unwrap();
    let target = next.objects[0].get_object("TargetInstance").unwrap();
    assert_eq!(
        target.properties,
        [("job_type".to_string(), Value::String("upload".into()))]
    );
}

/// What an asynchronous query delivered: the size of each batch, each progress's count
/// of objects done, the final status.
type Delivered = (Vec<usize>, Vec<u64>, Option<StatusCode>);

/// Records what an asynchronous query delivers.
#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Delivered>>);

impl ObjectSink for Batches {
    fn indicate(&mut self, _: CallId, objects: &[Object]) {
        self.0.lock().unwrap().0.push(objects.len());
    }
    fn set_status(&mut self, _: CallId, status: CallStatus) {
        match status {
            CallStatus::Progress { done, .. } => self.0.lock().unwrap().1.push(done),
            CallStatus::Complete(s) => self.0.lock().unwrap().2 = Some(s.code),
            CallStatus::Reconnected => {}
        }
    }
}

/// The Rust client sends the batch size its caller asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_the_rust_client_sends_the_batch_size_asked_for() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    for i in 0..5 {
        m.create_job(&format!("batch {i}")).await.unwrap();
    }
    let sink = Batches::default();
    let options = QueryOptions {
        flags: CallFlags::SEND_STATUS,
        batch_size: 2,
    };
    m.exec_query_async_with("SELECT id FROM Job", options, sink.clone())
        .await
        .unwrap()
        .wait()
        .await;
    let (batches, progress, status) = sink.0.lock().unwrap().clone();
    assert_eq!(batches, [2, 2, 1]);
    assert_eq!(progress, [2, 4, 5]);
    assert_eq!(status, Some(StatusCode::Ok));
    let mut e = m
        .exec_query_semisync_with(
            "SELECT id FROM Job",
            QueryOptions {
                batch_size: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let next = e.next(DEADLINE, 100).await.unwrap();
    assert_eq!(next.objects.len(), 5);
}

/// A SOCKS5 server (RFC 1928: no authentication, `CONNECT`) on 127.0.0.1 that records
/// each destination asked for (`ipv4 A:P` or `name N:P`); it resolves `localhost` as
/// 127.0.0.1.
async fn socks5_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = asked.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(socks5_connection(client, record.clone()));
        }
    });
    (port, asked)
}

async fn socks5_connection(
    mut c: TcpStream,
    asked: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    c.read_exact(&mut methods).await?;
    assert!(
        head[0] == 5 && methods.contains(&0),
        "SOCKS5, no authentication"
    );
    c.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    c.read_exact(&mut request).await?;
    assert_eq!(request[..2], [5, 1], "a CONNECT");
    let (kind, host) = match request[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await?;
            ("ipv4", std::net::Ipv4Addr::from(a).to_string())
        }
        3 => {
            let mut n = [0u8; 1];
            c.read_exact(&mut n).await?;
            let mut name = vec![0u8; n[0] as usize];
            c.read_exact(&mut name).await?;
            ("name", String::from_utf8(name).unwrap())
        }
        other => panic!("address type {other}"),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    asked.lock().unwrap().push(format!("{kind} {host}:{port}"));
    let target = if host == "localhost" {
        "127.0.0.1"
    } else {
        &host
    };
    let mut upstream = TcpStream::connect((target, port)).await?;
    c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut c, &mut upstream).await?;
    Ok(())
}

/// Downloads through a SOCKS5 proxy: `socks5://` (ferryd resolves the name, the proxy is
/// asked for an address) and `socks5h://` (the proxy is asked for the name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_socks5_and_socks5h_proxies_carry_downloads() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(300_000, 31);
    server.add_file("/socks.bin", data.clone());
    let (proxy_port, asked) = socks5_server().await;
    let origin_port = server.addr().port();
    let m = manager(&env).await;
    for (scheme, host) in [("socks5", "127.0.0.1"), ("socks5h", "localhost")] {
        let job = m.create_job(scheme).await.unwrap();
        job.set(JobProperties {
            proxy: Some(format!("{scheme}://127.0.0.1:{proxy_port}")),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{scheme} proxy accepted: {e}"));
        let dest = env.files.join(format!("{scheme}.bin"));
        job.add_file(
            &format!("http://{host}:{origin_port}/socks.bin"),
            dest.to_str().unwrap(),
        )
        .await
        .unwrap();
        job.resume().await.unwrap();
        let info = settle(&job).await;
        assert_eq!(
            info.state(),
            JobState::Transferred,
            "{scheme}: {:?}",
            info.error
        );
        job.complete().await.unwrap();
        assert_eq!(
            sha256_hex(&std::fs::read(&dest).unwrap()),
            sha256_hex(&data)
        );
    }
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.contains(&format!("ipv4 127.0.0.1:{origin_port}")),
        "socks5: an address: {asked:?}"
    );
    assert!(
        asked.contains(&format!("name localhost:{origin_port}")),
        "socks5h: the name, for the proxy to resolve: {asked:?}"
    );
    let e = m
        .create_job("socks4")
        .await
        .unwrap()
        .set(JobProperties {
            proxy: Some(format!("socks4://127.0.0.1:{proxy_port}")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("socks5h://") && e.to_string().contains("SOCKS4"),
        "{e}"
    );
}

/// The receiving end of `rx` as a stream.
fn tokio_stream_receiver<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
