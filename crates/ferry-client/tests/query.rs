//! The WQL query API through the public interface, against a real daemon: the three call
//! forms of data queries, progress statuses, cancellation, event subscriptions (including a
//! subscriber that falls behind), malformed queries and asynchronous method calls.
//!
//! Starts the real `ferryd` (the test kit builds it when needed).

mod common;
use common::manager;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::{
    CallFlags, CallId, CallStatus, Enumerator, ErrorKind, Job, JobState, Manager, NewJob, Object,
    ObjectSink, StatusCode, Uuid, Value,
};
use ferry_testkit::{random_bytes, Mode, TestEnv, TestServer};
use futures::StreamExt;

const DEADLINE: Duration = Duration::from_secs(120);

/// Creates `n` suspended jobs named `q-0` … `q-{n-1}`, each with one `file://` file.
async fn make_jobs(m: &Manager, env: &TestEnv, n: usize) -> Vec<Job> {
    let src = env.files.join("source.bin");
    std::fs::write(&src, b"query test source").unwrap();
    let url = format!("file://{}", src.display());
    let mut jobs: Vec<(usize, Job)> = futures::stream::iter(0..n)
        .map(|i| {
            let m = m.clone();
            let url = url.clone();
            let dest = env.files.join(format!("dest-{i}.bin"));
            async move {
                let job = m.create_job(&format!("q-{i}")).await.expect("create job");
                job.add_file(&url, &dest.to_string_lossy())
                    .await
                    .expect("add file");
                (i, job)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    jobs.sort_by_key(|(i, _)| *i);
    jobs.into_iter().map(|(_, j)| j).collect()
}

fn ids(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o.get_str("id").expect("object has an id").to_string())
        .collect()
}

/// Pulls every object from `e`, `max` at a time; returns them and the final status code.
async fn drain(e: &mut Enumerator, max: usize) -> (Vec<Object>, StatusCode) {
    let end = Instant::now() + DEADLINE;
    let mut all = Vec::new();
    loop {
        assert!(Instant::now() < end, "the enumerator did not end in time");
        let next = e.next(Duration::from_secs(30), max).await.expect("next");
        assert!(next.objects.len() <= max, "next returned more than max");
        all.extend(next.objects);
        if next.done {
            return (
                all,
                next.status.expect("a done enumerator has a status").code,
            );
        }
    }
}

/// One sink call, as recorded.
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Indicate(Vec<Object>),
    Status(CallStatus),
}

/// Every sink call of one call, with its call id, in order.
type Calls = Arc<Mutex<Vec<(CallId, Rec)>>>;

/// A sink that records every call (with its call id) into a shared list.
struct Recorder {
    calls: Calls,
}

impl Recorder {
    fn new() -> (Recorder, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        (
            Recorder {
                calls: calls.clone(),
            },
            calls,
        )
    }
}

impl ObjectSink for Recorder {
    fn indicate(&mut self, call: CallId, objects: &[Object]) {
        self.calls
            .lock()
            .unwrap()
            .push((call, Rec::Indicate(objects.to_vec())));
    }

    fn set_status(&mut self, call: CallId, status: CallStatus) {
        self.calls.lock().unwrap().push((call, Rec::Status(status)));
    }
}

fn indicated(calls: &[(CallId, Rec)]) -> Vec<Object> {
    calls
        .iter()
        .filter_map(|(_, r)| match r {
            Rec::Indicate(o) => Some(o.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn completes(calls: &[(CallId, Rec)]) -> Vec<ferry_client::FinalStatus> {
    calls
        .iter()
        .filter_map(|(_, r)| match r {
            Rec::Status(CallStatus::Complete(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_objects_from_all_three_call_forms() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    let jobs = make_jobs(&m, &env, 250).await;

    for (wql, expected) in [
        ("SELECT * FROM Job", 250usize),
        // q-1, q-10..q-19, q-100..q-199
        (
            "SELECT id, state FROM Job WHERE display_name LIKE 'q-1%'",
            111,
        ),
    ] {
        let sync = ids(&m.exec_query(wql).await.expect("exec_query"));
        assert_eq!(sync.len(), expected, "{wql}");

        let mut e = m.exec_query_semisync(wql).await.expect("semisync");
        let (objects, code) = drain(&mut e, 7).await;
        assert_eq!(code, StatusCode::Ok, "{wql}");
        let semi = ids(&objects);

        let (sink, calls) = Recorder::new();
        let call = m
            .exec_query_async(wql, CallFlags::empty(), sink)
            .await
            .expect("exec_query_async");
        let call_id = call.id();
        call.wait().await;
        let calls = calls.lock().unwrap().clone();
        assert!(calls.iter().all(|(id, _)| *id == call_id));
        let finals = completes(&calls);
        assert_eq!(finals.len(), 1, "{wql}: {finals:?}");
        assert_eq!(finals[0].code, StatusCode::Ok, "{wql}");
        let asynced = ids(&indicated(&calls));

        assert_eq!(sync, semi, "{wql}: sync vs semisync");
        assert_eq!(sync, asynced, "{wql}: sync vs async");
    }

    // The projection returns only what was asked, and the LIKE filter is right.
    let projected = m
        .exec_query("SELECT id, state FROM Job WHERE display_name LIKE 'q-1%'")
        .await
        .unwrap();
    let want: std::collections::BTreeSet<String> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| i.to_string().starts_with('1'))
        .map(|(_, j)| j.id().to_string())
        .collect();
    let got: std::collections::BTreeSet<String> = ids(&projected).into_iter().collect();
    assert_eq!(got, want);
    for o in &projected {
        let names: Vec<&str> = o.properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "state"]);
        assert_eq!(o.get_str("state"), Some("suspended"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_statuses_only_when_asked() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    make_jobs(&m, &env, 250).await;

    let (sink, calls) = Recorder::new();
    m.exec_query_async("SELECT * FROM Job", CallFlags::SEND_STATUS, sink)
        .await
        .unwrap()
        .wait()
        .await;
    let calls = calls.lock().unwrap().clone();
    let mut delivered = 0u64;
    let mut last_done = 0u64;
    let mut progresses = 0;
    let mut expect_progress = false;
    for (i, (_, rec)) in calls.iter().enumerate() {
        match rec {
            Rec::Indicate(o) => {
                assert!(!expect_progress, "two batches without progress between");
                delivered += o.len() as u64;
                expect_progress = true;
            }
            Rec::Status(CallStatus::Progress { done, total }) => {
                assert!(expect_progress, "progress not after a batch: {calls:?}");
                expect_progress = false;
                progresses += 1;
                assert_eq!(*total, 250);
                assert!(*done > last_done, "done did not increase");
                assert_eq!(*done, delivered);
                last_done = *done;
            }
            Rec::Status(CallStatus::Complete(s)) => {
                assert_eq!(i, calls.len() - 1, "Complete is not the last call");
                assert_eq!(s.code, StatusCode::Ok);
            }
            Rec::Status(CallStatus::Reconnected) => {
                panic!("a query (not a subscription) reported a reconnection: {calls:?}")
            }
        }
    }
    assert_eq!(completes(&calls).len(), 1);
    assert!(
        progresses >= 2,
        "expected several batches, got {progresses}"
    );
    assert_eq!(last_done, 250);
    assert_eq!(delivered, 250);

    let (sink, calls) = Recorder::new();
    m.exec_query_async("SELECT * FROM Job", CallFlags::empty(), sink)
        .await
        .unwrap()
        .wait()
        .await;
    let calls = calls.lock().unwrap().clone();
    assert!(
        !calls
            .iter()
            .any(|(_, r)| matches!(r, Rec::Status(CallStatus::Progress { .. }))),
        "progress without SEND_STATUS"
    );
    assert_eq!(indicated(&calls).len(), 250);
    let finals = completes(&calls);
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].code, StatusCode::Ok);
    assert!(matches!(
        calls.last(),
        Some((_, Rec::Status(CallStatus::Complete(_))))
    ));
}

/// A sink whose `indicate` tells the test it started, then blocks until the test lets it go
/// (or drops its end of the channel). Records its calls; sets `dropped` when dropped.
struct BlockingSink {
    calls: Calls,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: std_mpsc::Receiver<()>,
    dropped: Arc<AtomicBool>,
}

impl ObjectSink for BlockingSink {
    fn indicate(&mut self, call: CallId, objects: &[Object]) {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        self.calls
            .lock()
            .unwrap()
            .push((call, Rec::Indicate(objects.to_vec())));
    }

    fn set_status(&mut self, call: CallId, status: CallStatus) {
        self.calls.lock().unwrap().push((call, Rec::Status(status)));
    }
}

impl Drop for BlockingSink {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_mid_stream_delivers_no_call_after_return_and_drops_sink() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    // No files needed: only many objects.
    futures::stream::iter(0..2000)
        .map(|i| {
            let m = m.clone();
            async move { m.create_job(&format!("c-{i}")).await.expect("create job") }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let calls = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicBool::new(false));
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = std_mpsc::channel();
    let sink = BlockingSink {
        calls: calls.clone(),
        entered: entered_tx,
        release: release_rx,
        dropped: dropped.clone(),
    };
    let call = m
        .exec_query_async("SELECT * FROM Job", CallFlags::SEND_STATUS, sink)
        .await
        .unwrap();

    // The first batch is being indicated (and blocks): the stream cannot have ended.
    tokio::time::timeout(DEADLINE, entered_rx.recv())
        .await
        .expect("indicate was not called")
        .expect("indicate was not called");
    assert!(!dropped.load(Ordering::SeqCst));

    // Start cancelling while indicate runs on a runtime thread: the first poll sends the
    // cancellation, then waits for the sink's call to return.
    let mut cancel = Box::pin(call.cancel());
    assert!(
        futures::poll!(&mut cancel).is_pending(),
        "cancel returned while indicate was still blocked"
    );
    assert!(!dropped.load(Ordering::SeqCst));
    // Let this indicate (and any later one, which would be a bug) run freely.
    let _ = release_tx.send(());
    drop(release_tx);
    tokio::time::timeout(DEADLINE, cancel)
        .await
        .expect("cancel did not return");

    assert!(dropped.load(Ordering::SeqCst), "the sink was not dropped");
    // Nothing else holds the record: no call can come after this point.
    assert_eq!(Arc::strong_count(&calls), 1);
    let calls = calls.lock().unwrap().clone();
    let finals = completes(&calls);
    assert_eq!(finals.len(), 1, "{finals:?}");
    match calls.last() {
        Some((_, Rec::Status(CallStatus::Complete(s)))) => {
            assert_eq!(s.code, StatusCode::CallCancelled, "{s:?}")
        }
        other => panic!("the last call was not the final status: {other:?}"),
    }
    let n = indicated(&calls).len();
    assert!(n > 0 && n < 2000, "{n} objects indicated");

    // The daemon is fine afterwards.
    assert_eq!(
        m.exec_query("SELECT id FROM Job").await.unwrap().len(),
        2000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_dropping_enumerator() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    make_jobs(&m, &env, 250).await;

    for _ in 0..3 {
        let mut e = m.exec_query_semisync("SELECT * FROM Job").await.unwrap();
        let next = e.next(DEADLINE, 7).await.unwrap();
        assert_eq!(next.objects.len(), 7);
        assert!(!next.done);
        drop(e);
    }
    assert_eq!(m.exec_query("SELECT * FROM Job").await.unwrap().len(), 250);
    let mut e = m.exec_query_semisync("SELECT id FROM Job").await.unwrap();
    let (objects, code) = drain(&mut e, 100).await;
    assert_eq!(code, StatusCode::Ok);
    assert_eq!(objects.len(), 250);
}

fn state_pair(event: &Object) -> (String, String) {
    let prev = event
        .get_object("PreviousInstance")
        .and_then(|o| o.get_str("state"))
        .unwrap_or("<none>")
        .to_string();
    let target = event
        .get_object("TargetInstance")
        .and_then(|o| o.get_str("state"))
        .unwrap_or("<none>")
        .to_string();
    (prev, target)
}

fn target_id(event: &Object) -> Option<&str> {
    event
        .get_object("TargetInstance")
        .and_then(|o| o.get_str("id"))
}

/// Reads events one at a time until one satisfies `stop`; returns all read.
async fn read_events_until(e: &mut Enumerator, stop: impl Fn(&Object) -> bool) -> Vec<Object> {
    let end = Instant::now() + DEADLINE;
    let mut all = Vec::new();
    loop {
        assert!(Instant::now() < end, "timed out reading events: {all:#?}");
        let next = e.next(Duration::from_secs(5), 1).await.unwrap();
        assert!(!next.done, "the subscription ended: {:?}", next.status);
        for o in next.objects {
            let hit = stop(&o);
            all.push(o);
            if hit {
                return all;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_query_sees_transitions_in_order() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/data.bin", random_bytes(256 * 1024, 5));
    server.set_mode(
        "/data.bin",
        Mode {
            throttle_bytes_per_sec: Some(1024 * 1024),
            ..Default::default()
        },
    );
    let m = manager(&env).await;

    const BASE: &str = "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job' \
                        AND TargetInstance.state <> PreviousInstance.state";
    let mut all = m.exec_notification_query_semisync(BASE).await.unwrap();
    let mut other = m
        .exec_notification_query_semisync(&format!(
            "{BASE} AND TargetInstance.display_name = 'other'"
        ))
        .await
        .unwrap();

    let job = m.create_job("events-main").await.unwrap();
    let dest = env.files.join("data.bin");
    job.add_file(&server.url("/data.bin"), &dest.to_string_lossy())
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = job.wait().await.unwrap();
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    job.complete().await.unwrap();

    let id = job.id().to_string();
    let events = read_events_until(&mut all, |o| {
        target_id(o) == Some(id.as_str()) && state_pair(o).1 == "acknowledged"
    })
    .await;
    let pairs: Vec<(String, String)> = events
        .iter()
        .filter(|o| target_id(o) == Some(id.as_str()))
        .map(state_pair)
        .collect();
    let want: Vec<(String, String)> = [
        ("suspended", "queued"),
        ("queued", "connecting"),
        ("connecting", "transferring"),
        ("transferring", "transferred"),
        ("transferred", "acknowledged"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs, want);
    for o in &events {
        assert_eq!(o.class, "__InstanceModificationEvent");
    }

    // A sentinel the filtered subscription does match: everything it reports before it
    // would be a wrongly matched event of the main job.
    let sentinel = m.create_job("other").await.unwrap();
    sentinel.cancel().await.unwrap();
    let sid = sentinel.id().to_string();
    let seen = read_events_until(&mut other, |o| target_id(o) == Some(sid.as_str())).await;
    assert_eq!(seen.len(), 1, "the filtered subscription saw: {seen:#?}");
    assert_eq!(
        state_pair(&seen[0]),
        ("suspended".into(), "cancelled".into())
    );
    assert_eq!(
        seen[0]
            .get_object("TargetInstance")
            .and_then(|o| o.get_str("display_name")),
        Some("other")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_and_deletion_events() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    let mut e = m
        .exec_notification_query_semisync(
            "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'",
        )
        .await
        .unwrap();
    let job = m.create_job("created").await.unwrap();
    let id = job.id().to_string();
    let events = read_events_until(&mut e, |o| target_id(o) == Some(id.as_str())).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let ev = &events[0];
    assert_eq!(ev.class, "__InstanceCreationEvent");
    assert!(ev.get("PreviousInstance").is_none());
    let target = ev.get_object("TargetInstance").unwrap();
    assert_eq!(target.get_str("display_name"), Some("created"));
    assert_eq!(target.get_str("state"), Some("suspended"));
    assert!(matches!(ev.get("TIME_CREATED"), Some(Value::Integer(_))));

    // A modification is not a creation: the next creation event is the next job's.
    job.cancel().await.unwrap();
    let second = m.create_job("second").await.unwrap();
    let sid = second.id().to_string();
    let events = read_events_until(&mut e, |o| target_id(o) == Some(sid.as_str())).await;
    assert_eq!(events.len(), 1, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_cut_off_with_overflow_status() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/big.bin", random_bytes(512 * 1024, 9));
    let m = manager(&env).await;

    // Never read until the end.
    let mut slow = m
        .exec_notification_query_semisync(
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job'",
        )
        .await
        .unwrap();

    let download = m.create_job("download").await.unwrap();
    let dest = env.files.join("big.bin");
    download
        .add_file(&server.url("/big.bin"), &dest.to_string_lossy())
        .await
        .unwrap();
    download.resume().await.unwrap();

    // Large events (long name and description) so that the transport's flow-control windows
    // hold only a few of them: the daemon-side buffer must overflow.
    let long_name = "n".repeat(4000);
    let long_desc = "d".repeat(4000);
    futures::stream::iter(0..1500)
        .map(|i| {
            let m = m.clone();
            let mut spec = NewJob::download(format!("{i}-{long_name}"));
            spec.display_name.truncate(4000);
            spec.description = long_desc.clone();
            async move {
                let job = m.create_job_with(spec).await.expect("create job");
                job.cancel().await.expect("cancel job");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    // The daemon is not held up by the subscriber.
    let info = tokio::time::timeout(DEADLINE, download.wait())
        .await
        .expect("the download did not finish")
        .unwrap();
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    download.complete().await.unwrap();

    let (events, code) = drain(&mut slow, 64).await;
    assert_eq!(code, StatusCode::EventsDropped);
    assert!(!events.is_empty(), "nothing was buffered");
    for e in &events {
        assert_eq!(e.class, "__InstanceModificationEvent");
    }
    // A fresh subscription still works.
    let mut fresh = m
        .exec_notification_query_semisync(
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job'",
        )
        .await
        .unwrap();
    let job = m.create_job("after").await.unwrap();
    job.cancel().await.unwrap();
    let id = job.id().to_string();
    read_events_until(&mut fresh, |o| target_id(o) == Some(id.as_str())).await;
}

/// A sink that must never be called.
struct NeverCalled(Arc<AtomicBool>);

impl ObjectSink for NeverCalled {
    fn indicate(&mut self, _: CallId, _: &[Object]) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn set_status(&mut self, _: CallId, _: CallStatus) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_errors() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    m.create_job("x").await.unwrap();

    for wql in ["SELECT * FROM Nope", "SELECT * FROM Job WHERE"] {
        let err = m.exec_query(wql).await.expect_err(wql);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{wql}: {err}");
        assert!(err.to_string().contains("position"), "{wql}: {err}");

        let err = m.exec_query_semisync(wql).await.expect_err(wql);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{wql}: {err}");

        let called = Arc::new(AtomicBool::new(false));
        let err = m
            .exec_query_async(wql, CallFlags::SEND_STATUS, NeverCalled(called.clone()))
            .await
            .expect_err(wql);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{wql}: {err}");
        assert!(err.to_string().contains("position"), "{wql}: {err}");
        assert!(!called.load(Ordering::SeqCst), "{wql}: the sink was called");
    }
    // The sink of a failed call has already been dropped: nothing else holds the flag.
    let called = Arc::new(AtomicBool::new(false));
    let _ = m
        .exec_query_async(
            "SELECT FROM",
            CallFlags::empty(),
            NeverCalled(called.clone()),
        )
        .await
        .expect_err("malformed");
    assert_eq!(Arc::strong_count(&called), 1);
    assert!(!called.load(Ordering::SeqCst));

    // An event query is not a data query, and the reverse.
    let err = m
        .exec_query("SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'")
        .await
        .expect_err("event query as data query");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = m
        .exec_notification_query_semisync("SELECT * FROM Job")
        .await
        .expect_err("data query as event query");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    assert_eq!(m.exec_query("SELECT * FROM Job").await.unwrap().len(), 1);
}

async fn call_method(m: &Manager, job: &Job, method: &str) -> Vec<(CallId, Rec)> {
    let (sink, calls) = Recorder::new();
    let call = m.exec_method_async(job, method, sink).await.unwrap();
    let id = call.id();
    tokio::time::timeout(DEADLINE, call.wait())
        .await
        .expect("the method call did not end");
    let calls = calls.lock().unwrap().clone();
    assert!(calls.iter().all(|(c, _)| *c == id));
    calls
}

/// The one job a successful method call indicated, checking the call's shape.
fn method_result(calls: &[(CallId, Rec)]) -> Object {
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let job = match &calls[0].1 {
        Rec::Indicate(o) if o.len() == 1 => o[0].clone(),
        other => panic!("expected one job, got {other:?}"),
    };
    match &calls[1].1 {
        Rec::Status(CallStatus::Complete(s)) => assert_eq!(s.code, StatusCode::Ok, "{s:?}"),
        other => panic!("expected the final status, got {other:?}"),
    }
    assert_eq!(job.class, "Job");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_method_async_resume_and_cancel() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/slow.bin", random_bytes(4 * 1024 * 1024, 3));
    server.set_mode(
        "/slow.bin",
        Mode {
            throttle_bytes_per_sec: Some(64 * 1024),
            ..Default::default()
        },
    );
    let m = manager(&env).await;
    let job = m.create_job("method").await.unwrap();
    job.add_file(
        &server.url("/slow.bin"),
        &env.files.join("slow.bin").to_string_lossy(),
    )
    .await
    .unwrap();
    let id = job.id().to_string();

    let o = method_result(&call_method(&m, &job, "Resume").await);
    assert_eq!(o.get_str("id"), Some(id.as_str()));
    let state = o.get_str("state").expect("state").to_string();
    assert!(
        ["queued", "connecting", "transferring"].contains(&state.as_str()),
        "after Resume: {state}"
    );

    let o = method_result(&call_method(&m, &job, "Suspend").await);
    assert_eq!(o.get_str("id"), Some(id.as_str()));
    assert_eq!(o.get_str("state"), Some("suspended"));
    assert_eq!(job.info().await.unwrap().state(), JobState::Suspended);

    let calls = call_method(&m, &job, "Explode").await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    match &calls[0].1 {
        Rec::Status(CallStatus::Complete(s)) => {
            assert_eq!(s.code, StatusCode::Failed, "{s:?}");
            assert!(s.message.contains("Explode") || s.message.contains("explode"));
        }
        other => panic!("expected a failed final status, got {other:?}"),
    }
    assert_eq!(job.info().await.unwrap().state(), JobState::Suspended);

    let o = method_result(&call_method(&m, &job, "Cancel").await);
    assert_eq!(o.get_str("id"), Some(id.as_str()));
    assert_eq!(o.get_str("state"), Some("cancelled"));
    assert_eq!(job.info().await.unwrap().state(), JobState::Cancelled);

    // A method on a job that is gone fails in the sink too.
    let gone = m.job_unchecked(Uuid::new_v4());
    let calls = call_method(&m, &gone, "Resume").await;
    assert!(matches!(
        calls.as_slice(),
        [(_, Rec::Status(CallStatus::Complete(s)))] if s.code == StatusCode::Failed
    ));
}
