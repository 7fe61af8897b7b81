//! Multi-connection downloads: several ranges in parallel, resumed per segment after a
//! SIGKILL, restarted when the content changes.

mod common;
use common::{manager, wait_done};

use std::time::Duration;

use ferry_client::{Job, JobProperties, JobState, Manager};
use ferry_testkit::{random_bytes, sha256_hex, wait_until, Fault, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

async fn job_with(
    m: &Manager,
    env: &TestEnv,
    server: &TestServer,
    name: &str,
    connections: u32,
) -> Job {
    let job = m.create_job(name).await.unwrap();
    job.add_file(
        &server.url(&format!("/{name}")),
        env.files.join(name).to_str().unwrap(),
    )
    .await
    .unwrap();
    job.set(JobProperties {
        connections: Some(connections),
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_connections_fetch_ranges_in_parallel_with_the_right_bytes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(24 * MIB, 1);
    server.add_file("/multi", data.clone());
    let job = job_with(&m, &env, &server, "multi", 4).await;
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("multi")).unwrap()),
        sha256_hex(&data)
    );
    let gets: Vec<_> = server
        .requests("/multi")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    let starts: Vec<u64> = gets.iter().filter_map(|r| r.range_start).collect();
    assert!(
        starts.len() >= 4,
        "one range request per connection: {starts:?}"
    );
    for seg in [0, 6, 12, 18] {
        assert!(
            starts.contains(&(seg * MIB as u64)),
            "segment at {seg} MiB: {starts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_and_servers_without_ranges_use_one_connection() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let small = random_bytes(MIB, 2);
    server.add_file("/small", small.clone());
    let big = random_bytes(12 * MIB, 3);
    server.add_file("/norange", big.clone());
    server.set_mode(
        "/norange",
        Mode {
            no_validators: true,
            ..Default::default()
        },
    );
    for (name, data) in [("small", &small), ("norange", &big)] {
        let job = job_with(&m, &env, &server, name, 4).await;
        job.resume().await.unwrap();
        assert_eq!(wait_done(&job).await.state(), JobState::Transferred);
        job.complete().await.unwrap();
        assert_eq!(
            sha256_hex(&std::fs::read(env.files.join(name)).unwrap()),
            sha256_hex(data)
        );
        let gets = server
            .requests(&format!("/{name}"))
            .into_iter()
            .filter(|r| r.method == "GET")
            .count();
        assert_eq!(gets, 1, "{name}: one GET");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_multi_connection_download_resumes_every_segment() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(24 * MIB, 4);
    server.add_file("/resume", data.clone());
    server.set_mode(
        "/resume",
        Mode {
            throttle_bytes_per_sec: Some(2 * MIB as u64),
            ..Default::default()
        },
    );
    let job = job_with(&m, &env, &server, "resume", 4).await;
    job.resume().await.unwrap();
    // Wait until the store holds durable progress inside some segment.
    let db = env.state_dir.join("ferry.db");
    wait_until(DEADLINE, "a durable segment checkpoint", || {
        let c = rusqlite::Connection::open(&db).ok()?;
        let segs: String = c
            .query_row("SELECT segments FROM files LIMIT 1", [], |r| r.get(0))
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&segs).ok()?;
        v.as_array()?
            .iter()
            .any(|s| s["done"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    });
    daemon.kill9();
    let before = server.request_count("/resume");
    let _daemon = env.start_daemon();
    server.set_mode("/resume", Mode::default());
    let m = manager(&env).await;
    let job = m.job(job.id()).await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("resume")).unwrap()),
        sha256_hex(&data)
    );
    let segment_starts: Vec<u64> = (0..4).map(|i| (i * 6 * MIB) as u64).collect();
    let resumed: Vec<u64> = server.requests("/resume")[before..]
        .iter()
        .filter_map(|r| r.range_start)
        .collect();
    assert!(
        resumed.iter().any(|s| !segment_starts.contains(s)),
        "after the restart some segment continued from its checkpoint: {resumed:?}"
    );
    assert!(
        !server.requests("/resume")[before..]
            .iter()
            .any(|r| r.method == "HEAD"),
        "the recorded segments are reused, not probed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_changed_during_a_multi_connection_download_restarts_the_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let old = random_bytes(16 * MIB, 5);
    server.add_file("/changing", old.clone());
    let new = random_bytes(16 * MIB, 6);
    // The HEAD sees the old bytes (under a fresh ETag); the first range request finds them
    // replaced.
    server.push_fault("/changing", Fault::ChangeContent(old));
    server.push_fault("/changing", Fault::ChangeContent(new.clone()));
    let job = m.create_job("changing").await.unwrap();
    job.add_file(
        &server.url("/changing"),
        env.files.join("changing").to_str().unwrap(),
    )
    .await
    .unwrap();
    job.set(JobProperties {
        connections: Some(2),
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("changing")).unwrap()),
        sha256_hex(&new)
    );
}
