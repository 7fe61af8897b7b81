//! BITS parity, issue 30 rows 5 and 7 (the parts a per-user ferryd shows): a file's last
//! HTTP response headers (File5 HTTP_RESPONSE_HEADERS), MAX_DOWNLOAD_SIZE, the minimum
//! notification interval, a job's own HTTP method (HttpOptions2::SetHttpMethod), a
//! bandwidth schedule window with `limit = 0`, and the daemon-wide default
//! `max_transfer_time`. Against the local test server, through the Rust client, the CLI
//! and WQL. (The administrators' part of row 7 needs the system-wide daemon:
//! `parity_admin.rs`.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ferry_client::{
    Callback, CallbackResult, FileSpec, Job, JobInfo, JobProperties, JobState, NewJob, NotifyFlags,
    Priority,
};
use ferry_testkit::{random_bytes, Fault, Mode, TestEnv, TestServer};

/// A job of one file from `server`'s `path` into `env.files`, not yet resumed.
async fn one_file_job(
    m: &ferry_client::Manager,
    env: &TestEnv,
    server: &TestServer,
    path: &str,
) -> Job {
    let job = m.create_job(path).await.unwrap();
    let dest = env.files.join(path.trim_start_matches('/'));
    job.add_file(&server.url(path), s(&dest)).await.unwrap();
    job
}

/// The part files in `env.files` and their sizes.
fn part_sizes(env: &TestEnv) -> Vec<(String, u64)> {
    std::fs::read_dir(&env.files)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_a_files_last_response_headers_are_kept() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/meta.bin", random_bytes(40_000, 1));
    let job = one_file_job(&m, &env, &server, "/meta.bin").await;
    assert!(
        job.files().await.unwrap()[0].response_headers.is_empty(),
        "no response yet"
    );
    job.resume().await.unwrap();
    assert_eq!(settle(&job).await.state(), JobState::Transferred);

    let file = job.files().await.unwrap().remove(0);
    let etag = server.etag("/meta.bin").expect("the server sends an ETag");
    let has = |h: &str| {
        file.response_headers
            .iter()
            .any(|x| x.eq_ignore_ascii_case(h))
    };
    assert!(has(&format!("etag: {etag}")), "{:?}", file.response_headers);
    assert!(
        has("content-type: application/octet-stream"),
        "{:?}",
        file.response_headers
    );
    assert!(has("content-length: 40000"), "{:?}", file.response_headers);
    assert!(
        file.response_headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("last-modified: ")),
        "{:?}",
        file.response_headers
    );

    // The CLI shows them, and WQL reaches them.
    let out = run_ok({
        let mut c = ferry(&env);
        c.args(["files", &job.id().to_string(), "--headers"]);
        c
    });
    assert!(
        out.contains("last response headers") && out.contains(&etag),
        "{out}"
    );
    let rows = run_json({
        let mut c = ferry(&env);
        c.args([
            "--json",
            "query",
            &format!(
                "SELECT response_headers FROM File WHERE job_id = '{}' AND response_headers LIKE '%{}%'",
                job.id(),
                etag.trim_matches('"')
            ),
        ]);
        c
    });
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");

    // A later response replaces them: they are the last response's.
    server.push_fault("/meta.bin", Fault::ChangeContent(random_bytes(1000, 2)));
    let again = one_file_job(&m, &env, &server, "/meta.bin").await;
    again.resume().await.unwrap();
    assert_eq!(settle(&again).await.state(), JobState::Transferred);
    let file = again.files().await.unwrap().remove(0);
    assert!(
        file.response_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-length: 1000")),
        "{:?}",
        file.response_headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_max_download_size_fails_before_or_while_writing() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/big.bin", random_bytes(300_000, 3));
    server.add_file("/chunked.bin", random_bytes(300_000, 4));
    server.set_mode(
        "/chunked.bin",
        Mode {
            chunked: true,
            ..Default::default()
        },
    );

    // Announced too large: refused before a byte is written.
    let job = one_file_job(&m, &env, &server, "/big.bin").await;
    let info = job.set_max_download_size(100_000).await.unwrap();
    assert_eq!(info.max_download_size, 100_000);
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error, "{info:?}");
    let e = info.error.expect("an error");
    assert_eq!(e.code, "max_download_size", "{e:?}");
    assert!(e.message.contains("100000"), "{}", e.message);
    assert!(
        part_sizes(&env).iter().all(|(_, len)| *len == 0),
        "nothing was written: {:?}",
        part_sizes(&env)
    );
    job.cancel().await.unwrap();

    // No length announced: stopped at the limit, no byte past it on disk.
    let job = one_file_job(&m, &env, &server, "/chunked.bin").await;
    job.set_max_download_size(100_000).await.unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error, "{info:?}");
    assert_eq!(info.error.unwrap().code, "max_download_size");
    let parts = part_sizes(&env);
    assert!(parts.iter().all(|(_, len)| *len <= 100_000), "{parts:?}");

    // Raised, the same job goes through; the CLI sets and shows it.
    let out = run_ok({
        let mut c = ferry(&env);
        c.args(["set", &job.id().to_string(), "--max-download-size", "1MiB"]);
        c
    });
    assert!(out.contains("max file size"), "{out}");
    assert_eq!(job.info().await.unwrap().max_download_size, 1 << 20);
    job.resume().await.unwrap();
    assert_eq!(settle(&job).await.state(), JobState::Transferred);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_a_jobs_own_http_method() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;

    // An upload with POST in place of PUT.
    let data = random_bytes(50_000, 5);
    let src = env.files.join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let up = m
        .create_job_with(NewJob {
            files: vec![FileSpec::new(server.url("/in"), s(&src))],
            properties: Some(JobProperties {
                http_method: Some("POST".into()),
                ..Default::default()
            }),
            ..NewJob::upload("post upload", "put")
        })
        .await
        .unwrap();
    assert_eq!(
        up.info().await.unwrap().http_method.as_deref(),
        Some("POST")
    );
    up.resume().await.unwrap();
    assert_eq!(settle(&up).await.state(), JobState::Transferred);
    let reqs = server.requests("/in");
    assert_eq!(
        reqs.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["POST"]
    );
    assert_eq!(server.uploaded("/in"), Some(data));

    // A download with POST: the answer to the POST is the file.
    server.set_upload_reply("/report", 200, b"the report".to_vec());
    let down = m.create_job("post download").await.unwrap();
    down.set_http_method("POST").await.unwrap();
    let dest = env.files.join("report.txt");
    down.add_file(&server.url("/report"), s(&dest))
        .await
        .unwrap();
    down.resume().await.unwrap();
    assert_eq!(settle(&down).await.state(), JobState::Transferred);
    down.complete().await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"the report");
    assert!(
        server
            .requests("/report")
            .iter()
            .all(|r| r.method == "POST"),
        "{:?}",
        server.requests("/report")
    );

    // "" restores the default; a method that is not a token is refused, so is CONNECT,
    // and a tus upload keeps the protocol's methods.
    let j = m.create_job("methods").await.unwrap();
    assert_eq!(j.set_http_method("").await.unwrap().http_method, None);
    let long = "X".repeat(33);
    for bad in ["NOT A METHOD", "GET\r\nX-Evil: 1", "CONNECT", long.as_str()] {
        let e = j.set_http_method(bad).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{bad:?}: {e}");
    }
    let tus = m
        .create_job_with(NewJob::upload("tus", "tus"))
        .await
        .unwrap();
    let e = tus.set_http_method("PUT").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("tus"), "{e}");
}

/// Records when each `job_modification` call came.
#[derive(Default)]
struct Times(Mutex<Vec<Instant>>);

#[async_trait::async_trait]
impl Callback for Times {
    async fn job_modification(&self, _job: Job, _info: JobInfo) -> CallbackResult {
        self.0.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_minimum_notification_interval_spaces_job_modification_calls() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    // About six seconds of progress, each few hundred milliseconds a change.
    server.add_file("/slow.bin", random_bytes(600_000, 6));
    server.set_mode(
        "/slow.bin",
        Mode {
            throttle_bytes_per_sec: Some(100_000),
            ..Default::default()
        },
    );
    let job = one_file_job(&m, &env, &server, "/slow.bin").await;
    let interval_ms = 2_000;
    let info = job
        .set_minimum_notification_interval_ms(interval_ms)
        .await
        .unwrap();
    assert_eq!(info.minimum_notification_interval_ms, interval_ms);
    job.set_notify_flags(NotifyFlags::JOB_MODIFICATION | NotifyFlags::JOB_TRANSFERRED)
        .await
        .unwrap();
    let times = Arc::new(Times::default());
    job.set_notify_interface(Some(times.clone())).await.unwrap();
    job.resume().await.unwrap();
    assert_eq!(settle(&job).await.state(), JobState::Transferred);
    // The last calls may still come; three are enough to see the spacing.
    ferry_testkit::wait_until_future(DEADLINE, "three job_modification calls", || async {
        (times.0.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    let t = times.0.lock().unwrap().clone();
    for pair in t.windows(2) {
        let gap = pair[1] - pair[0];
        // The daemon spaces its calls by the interval; each call's trip to this process
        // may differ by a little, so a gap may look up to half a second shorter.
        assert!(
            gap >= Duration::from_millis(interval_ms - 500),
            "job_modification calls {gap:?} apart, the interval is {interval_ms} ms: {t:?}"
        );
    }
    // Out of range: refused, naming the limit.
    let e = job
        .set_minimum_notification_interval_ms(86_400_001)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_a_schedule_window_with_limit_zero_blocks_its_priorities() {
    let env = TestEnv::new();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        "[[bandwidth.schedule]]\nfrom = \"00:00\"\nto = \"24:00\"\nlimit = 0\npriorities = [\"low\"]\n",
    )
    .unwrap();
    let _d = env.start_daemon_with(&["--config", s(&config)]);
    let server = TestServer::start();
    let m = manager(&env).await;

    let status = run_ok({
        let mut c = ferry(&env);
        c.args(["daemon", "status"]);
        c
    });
    assert!(status.contains("no transfers for low jobs"), "{status}");

    server.add_file("/low.bin", random_bytes(100_000, 7));
    server.add_file("/normal.bin", random_bytes(100_000, 8));
    let low = one_file_job(&m, &env, &server, "/low.bin").await;
    low.set(JobProperties {
        priority: Some(Priority::Low),
        ..Default::default()
    })
    .await
    .unwrap();
    low.resume().await.unwrap();
    // The low job has asked the server, and holds its bytes back.
    ferry_testkit::wait_until_future(DEADLINE, "the low job's request", || async {
        (server.request_count("/low.bin") > 0).then_some(())
    })
    .await;
    // A normal job goes through meanwhile, from start to end.
    let normal = one_file_job(&m, &env, &server, "/normal.bin").await;
    normal.resume().await.unwrap();
    assert_eq!(settle(&normal).await.state(), JobState::Transferred);
    let info = low.info().await.unwrap();
    assert_eq!(info.bytes_transferred, 0, "{info:?}");
    assert!(!info.state().is_final() && info.state() != JobState::Transferred);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_props_the_daemon_wide_default_max_transfer_time() {
    let env = TestEnv::new();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(&config, "max_transfer_time = \"2s\"\n").unwrap();
    let _d = env.start_daemon_with(&["--config", s(&config)]);
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/stuck.bin", random_bytes(100_000, 9));
    server.push_fault("/stuck.bin", Fault::StallAfter(1000));

    // No limit of its own: the daemon's applies.
    let job = one_file_job(&m, &env, &server, "/stuck.bin").await;
    assert_eq!(job.info().await.unwrap().max_transfer_time_secs, 0);
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error, "{info:?}");
    assert_eq!(info.error.unwrap().code, "max_transfer_time");
    server.release_stalls();
}
