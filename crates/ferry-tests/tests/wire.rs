//! The wire as any gRPC client sees it, through tonic's generated clients (`cargo test
//! stock_client` runs these with `stock_client.rs`): the services listed by reflection over
//! both protocol versions, listings in pages that fit gRPC's usual 4 MiB limit (and the
//! client library reading every page), streams that a shutdown ends with `UNAVAILABLE`
//! (and the client library treating that as "the daemon went away"), and
//! `GetNotifyInterface`.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{manager, DEADLINE};
use ferry_client::{
    CallId, CallStatus, Callback, ErrorKind, FileSpec, FinalStatus, NewJob, Object, ObjectSink,
    StatusCode,
};
use ferry_proto::v1 as pb;
use ferry_testkit::{wait_until_future, TestEnv};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use prost::Message;
use tonic::transport::{Channel, Endpoint, Uri};

/// An event query every job change matches.
const EVENTS: &str = "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job'";

/// A plain tonic channel over the daemon's socket, with tonic's defaults (a 4 MiB limit
/// on received messages, like most gRPC implementations), as a client in any language
/// would have.
async fn raw_channel(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::try_from("http://ferryd.local")
        .unwrap()
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

/// Asks reflection (protocol version `$ver`) what a client such as grpcurl asks: the
/// services, the file that declares `ferry.v1.Notifications` (which comes with its
/// dependencies), then any dependency still missing by name. Returns the service names and every file received, each with the
/// files it depends on.
macro_rules! reflect {
    ($ver:ident, $channel:expr) => {{
        use tonic_reflection::pb::$ver::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let ask = |m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let mut replies = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream_receiver(rx))
            .await
            .expect("reflection answers")
            .into_inner();
        let mut next = async |m| {
            tx.send(ask(m)).await.unwrap();
            replies.message().await.unwrap().unwrap().message_response
        };
        let services: Vec<String> = match next(MessageRequest::ListServices(String::new())).await {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("not a service list: {other:?}"),
        };
        let mut files: Vec<(String, Vec<String>)> = Vec::new();
        let mut wanted = vec![MessageRequest::FileContainingSymbol(
            "ferry.v1.Notifications".into(),
        )];
        while let Some(request) = wanted.pop() {
            match next(request).await {
                Some(MessageResponse::FileDescriptorResponse(f)) => {
                    // The file asked for comes first, with the dependencies this stream
                    // has not received yet; any still missing is asked for by name.
                    for bytes in &f.file_descriptor_proto {
                        let file =
                            prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
                        files.push((file.name().to_string(), file.dependency.clone()));
                    }
                    let missing: Vec<String> = files
                        .iter()
                        .flat_map(|(_, deps)| deps.iter())
                        .filter(|d| !files.iter().any(|(n, _)| n == *d))
                        .cloned()
                        .collect();
                    wanted.extend(missing.into_iter().map(MessageRequest::FileByFilename));
                }
                other => panic!("not a file descriptor: {other:?}"),
            }
        }
        (services, files)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_reflection_serves_every_service_over_v1_and_v1alpha() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let (v1, v1_files) = reflect!(v1, raw_channel(&env.socket).await);
    let (v1alpha, v1alpha_files) = reflect!(v1alpha, raw_channel(&env.socket).await);
    for (version, services) in [("v1", &v1), ("v1alpha", &v1alpha)] {
        for s in pb::SERVICE_NAMES {
            assert!(
                services.iter().any(|n| n == s),
                "{version} lists {s}: {services:?}"
            );
        }
        assert!(
            services.iter().all(|n| !n.ends_with(".Ferry")),
            "the old single service is gone: {services:?}"
        );
    }
    assert!(v1
        .iter()
        .any(|n| n == "grpc.reflection.v1.ServerReflection"));
    assert!(v1alpha
        .iter()
        .any(|n| n == "grpc.reflection.v1alpha.ServerReflection"));
    for files in [&v1_files, &v1alpha_files] {
        assert_eq!(
            files,
            &[
                (
                    "ferry/v1/notifications.proto".to_string(),
                    vec!["ferry/v1/common.proto".to_string()]
                ),
                ("ferry/v1/common.proto".to_string(), vec![]),
            ],
            "the file declaring the service, then its dependency (in the same answer)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_listings_come_in_pages_under_4_mib_and_the_client_reads_every_page() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let mut raw = pb::jobs_client::JobsClient::new(raw_channel(&env.socket).await);

    // 120 files with 40 KB URLs: about 5 MB of files, more than one 4 MiB message.
    let job = m.create_job("long URLs").await.unwrap();
    let n = 120u32;
    let url = |i: u32| format!("http://127.0.0.1:9/{i}?{}", "q".repeat(40_000));
    for start in (0..n).step_by(20) {
        let specs = (start..start + 20)
            .map(|i| FileSpec::new(url(i), env.files.join(format!("f{i}")).to_string_lossy()))
            .collect();
        job.add_files(specs).await.unwrap();
    }
    let mut token = String::new();
    let mut indices = Vec::new();
    let mut pages = 0;
    loop {
        let page = raw
            .list_files(pb::ListFilesRequest {
                job_id: job.id().to_string(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .expect("each page fits tonic's default 4 MiB limit")
            .into_inner();
        assert!(
            page.encoded_len() <= (1 << 20) + (64 << 10),
            "a page holds about 1 MiB at most: {}",
            page.encoded_len()
        );
        assert!(!page.files.is_empty());
        pages += 1;
        indices.extend(page.files.iter().map(|f| f.index));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(
        indices,
        (0..n).collect::<Vec<_>>(),
        "every file once, in order"
    );
    let files = job.files().await.unwrap();
    assert_eq!(
        files.iter().map(|f| f.index).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "the client library reads every page"
    );
    assert!(files.iter().all(|f| f.remote_url.len() > 40_000));

    // Jobs: 300 with 8 KB of name and description each take several pages even at the
    // largest page size; oldest first.
    let mut created = vec![job.id()];
    for i in 0..300 {
        let mut spec = NewJob::download(format!("{i:04}{}", "n".repeat(4000)));
        spec.description = "d".repeat(4000);
        created.push(m.create_job_with(spec).await.unwrap().id());
    }
    let first = raw
        .list_jobs(pb::ListJobsRequest {
            all: false,
            all_users: false,
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.jobs.len() < created.len() && !first.next_page_token.is_empty());
    let listed: Vec<_> = m.jobs(false).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(listed, created, "every job, oldest first, across pages");

    // Small pages, and final jobs only with `all`.
    for id in &created[..3] {
        m.job_unchecked(*id).cancel().await.unwrap();
    }
    for (all, expected) in [(false, &created[3..]), (true, &created[..])] {
        let mut token = String::new();
        let mut ids = Vec::new();
        loop {
            let page = raw
                .list_jobs(pb::ListJobsRequest {
                    all,
                    all_users: false,
                    page_size: 7,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.jobs.len() <= 7);
            ids.extend(
                page.jobs
                    .iter()
                    .map(|j| j.id.parse::<ferry_client::Uuid>().unwrap()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(ids, expected, "all = {all}");
    }

    // Tokens are checked.
    let token_of_active = raw
        .list_jobs(pb::ListJobsRequest {
            all: false,
            all_users: false,
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let with_all = pb::ListJobsRequest {
        all: true,
        all_users: false,
        page_size: 1,
        page_token: token_of_active,
    };
    refused(raw.list_jobs(with_all).await, "a token of another listing");
    let garbage = pb::ListJobsRequest {
        all: false,
        all_users: false,
        page_size: 1,
        page_token: "c0ffee".into(),
    };
    refused(raw.list_jobs(garbage).await, "a made-up token");
    let negative = pb::ListJobsRequest {
        all: false,
        all_users: false,
        page_size: -1,
        page_token: String::new(),
    };
    refused(raw.list_jobs(negative).await, "a negative page size");
    let files_token = raw
        .list_files(pb::ListFilesRequest {
            job_id: job.id().to_string(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let other_job = pb::ListFilesRequest {
        job_id: created[5].to_string(),
        page_size: 1,
        page_token: files_token,
    };
    refused(
        raw.list_files(other_job).await,
        "a token of another job's files",
    );
}

/// Asserts that a call was refused as an invalid argument.
fn refused<T>(r: Result<tonic::Response<T>, tonic::Status>, what: &str) {
    match r {
        Err(s) => assert_eq!(s.code(), tonic::Code::InvalidArgument, "{what}: {s:?}"),
        Ok(_) => panic!("{what} was accepted"),
    }
}

/// A callback object that does nothing.
struct Nop;

#[async_trait::async_trait]
impl Callback for Nop {}

fn same_object(a: &Arc<dyn Callback>, b: &Arc<dyn Callback>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Records the final statuses an asynchronous call reports.
struct Finals(Arc<Mutex<Vec<FinalStatus>>>);

impl ObjectSink for Finals {
    fn indicate(&mut self, _: CallId, _: &[Object]) {}
    fn set_status(&mut self, _: CallId, status: CallStatus) {
        if let CallStatus::Complete(s) = status {
            self.0.lock().unwrap().push(s);
        }
    }
}

/// Reads a raw stream until it ends; returns how it ended (`None`: OK).
async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Option<tonic::Status> {
    loop {
        match tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(s) => return Some(s),
        }
    }
}

fn assert_shutdown_status(end: Option<tonic::Status>, stream: &str) {
    let s = end.unwrap_or_else(|| panic!("{stream} ended OK instead of UNAVAILABLE"));
    assert_eq!(s.code(), tonic::Code::Unavailable, "{stream}: {s:?}");
    assert!(s.message().contains("shutting down"), "{stream}: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_stream_ends_unavailable_at_shutdown_and_the_client_knows_the_daemon_went_away(
) {
    let env = TestEnv::new();
    let mut d = env.start_daemon();
    // A client that does not wait for the daemon to come back (riding out a restart is
    // `cargo test rides_out`): the first sign of the shutdown is what it reports.
    let m = ferry_client::Manager::connect_with(ferry_client::ConnectOptions {
        socket: env.socket.clone(),
        autostart: false,
        reconnect_timeout: None,
        ..Default::default()
    })
    .await
    .expect("connect to the test daemon");
    let job = m.create_job("watched").await.unwrap();
    let job_id = job.id().to_string();

    // On the wire: WatchJob, Connect and ExecNotificationQuery, open.
    let channel = raw_channel(&env.socket).await;
    let mut raw_watch = pb::jobs_client::JobsClient::new(channel.clone())
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(raw_watch.message().await.unwrap().is_some(), "the job now");
    let hello = pb::ConnectRequest {
        kind: Some(pb::connect_request::Kind::Hello(pb::Hello { pid: 1 })),
    };
    // The request stream stays open as long as `_open` lives.
    let (_open, rx) = tokio::sync::mpsc::channel(1);
    let outbound = futures::stream::iter([hello]).chain(tokio_stream_receiver(rx));
    let mut raw_connect = pb::notifications_client::NotificationsClient::new(channel.clone())
        .connect(outbound)
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        raw_connect.message().await.unwrap().unwrap().kind,
        Some(pb::connect_response::Kind::Welcome(_))
    ));
    let mut raw_events = pb::queries_client::QueriesClient::new(channel)
        .exec_notification_query(pb::ExecNotificationQueryRequest { wql: EVENTS.into() })
        .await
        .unwrap()
        .into_inner();

    // Through the client library: a watch, both forms of event query, a callback object.
    let mut watch = Box::pin(job.watch().await.unwrap());
    assert!(watch.next().await.unwrap().is_ok());
    let mut events = m.exec_notification_query_semisync(EVENTS).await.unwrap();
    let finals = Arc::new(Mutex::new(Vec::new()));
    let call = m
        .exec_notification_query_async(EVENTS, Finals(finals.clone()))
        .await
        .unwrap();
    let first: Arc<dyn Callback> = Arc::new(Nop);
    job.set_notify_interface(Some(first.clone())).await.unwrap();

    m.shutdown_daemon().await.unwrap();

    assert_shutdown_status(end_of(&mut raw_watch).await, "WatchJob");
    assert_shutdown_status(end_of(&mut raw_connect).await, "Connect");
    assert_shutdown_status(end_of(&mut raw_events).await, "ExecNotificationQuery");

    let end = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .unwrap()
        .expect("the watch reports how it ended");
    let e = end.expect_err("a shutdown is not a normal end of a watch");
    assert!(matches!(e, ferry_client::Error::DaemonGone { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.to_string().contains("shutting down"), "{e}");
    assert!(watch.next().await.is_none());

    let next = events.next(DEADLINE, 10).await.unwrap();
    assert!(next.done, "{next:?}");
    let status = next.status.unwrap();
    assert_eq!(status.code, StatusCode::ShuttingDown, "{status:?}");
    assert!(status.message.contains("shutting down"), "{status:?}");

    tokio::time::timeout(DEADLINE, call.wait()).await.unwrap();
    let finals = finals.lock().unwrap().clone();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0].code, StatusCode::ShuttingDown, "{finals:?}");

    let exited = tokio::task::block_in_place(|| d.wait_exit(DEADLINE));
    assert!(exited.success(), "{exited:?}");

    // A new daemon on the same socket: the same manager registers a callback object again
    // on a new callback channel (the old one went away with the old daemon).
    let _d2 = tokio::task::block_in_place(|| env.start_daemon());
    let second: Arc<dyn Callback> = Arc::new(Nop);
    wait_until_future(
        DEADLINE,
        "a callback object set after the restart",
        || async { job.set_notify_interface(Some(second.clone())).await.ok() },
    )
    .await;
    let now = job.notify_interface().await.unwrap().expect("an interface");
    let object = now.object.expect("exported by this manager");
    assert!(same_object(&object, &second));
}

/// The receiving end of `rx` as a stream.
fn tokio_stream_receiver<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_notify_interface_reports_the_callback_object_until_its_process_goes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let owner = manager(&env).await;
    let other = manager(&env).await;
    let job = owner.create_job("notified").await.unwrap();
    let seen_by_other = other.job_unchecked(job.id());

    assert!(job.notify_interface().await.unwrap().is_none(), "none set");
    let object: Arc<dyn Callback> = Arc::new(Nop);
    job.set_notify_interface(Some(object.clone()))
        .await
        .unwrap();
    let mine = job.notify_interface().await.unwrap().expect("set");
    assert!(same_object(mine.object.as_ref().unwrap(), &object));
    let theirs = seen_by_other
        .notify_interface()
        .await
        .unwrap()
        .expect("set");
    assert_eq!(
        (theirs.channel_id, theirs.object_id),
        (mine.channel_id, mine.object_id)
    );
    assert!(
        theirs.object.is_none(),
        "another manager cannot call it itself"
    );

    job.set_notify_interface(None).await.unwrap();
    assert!(
        seen_by_other.notify_interface().await.unwrap().is_none(),
        "cleared"
    );

    job.set_notify_interface(Some(object)).await.unwrap();
    assert!(seen_by_other.notify_interface().await.unwrap().is_some());
    // The process that exported it disconnects: the daemon forgets the object.
    drop(job);
    drop(owner);
    wait_until_future(DEADLINE, "the interface to go with its channel", || async {
        seen_by_other
            .notify_interface()
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    let unknown = other.job_unchecked(ferry_client::Uuid::now_v7());
    let e = unknown.notify_interface().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}
