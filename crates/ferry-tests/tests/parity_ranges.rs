//! BITS parity, ranges (issue 30, row 2): files added with ranges
//! (`IBackgroundCopyJob3::AddFileWithRanges`, `IBackgroundCopyFile2::GetFileRanges`),
//! on-demand files (`IBackgroundCopyFile6::RequestFileRanges`, `UpdateDownloadPosition`,
//! `GetFilledFileRanges`) and the `FILE_RANGES_TRANSFERRED` notification, against the
//! local test server: which `Range` requests it sees, where the bytes land, a cut, a
//! server that ignores `Range`, refused ranges, and the command line.

mod common;

use std::sync::Arc;

use common::*;
use ferry_client::{
    Callback, CallbackResult, ErrorContext, ErrorKind, File, FileRange, FileSpec, Job, JobState,
    NotifyFlags, LENGTH_TO_EOF,
};
use ferry_testkit::{random_bytes, Fault, Mode, TestEnv, TestServer};
use tokio::sync::mpsc;

/// The `Range` headers of the `GET`s the server received for `path`, in order.
fn get_ranges(server: &TestServer, path: &str) -> Vec<Option<String>> {
    server
        .requests(path)
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.header("range").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_add_file_with_ranges_fetches_only_those_bytes_packed_in_their_order() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(300_000, 30);
    server.add_file("/delta.bin", data.clone());
    let dest = env.files.join("delta.bin");
    let ranges = [
        FileRange::new(100_000, 1000),
        FileRange::new(5, 10),
        FileRange::to_eof(250_000),
    ];

    let job = m.create_job("ranges").await.unwrap();
    let added = job
        .add_file_with_ranges(&server.url("/delta.bin"), s(&dest), &ranges)
        .await
        .unwrap();
    assert_eq!(added.ranges, ranges, "GetFileRanges: as given, in order");
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);

    let mut asked = get_ranges(&server, "/delta.bin");
    asked.sort();
    assert_eq!(
        asked,
        vec![
            Some("bytes=100000-100999".to_string()),
            Some("bytes=250000-299999".to_string()),
            Some("bytes=5-14".to_string()),
        ],
        "only the ranges were asked for, each once"
    );
    let file = &job.files().await.unwrap()[0];
    assert_eq!(file.bytes_total, Some(1000 + 10 + 50_000));
    assert_eq!(
        file.filled_ranges,
        vec![
            FileRange::new(5, 10),
            FileRange::new(100_000, 1000),
            FileRange::new(250_000, 50_000),
        ],
        "GetFilledFileRanges: every range, in remote offsets"
    );
    job.complete().await.unwrap();
    let mut expected = data[100_000..101_000].to_vec();
    expected.extend_from_slice(&data[5..15]);
    expected.extend_from_slice(&data[250_000..]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        expected,
        "the ranges, one after the other in the order given (BITS's layout)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_a_cut_range_resumes_where_its_bytes_stopped() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(2 << 20, 31);
    server.add_file("/cut.bin", data.clone());
    // The first request is the probe (HEAD): a harmless fault for it, then the cut.
    server.push_fault("/cut.bin", Fault::HugeHeader(1));
    server.push_fault("/cut.bin", Fault::CutAfter(300_000));
    let dest = env.files.join("cut.bin");

    let job = m.create_job("ranges cut").await.unwrap();
    fast_retries(&job).await;
    job.add_file_with_ranges(
        &server.url("/cut.bin"),
        s(&dest),
        &[FileRange::new(200_000, 1_000_000)],
    )
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert!(info.error_count >= 1, "the cut was an error: {info:?}");

    let gets: Vec<_> = server
        .requests("/cut.bin")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(
        range_starts(&gets),
        vec![Some(200_000), Some(500_000)],
        "the range, cut after 300 000 bytes, then its rest from exactly there"
    );
    assert_eq!(
        gets[1].header("if-range"),
        server.etag("/cut.bin").as_deref(),
        "the rest is asked under the validator the first bytes came with"
    );
    job.complete().await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), &data[200_000..1_200_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_a_server_that_ignores_range_fails_the_job_without_writing_its_answer() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/whole.bin", random_bytes(100_000, 32));
    server.set_mode(
        "/whole.bin",
        Mode {
            ignore_range: true,
            ..Default::default()
        },
    );
    let job = m.create_job("ranges ignored").await.unwrap();
    let f = job
        .add_file_with_ranges(
            &server.url("/whole.bin"),
            s(&env.files.join("whole.bin")),
            &[FileRange::new(1000, 500)],
        )
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let error = info.error.expect("the job's error");
    assert_eq!(error.code, "insufficient_range_support", "{error:?}");
    assert_eq!(error.context, Some(ErrorContext::RemoteFile));
    assert!(error.message.contains("200 OK"), "{}", error.message);
    let part = std::fs::read(&f.temporary_path).expect("the part file");
    assert_eq!(part.len(), 500, "the part file is as long as the range");
    assert!(
        part.iter().all(|b| *b == 0),
        "not a byte of the whole-file answer was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_invalid_ranges_are_refused_with_invalid_argument() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let job = m.create_job("bad ranges").await.unwrap();
    let url = "http://127.0.0.1:9/f";
    let dest = env.files.join("f");
    let refused = |spec: FileSpec, words: &'static str| {
        let job = job.clone();
        async move {
            let e = job.add_files(vec![spec]).await.expect_err(words);
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains(words), "'{words}' not in: {e}");
        }
    };
    let spec = || FileSpec::new(url, s(&dest));
    refused(
        spec().ranges([FileRange::new(0, 100), FileRange::new(50, 10)]),
        "ranges 0 (0:100) and 1 (50:10) overlap",
    )
    .await;
    refused(
        spec().ranges([FileRange::to_eof(100), FileRange::new(5000, 1)]),
        "overlap",
    )
    .await;
    refused(spec().ranges([FileRange::new(10, 0)]), "is empty").await;
    refused(
        spec().ranges([FileRange::new(u64::MAX - 5, 10)]),
        "past 2^64",
    )
    .await;
    refused(
        FileSpec::new("file:///etc/hostname", s(&dest)).ranges([FileRange::new(0, 1)]),
        "need an http or https URL",
    )
    .await;
    refused(
        spec().sha256("a".repeat(64)).ranges([FileRange::new(0, 1)]),
        "cannot have one",
    )
    .await;
    assert!(job.files().await.unwrap().is_empty(), "nothing was added");
    // RequestFileRanges is for on-demand files only.
    job.add_file(url, s(&dest)).await.unwrap();
    let e = job
        .request_file_ranges(0, &[FileRange::new(0, 1)])
        .await
        .expect_err("not on demand");
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("not on demand"), "{e}");
}

/// Records the ranges of every `file_ranges_transferred` call.
struct RangesSeen(mpsc::UnboundedSender<(u32, Vec<FileRange>)>);

#[async_trait::async_trait]
impl Callback for RangesSeen {
    async fn file_ranges_transferred(
        &self,
        _job: Job,
        file: File,
        ranges: Vec<FileRange>,
    ) -> CallbackResult {
        let _ = self.0.send((file.index(), ranges));
        Ok(())
    }
}

/// The next `file_ranges_transferred` call, within the deadline.
async fn next_call(rx: &mut mpsc::UnboundedReceiver<(u32, Vec<FileRange>)>) -> Vec<FileRange> {
    let (index, ranges) = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("file_ranges_transferred within the deadline")
        .expect("the recorder is alive");
    assert_eq!(index, 0);
    ranges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_on_demand_ranges_requested_while_running_land_in_place_and_are_notified() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(400_000, 33);
    server.add_file("/media.bin", data.clone());
    let dest = env.files.join("media.bin");

    let job = m.create_job("on demand").await.unwrap();
    job.add_files(vec![
        FileSpec::new(server.url("/media.bin"), s(&dest)).on_demand()
    ])
    .await
    .unwrap();
    job.set_notify_flags(NotifyFlags::FILE_RANGES_TRANSFERRED | NotifyFlags::JOB_ERROR)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    job.set_notify_interface(Some(Arc::new(RangesSeen(tx))))
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, |s| s == JobState::Transferring).await;
    assert!(
        get_ranges(&server, "/media.bin").is_empty(),
        "nothing is fetched before it is requested"
    );

    let f = job
        .request_file_ranges(0, &[FileRange::new(300_000, 1000)])
        .await
        .unwrap();
    assert_eq!(f.ranges, vec![FileRange::new(300_000, 1000)]);
    assert_eq!(
        next_call(&mut rx).await,
        vec![FileRange::new(300_000, 1000)]
    );
    assert_eq!(
        job.filled_file_ranges(0).await.unwrap(),
        vec![FileRange::new(300_000, 1000)],
        "GetFilledFileRanges once the callback came"
    );
    job.update_download_position(0, 10).await.unwrap();
    let f = job
        .request_file_ranges(0, &[FileRange::new(0, 10), FileRange::new(5, 20)])
        .await
        .unwrap();
    assert_eq!(f.download_position, 10);
    assert_eq!(
        f.ranges,
        vec![FileRange::new(0, 25), FileRange::new(300_000, 1000)],
        "requests merge"
    );
    assert_eq!(next_call(&mut rx).await, vec![FileRange::new(0, 25)]);
    assert_eq!(
        get_ranges(&server, "/media.bin"),
        vec![
            Some("bytes=300000-300999".to_string()),
            Some("bytes=0-24".to_string())
        ],
        "only what was requested was fetched"
    );
    let info = job.info().await.unwrap();
    assert_eq!(
        info.state(),
        JobState::Transferring,
        "an on-demand job runs until it is completed"
    );

    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 1);
    let local = std::fs::read(&dest).unwrap();
    assert_eq!(local.len(), data.len(), "as long as the remote file");
    assert_eq!(&local[..25], &data[..25]);
    assert_eq!(&local[300_000..301_000], &data[300_000..301_000]);
    assert!(
        local[25..300_000].iter().all(|b| *b == 0) && local[301_000..].iter().all(|b| *b == 0),
        "bytes never requested read as zeros"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_the_command_line_adds_ranges_and_shows_them() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(10_000, 34);
    server.add_file("/cli.bin", data.clone());
    let dest = env.files.join("cli.bin");

    let mut create = ferry(&env);
    create.args(["create", "ranges from the cli"]);
    let job = run_ok(create).trim().to_string();
    let mut bad = ferry(&env);
    bad.args(["add-file", &job, &server.url("/cli.bin"), s(&dest)]);
    bad.args(["--range", "0:100", "--range", "50:10"]);
    let out = run(bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("overlap"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut add = ferry(&env);
    add.args(["add-file", &job, &server.url("/cli.bin"), s(&dest)]);
    add.args(["--range", "9000:eof", "--range", "0:100"]);
    run_ok(add);
    let mut resume = ferry(&env);
    resume.args(["resume", &job]);
    run_ok(resume);
    let m = manager(&env).await;
    let handle = m.job(job.parse().unwrap()).await.unwrap();
    assert_eq!(settle(&handle).await.state(), JobState::Transferred);
    let mut show = ferry(&env);
    show.args(["ranges", &job, "0"]);
    let shown = run_ok(show);
    assert!(
        shown.contains("ranges (packed in this order): 9000:eof 0:100"),
        "{shown}"
    );
    assert!(shown.contains("on disk: 0:100 9000:1000"), "{shown}");
    let mut json = ferry(&env);
    json.args(["--json", "ranges", &job, "0"]);
    let v = run_json(json);
    assert_eq!(v["ranges"][0]["length"], serde_json::json!(LENGTH_TO_EOF));
    handle.complete().await.unwrap();
    let mut expected = data[9000..].to_vec();
    expected.extend_from_slice(&data[..100]);
    assert_eq!(std::fs::read(&dest).unwrap(), expected);
}
