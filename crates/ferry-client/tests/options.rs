//! Uploads and per-job transfer options through the public interface, against the local
//! test server: PUT uploads, credentials and headers (never shown back), bandwidth limits,
//! `max_transfer_time`, and refused option values.

mod common;
use common::{manager, wait_done};

use std::time::{Duration, Instant};

use ferry_client::{Credentials, ErrorContext, ErrorKind, JobProperties, JobState, NewJob};
use ferry_testkit::{random_bytes, sha256_hex, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_upload_sends_the_whole_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(3 << 20, 5);
    let src = env.files.join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let job = m
        .create_job_with(NewJob::upload("put", "put"))
        .await
        .unwrap();
    job.add_file(&server.url("/incoming/up.bin"), src.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let stored = server
        .uploaded("/incoming/up.bin")
        .expect("the server got a PUT");
    assert_eq!(sha256_hex(&stored), sha256_hex(&data));
    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 1);
    assert!(src.exists(), "an upload never touches its source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_a_source_changed_after_resume_is_an_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let src = env.files.join("changing.bin");
    std::fs::write(&src, random_bytes(1 << 20, 1)).unwrap();
    let job = m
        .create_job_with(NewJob::upload("chg", "put"))
        .await
        .unwrap();
    job.add_file(&server.url("/c"), src.to_str().unwrap())
        .await
        .unwrap();
    // The first attempt fails transiently; the source changes before the retry.
    server.push_fault("/c", ferry_testkit::Fault::Status(503));
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    tokio::time::timeout(DEADLINE, job.wait_for(|s| s == JobState::TransientError))
        .await
        .unwrap()
        .unwrap();
    std::fs::write(&src, random_bytes(2 << 20, 2)).unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let e = info.error.unwrap();
    assert_eq!(e.context, Some(ErrorContext::LocalFile));
    assert_eq!(e.code, "source_changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_headers_reach_the_server_and_are_never_shown() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/basic", random_bytes(10_000, 3));
    server.add_file("/bearer", random_bytes(10_000, 4));

    let basic = m.create_job("basic").await.unwrap();
    basic
        .add_file(
            &server.url("/basic"),
            env.files.join("basic").to_str().unwrap(),
        )
        .await
        .unwrap();
    basic
        .set(JobProperties {
            credentials: Some(Credentials::Basic {
                user: "alice".into(),
                password: "s3cret-pw".into(),
            }),
            headers: Some(vec!["X-Ferry-Test: yes".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    basic.resume().await.unwrap();
    assert_eq!(wait_done(&basic).await.state(), JobState::Transferred);
    let req = &server.requests("/basic")[0];
    // base64("alice:s3cret-pw")
    assert_eq!(
        req.header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0LXB3")
    );
    assert_eq!(req.header("x-ferry-test"), Some("yes"));

    let bearer = m.create_job("bearer").await.unwrap();
    bearer
        .add_file(
            &server.url("/bearer"),
            env.files.join("bearer").to_str().unwrap(),
        )
        .await
        .unwrap();
    bearer
        .set(JobProperties {
            credentials: Some(Credentials::Bearer("tok-XYZ-987".into())),
            ..Default::default()
        })
        .await
        .unwrap();
    bearer.resume().await.unwrap();
    assert_eq!(wait_done(&bearer).await.state(), JobState::Transferred);
    assert_eq!(
        server.requests("/bearer")[0].header("authorization"),
        Some("Bearer tok-XYZ-987")
    );

    // Neither `ferry info --json` nor a query shows a secret.
    for id in [basic.id(), bearer.id()] {
        let out = env
            .ferry()
            .args(["--json", "info", &id.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("s3cret-pw") && !text.contains("tok-XYZ-987"),
            "{text}"
        );
        assert!(text.contains("\"credentials\":"), "{text}");
    }
    let objects = m.exec_query("SELECT * FROM Job").await.unwrap();
    let dump = format!("{objects:?}");
    assert!(!dump.contains("s3cret-pw") && !dump.contains("tok-XYZ-987"));
    assert!(dump.contains("basic alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_option_values_are_refused_and_change_nothing() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let job = m.create_job("opts").await.unwrap();
    let before = job.info().await.unwrap();
    for props in [
        JobProperties {
            headers: Some(vec!["X-Evil: a\r\nInjected: 1".into()]),
            ..Default::default()
        },
        JobProperties {
            headers: Some(vec!["Connection: close".into()]),
            ..Default::default()
        },
        JobProperties {
            proxy: Some("ftp://proxy:21".into()),
            ..Default::default()
        },
        JobProperties {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
    ] {
        let e = job.set(props.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{props:?}: {e}");
    }
    assert_eq!(job.info().await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_of_1_mib_per_second_paces_a_10_mib_download() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(10 << 20, 6);
    server.add_file("/big", data.clone());
    let job = m.create_job("limited").await.unwrap();
    job.add_file(&server.url("/big"), env.files.join("big").to_str().unwrap())
        .await
        .unwrap();
    job.set(JobProperties {
        bandwidth_limit: Some(1 << 20),
        ..Default::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    let took = start.elapsed();
    assert_eq!(info.state(), JobState::Transferred);
    // The limit is the feature: 10 MiB at 1 MiB/s, with generous bounds.
    assert!(
        took >= Duration::from_secs(8) && took <= Duration::from_secs(13),
        "10 MiB at 1 MiB/s took {took:?}"
    );
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("big")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_transfer_time_exceeded_is_an_error() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/slow", random_bytes(1 << 20, 7));
    server.set_mode(
        "/slow",
        Mode {
            throttle_bytes_per_sec: Some(64 << 10),
            ..Default::default()
        },
    );
    let job = m.create_job("deadline").await.unwrap();
    job.add_file(
        &server.url("/slow"),
        env.files.join("slow").to_str().unwrap(),
    )
    .await
    .unwrap();
    job.set(JobProperties {
        max_transfer_time_secs: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Error);
    assert_eq!(info.error.unwrap().code, "max_transfer_time");
}

/// BITS: "Calling Resume resets the elapsed time" of the maximum download time. A job
/// that ran out of it and is resumed gets the whole allowance again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_transfer_time_starts_again_at_resume() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(1 << 20, 8);
    server.add_file("/slow-then-fast", data.clone());
    server.set_mode(
        "/slow-then-fast",
        Mode {
            throttle_bytes_per_sec: Some(64 << 10),
            ..Default::default()
        },
    );
    let job = m.create_job("deadline-resumed").await.unwrap();
    let dest = env.files.join("slow-then-fast");
    job.add_file(&server.url("/slow-then-fast"), dest.to_str().unwrap())
        .await
        .unwrap();
    job.set(JobProperties {
        max_transfer_time_secs: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.error.unwrap().code, "max_transfer_time");
    // The server is fast now: with the allowance counted again from this resume, 1 MiB
    // from a local server fits in 3 s many times over; counted from the first resume, the
    // time is already spent and the job fails again at once.
    server.set_mode("/slow-then-fast", Mode::default());
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );
}
