//! Hostile and misbehaving servers: each case ends in its documented state with the right
//! error, never a hang, a crash or a corrupt destination.

use std::time::Duration;

use ferry_client::{ConnectOptions, ErrorContext, Job, JobInfo, JobProperties, JobState, Manager};
use ferry_testkit::{random_bytes, sha256_hex, Fault, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

async fn manager(env: &TestEnv) -> Manager {
    Manager::connect_with(ConnectOptions {
        socket: env.socket.clone(),
        autostart: false,
        ..Default::default()
    })
    .await
    .expect("connect to the test daemon")
}

async fn settle(job: &Job) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait())
        .await
        .expect("the job settles: no hang")
        .unwrap()
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
