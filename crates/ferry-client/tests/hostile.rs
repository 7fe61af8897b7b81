//! Hostile and misbehaving servers: each case ends in its documented state with the right
//! error, never a hang, a crash or a corrupt destination.

mod common;
use common::manager;

use std::time::Duration;

use ferry_client::{ErrorContext, Job, JobInfo, JobProperties, JobState, Manager};
use ferry_testkit::{gzip, random_bytes, sha256_hex, Fault, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

async fn settle(job: &Job) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait())
        .await
        .expect("the job settles: no hang")
        .unwrap()
}

/// Waits (with a deadline) for the job's next `transient_error` (or any state it cannot
/// leave on its own) and returns it then.
async fn transient(job: &Job) -> JobInfo {
    tokio::time::timeout(
        DEADLINE,
        job.wait_for(|s| {
            matches!(
                s,
                JobState::TransientError | JobState::Error | JobState::Transferred
            ) || s.is_final()
        }),
    )
    .await
    .expect("the job fails: no hang")
    .unwrap()
}

/// The part files left in `dir`, with their lengths.
fn parts(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

async fn job_for(m: &Manager, env: &TestEnv, url: &str, name: &str) -> Job {
    let job = m.create_job(name).await.unwrap();
    job.add_file(url, env.files.join(name).to_str().unwrap())
        .await
        .unwrap();
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_redirect_is_followed_and_the_final_url_kept() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(100_000, 1);
    server.add_file("/real", data.clone());
    server.add_file("/moved", Vec::new());
    server.push_fault("/moved", Fault::Redirect(server.url("/real")));
    let job = job_for(&m, &env, &server.url("/moved"), "moved").await;
    job.resume().await.unwrap();
    assert_eq!(settle(&job).await.state(), JobState::Transferred);
    let files = job.files().await.unwrap();
    assert_eq!(
        files[0].final_url.as_deref(),
        Some(server.url("/real").as_str())
    );
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("moved")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_endless_redirects_end_in_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/loop", b"never served".to_vec());
    for _ in 0..50 {
        server.push_fault("/loop", Fault::Redirect(server.url("/loop")));
    }
    let job = job_for(&m, &env, &server.url("/loop"), "loop").await;
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let e = info.error.unwrap();
    assert_eq!(e.code, "too_many_redirects");
    assert_eq!(e.context, Some(ErrorContext::RemoteFile));
    assert!(
        server.request_count("/loop") <= 12,
        "ferry stops after 10 redirects"
    );
    assert!(!env.files.join("loop").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_content_length_longer_than_the_body_is_resumed_until_whole() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(600_000, 2);
    server.add_file("/short", data.clone());
    // Every answer announces the full length and stops 100 000 bytes in.
    for _ in 0..10 {
        server.push_fault("/short", Fault::CutAfter(100_000));
    }
    let job = job_for(&m, &env, &server.url("/short"), "short").await;
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert!(
        info.error_count >= 5,
        "each short body was a transient error"
    );
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("short")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slowloris_trickle_is_stopped_by_max_transfer_time() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/trickle", random_bytes(10_000, 3));
    server.set_mode(
        "/trickle",
        Mode {
            throttle_bytes_per_sec: Some(1),
            ..Default::default()
        },
    );
    let job = job_for(&m, &env, &server.url("/trickle"), "trickle").await;
    job.set(JobProperties {
        max_transfer_time_secs: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    assert_eq!(info.error.unwrap().code, "max_transfer_time");
    job.cancel().await.unwrap();
    assert!(
        std::fs::read_dir(&env.files).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_wrong_checksum_is_retried_once_then_fatal() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/liar", random_bytes(50_000, 4));
    let job = m.create_job("liar").await.unwrap();
    job.add_files(vec![ferry_client::FileSpec::new(
        server.url("/liar"),
        env.files.join("liar").to_str().unwrap(),
    )
    .sha256("0".repeat(64))])
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    assert_eq!(info.error.unwrap().code, "checksum_mismatch");
    assert_eq!(
        server.request_count("/liar"),
        2,
        "one fresh retry, then fatal"
    );
    job.cancel().await.unwrap();
    assert!(std::fs::read_dir(&env.files).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_errors_never_leave_a_destination() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/gone", Vec::new());
    server.push_fault("/gone", Fault::Status(410));
    let job = job_for(&m, &env, &server.url("/gone"), "gone").await;
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    assert_eq!(info.error.unwrap().code, "http_410");
    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 0);
    assert!(out.is_partial());
    assert!(std::fs::read_dir(&env.files).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_huge_response_headers_are_a_fatal_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/huge", random_bytes(10_000, 5));
    server.push_fault("/huge", Fault::HugeHeader(1 << 20));
    let job = job_for(&m, &env, &server.url("/huge"), "huge").await;
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let e = info.error.unwrap();
    assert_eq!(e.code, "headers_too_large", "{e:?}");
    assert_eq!(e.context, Some(ErrorContext::RemoteFile));
    assert!(e.message.contains("header"), "{}", e.message);
    assert_eq!(server.request_count("/huge"), 1, "not retried on its own");
    assert!(!env.files.join("huge").exists());
    // A resume retries; a sane answer then completes the file.
    job.resume().await.unwrap();
    assert_eq!(settle(&job).await.state(), JobState::Transferred);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_wrong_content_range_is_never_written_at_the_wrong_offset() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(600_000, 6);
    server.add_file("/range", data.clone());
    server.push_fault("/range", Fault::CutAfter(200_000));
    // Asked for bytes from 200 000, it answers (truthfully labelled) bytes from 50 000.
    server.push_fault("/range", Fault::WrongContentRange(50_000));
    let job = job_for(&m, &env, &server.url("/range"), "range").await;
    // Retries only when the test says so, so each error can be seen.
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = transient(&job).await;
    assert_eq!(info.state(), JobState::TransientError);
    assert_eq!(info.error.unwrap().code, "connection_cut");
    assert_eq!(info.bytes_transferred, 200_000);

    job.resume().await.unwrap();
    let info = transient(&job).await;
    assert_eq!(info.state(), JobState::TransientError, "{:?}", info.error);
    let e = info.error.unwrap();
    assert_eq!(e.code, "bad_range");
    assert_eq!(e.context, Some(ErrorContext::RemoteFile));
    assert!(
        e.message.contains("200000") && e.message.contains("bytes 50000-599999/600000"),
        "names what was asked and what came: {}",
        e.message
    );
    assert_eq!(
        info.bytes_transferred, 200_000,
        "the durable bytes are kept"
    );
    assert_eq!(
        parts(&env.files)[0].1,
        200_000,
        "nothing of that answer written"
    );

    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let starts: Vec<_> = server
        .requests("/range")
        .iter()
        .map(|r| r.range_start)
        .collect();
    assert_eq!(
        starts,
        vec![None, Some(200_000), Some(200_000)],
        "retried from the durable offset"
    );
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("range")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_endless_body_past_the_expected_size_is_cut_off() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(1_000_000, 7);
    server.add_file("/endless", data.clone());
    // The first answer announces 1 000 000 bytes (the expected size) and is cut; the
    // resumed one (206, chunked) sends the rest and then filler for ever.
    server.push_fault("/endless", Fault::CutAfter(300_000));
    server.push_fault("/endless", Fault::EndlessBody);
    let job = job_for(&m, &env, &server.url("/endless"), "endless").await;
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = transient(&job).await;
    assert_eq!(info.error.unwrap().code, "connection_cut");
    assert_eq!(info.bytes_total, Some(1_000_000));

    job.resume().await.unwrap();
    let info = transient(&job).await;
    assert_eq!(info.state(), JobState::TransientError, "{:?}", info.error);
    let e = info.error.unwrap();
    assert_eq!(e.code, "too_long");
    assert_eq!(e.context, Some(ErrorContext::RemoteFile));
    assert!(e.message.contains("1000000"), "{}", e.message);
    let parts = parts(&env.files);
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].1, 300_000,
        "the lying answer's bytes are dropped, nothing past the expected size"
    );
    assert_eq!(info.bytes_transferred, 300_000);

    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(server.requests("/endless")[2].range_start, Some(300_000));
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("endless")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_content_length_shorter_than_the_body_keeps_the_announced_bytes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let first = random_bytes(300_000, 8);
    let second = random_bytes(200_000, 9);
    server.add_file("/extra", first.clone());
    server.add_file("/after", second.clone());
    // 300 000 bytes announced, 1 MiB more sent after them on the same connection.
    server.push_fault("/extra", Fault::ExtraBytes(1 << 20));
    let job = m.create_job("extra").await.unwrap();
    job.add_files(vec![
        ferry_client::FileSpec::new(
            server.url("/extra"),
            env.files.join("extra").to_str().unwrap(),
        ),
        ferry_client::FileSpec::new(
            server.url("/after"),
            env.files.join("after").to_str().unwrap(),
        ),
    ])
    .await
    .unwrap();
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("extra")).unwrap()),
        sha256_hex(&first),
        "only the announced bytes"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("after")).unwrap()),
        sha256_hex(&second),
        "the garbage never leaks into the next response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_content_encoding_is_stored_as_sent() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(400_000, 10);
    let encoded = gzip(&data);
    server.add_file("/data.gz", data.clone());
    server.set_mode(
        "/data.gz",
        Mode {
            gzip: true,
            ..Default::default()
        },
    );
    // A cut, so the resume's range counts compressed bytes.
    server.push_fault("/data.gz", Fault::CutAfter(150_000));
    let job = job_for(&m, &env, &server.url("/data.gz"), "data.gz").await;
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(info.bytes_total, Some(encoded.len() as u64));
    let requests = server.requests("/data.gz");
    assert!(requests.len() >= 2);
    for r in &requests {
        assert_eq!(
            r.header("accept-encoding"),
            Some("identity"),
            "ferry asks for the content as it is"
        );
    }
    assert_eq!(requests.last().unwrap().range_start, Some(150_000));
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("data.gz")).unwrap()),
        sha256_hex(&encoded),
        "the bytes as sent, not decoded (like curl without --compressed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_wrong_content_range_on_a_segment_is_never_written() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(16 << 20, 11);
    server.add_file("/seg", data.clone());
    // The HEAD probe answers normally (the fault only bends GETs) and uses up the first
    // fault; one segment's GET then gets bytes from 1000, which no segment starts at.
    server.push_fault("/seg", Fault::WrongContentRange(1000));
    server.push_fault("/seg", Fault::WrongContentRange(1000));
    let job = job_for(&m, &env, &server.url("/seg"), "seg").await;
    job.set(JobProperties {
        connections: Some(2),
        minimum_retry_delay_secs: Some(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = transient(&job).await;
    assert_eq!(info.state(), JobState::TransientError, "{:?}", info.error);
    assert_eq!(info.error.unwrap().code, "bad_range");
    let requests = server.requests("/seg");
    assert_eq!(requests[0].method, "HEAD");
    assert!(
        requests[1..].iter().all(|r| r.range_start.is_some()),
        "segments ask for ranges"
    );
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("seg")).unwrap()),
        sha256_hex(&data)
    );
}
