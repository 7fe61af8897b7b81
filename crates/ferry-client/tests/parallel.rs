//! Files of one download job transfer several at once (ferryd's `files_in_parallel`),
//! and the first failure stops the others without losing their progress.

mod common;
use common::{manager, wait_done};

use std::time::Duration;

use ferry_client::{FileSpec, Job, JobState};
use ferry_testkit::{random_bytes, sha256_hex, wait_until, Fault, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

/// Serves `n` files `/pN` of distinct content; returns their bytes.
fn serve(server: &TestServer, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let data = random_bytes(300_000 + i * 1000, 40 + i as u64);
            server.add_file(&format!("/p{i}"), data.clone());
            data
        })
        .collect()
}

async fn add_all(job: &Job, env: &TestEnv, server: &TestServer, n: usize) {
    let specs = (0..n)
        .map(|i| {
            FileSpec::new(
                server.url(&format!("/p{i}")),
                env.files.join(format!("p{i}")).to_str().unwrap(),
            )
        })
        .collect();
    job.add_files(specs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_one_job_transfer_at_once() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = serve(&server, 4);
    // The first three files hold their answers: one after another, the fourth file would
    // never be asked for.
    for i in 0..3 {
        server.push_fault(&format!("/p{i}"), Fault::Stall);
    }
    let m = manager(&env).await;
    let job = m.create_job("parallel").await.unwrap();
    add_all(&job, &env, &server, 4).await;
    job.resume().await.unwrap();
    wait_until(DEADLINE, "all four files are asked for at once", || {
        (0..4)
            .all(|i| server.request_count(&format!("/p{i}")) >= 1)
            .then_some(())
    });
    // The fourth finishes while the others are held.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let files = job.files().await.unwrap();
            if files[3].bytes_transferred == data[3].len() as u64 {
                assert!(files[..3].iter().all(|f| f.bytes_transferred == 0));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the fourth file transfers while the first three stall");
    server.release_stalls();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(job.complete().await.unwrap().files_committed, 4);
    for (i, d) in data.iter().enumerate() {
        let got = std::fs::read(env.files.join(format!("p{i}"))).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(d), "file {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failing_file_stops_the_others_and_names_itself() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = serve(&server, 3);
    // Files 0 and 2 send part of their bytes and then hang; file 1 is refused.
    server.push_fault("/p0", Fault::StallAfter(100_000));
    server.push_fault("/p2", Fault::StallAfter(100_000));
    server.push_fault("/p1", Fault::Status(403));
    let m = manager(&env).await;
    let job = m.create_job("first-failure").await.unwrap();
    add_all(&job, &env, &server, 3).await;
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Error);
    let err = info.error.expect("an error is recorded");
    assert_eq!(err.file_index, Some(1), "{err:?}");
    assert!(err.message.contains("403"), "{err:?}");
    // The refusal is gone; the job resumes and every file ends intact. The stop
    // may have come before file 0 or 2 sent its request: their stalls, still
    // queued, would then hold the next run for good.
    server.clear_faults("/p0");
    server.clear_faults("/p2");
    server.release_stalls();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(job.complete().await.unwrap().files_committed, 3);
    for (i, d) in data.iter().enumerate() {
        let got = std::fs::read(env.files.join(format!("p{i}"))).unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(d), "file {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_in_one_job_all_arrive() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let n = 300;
    let specs: Vec<FileSpec> = (0..n)
        .map(|i| {
            server.add_file(&format!("/s{i}"), random_bytes(4096 + i, i as u64));
            FileSpec::new(
                server.url(&format!("/s{i}")),
                env.files.join(format!("s{i}")).to_str().unwrap(),
            )
        })
        .collect();
    let m = manager(&env).await;
    let job = m.create_job("small").await.unwrap();
    job.add_files(specs).await.unwrap();
    job.resume().await.unwrap();
    let info = wait_done(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    assert_eq!(info.files_transferred, n as u32);
    assert_eq!(job.complete().await.unwrap().files_committed, n as u32);
    for i in 0..n {
        let got = std::fs::read(env.files.join(format!("s{i}"))).unwrap();
        assert_eq!(got, random_bytes(4096 + i, i as u64), "file {i}");
    }
}
