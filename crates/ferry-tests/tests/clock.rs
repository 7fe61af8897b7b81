//! The wall clock set a day forward, then a day back, while ferryd runs (libfaketime,
//! Debian's `libfaketime`, with the monotonic clock left alone): no job is cancelled or
//! failed by a timeout, a retry due in ten minutes does not fire, and a retry due in a
//! second is not held back. A job that fails and retries every second is the yardstick.
//!
//! `cargo test clock`. A file of its own: the daemon is started with `LD_PRELOAD`, set in
//! this process's environment for that start only.

mod common;

use std::path::PathBuf;

use common::*;
use ferry_client::{JobInfo, JobProperties, JobState};
use ferry_testkit::{random_bytes, target_dir_bin, wait_until_future, Fault, TestEnv, TestServer};

fn libfaketime() -> PathBuf {
    ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|t| PathBuf::from(format!("/usr/lib/{t}/faketime/libfaketime.so.1")))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 (apt-get install libfaketime; .ci/run installs it)")
}

const DAY_MS: i64 = 24 * 3600 * 1000;

fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the yardstick job has failed `more` times after `info`.
async fn retries(job: &ferry_client::Job, info: &JobInfo, more: u32) -> JobInfo {
    let want = info.error_count + more;
    wait_until_future(DEADLINE, "the yardstick job's retries", || async move {
        let i = job.info().await.ok()?;
        (i.error_count >= want).then_some(i)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs libfaketime: .ci/run runs it"]
async fn clock_set_a_day_forward_and_back_neither_cancels_nor_fires_timeouts() {
    let lib = libfaketime();
    // Built (if need be) before the preload is in the environment.
    let _ = target_dir_bin("ferryd");
    let env = TestEnv::new();
    let offset = env.dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        "job_inactivity_timeout = \"12h\"\nhousekeeping_interval = \"1s\"\n",
    )
    .unwrap();
    let vars = [
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ];
    for (k, v) in &vars {
        std::env::set_var(k, v);
    }
    let daemon = env.start_daemon_with(&["--config", s(&config)]);
    for (k, _) in &vars {
        std::env::remove_var(k);
    }
    let server = TestServer::start();
    let m = manager(&env).await;
    let job_of = |name: &'static str, path: &'static str| {
        let m = m.clone();
        let url = server.url(path);
        let dest = env.files.join(name);
        async move {
            let job = m.create_job(name).await.unwrap();
            job.add_file(&url, s(&dest)).await.unwrap();
            job
        }
    };

    // Waits ten minutes to retry: the server asks for it (a first retry otherwise
    // comes after a second, see the backoff rule) and so does the job.
    server.add_file("/later", random_bytes(1000, 1));
    server.push_fault("/later", Fault::StatusRetryAfter(503, 600));
    let later = job_of("later", "/later").await;
    later
        .set(JobProperties {
            minimum_retry_delay_secs: Some(600),
            ..Default::default()
        })
        .await
        .unwrap();
    later.resume().await.unwrap();
    // Stalled mid-transfer, with an hour's no-progress timeout and max transfer time.
    server.add_file("/stalled", random_bytes(100_000, 2));
    server.push_fault("/stalled", Fault::StallAfter(1000));
    let stalled = job_of("stalled", "/stalled").await;
    stalled
        .set(JobProperties {
            no_progress_timeout_secs: Some(3600),
            max_transfer_time_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    stalled.resume().await.unwrap();
    // Suspended, under the 12 h inactivity timeout.
    let idle = job_of("idle", "/later").await;
    // The yardstick: fails and retries every second.
    server.add_file("/yard", random_bytes(1000, 3));
    for _ in 0..500 {
        server.push_fault("/yard", Fault::Status(503));
    }
    let yard = job_of("yard", "/yard").await;
    fast_retries(&yard).await;
    yard.resume().await.unwrap();

    let later0 = wait_state(&later, |s| s == JobState::TransientError).await;
    wait_bytes(&stalled, 1000).await;
    let yard0 = retries(&yard, &yard.info().await.unwrap(), 1).await;

    let check = |when: &'static str| {
        let (later, stalled, idle) = (later.clone(), stalled.clone(), idle.clone());
        let later0 = later0.clone();
        async move {
            let l = later.info().await.unwrap();
            assert_eq!(l.state(), JobState::TransientError, "{when}: {l:?}");
            assert_eq!(l.error_count, later0.error_count, "{when}: retried early");
            let st = stalled.info().await.unwrap();
            assert!(
                matches!(st.state(), JobState::Transferring | JobState::Connecting),
                "{when}: {st:?}"
            );
            let i = idle.info().await.unwrap();
            assert_eq!(i.state(), JobState::Suspended, "{when}: {i:?}");
        }
    };

    // A day forward: the daemon's wall clock shows it (a change stamps tomorrow).
    std::fs::write(&offset, "+1d\n").unwrap();
    let yard1 = retries(&yard, &yard0, 3).await;
    assert!(
        yard1.modified_unix_ms > real_now_ms() + DAY_MS / 2,
        "the daemon's wall clock moved: {}",
        yard1.modified_unix_ms
    );
    check("a day forward").await;

    // A day back (from the real time): retries go on at their pace.
    std::fs::write(&offset, "-1d\n").unwrap();
    let yard2 = retries(&yard, &yard1, 3).await;
    assert!(
        yard2.modified_unix_ms < real_now_ms() - DAY_MS / 2,
        "the daemon's wall clock moved back: {}",
        yard2.modified_unix_ms
    );
    check("a day back").await;
    drop(daemon);
}
