//! Load: 50 clients issue commands and queries at once while 200 jobs transfer and an
//! event subscriber watches. No error but the expected ones, no deadlock; the p99 command
//! latency is printed.

mod common;
use common::manager;

use std::time::{Duration, Instant};

use ferry_client::{JobState, StatusCode};
use ferry_testkit::{random_bytes, sha256_hex, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_50_clients_while_200_jobs_transfer() {
    let env = TestEnv::new();
    let _d = env.start_daemon_with(&["--max-concurrent-jobs", "16"]);
    let server = TestServer::start();
    let m = manager(&env).await;

    let data = random_bytes(256 << 10, 11);
    let sha = sha256_hex(&data);
    for i in 0..200 {
        let path = format!("/f{i}");
        server.add_file(&path, data.clone());
        server.set_mode(
            &path,
            Mode {
                throttle_bytes_per_sec: Some(1 << 20),
                ..Default::default()
            },
        );
    }
    let mut events = m
        .exec_notification_query_semisync(
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job' \
             AND TargetInstance.state <> PreviousInstance.state",
        )
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for i in 0..200 {
        let job = m.create_job(&format!("load-{i}")).await.unwrap();
        job.add_file(
            &server.url(&format!("/f{i}")),
            env.files.join(format!("f{i}")).to_str().unwrap(),
        )
        .await
        .unwrap();
        job.resume().await.unwrap();
        jobs.push(job);
    }

    // 50 clients, each with its own connection, mixing commands and queries.
    let mut clients = Vec::new();
    for c in 0..50 {
        let mc = manager(&env).await;
        let ids: Vec<_> = jobs.iter().map(|j| j.id()).collect();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for k in 0..20 {
                let t = Instant::now();
                match (c + k) % 5 {
                    0 => {
                        mc.jobs(false).await.unwrap();
                    }
                    1 => {
                        mc.exec_query("SELECT id, state FROM Job WHERE state = 'transferring'")
                            .await
                            .unwrap();
                    }
                    2 => {
                        mc.job(ids[(c * 7 + k) % ids.len()])
                            .await
                            .unwrap()
                            .info()
                            .await
                            .unwrap();
                    }
                    3 => {
                        // A job of its own: create, then cancel.
                        let j = mc.create_job(&format!("client-{c}-{k}")).await.unwrap();
                        j.cancel().await.unwrap();
                    }
                    _ => {
                        mc.status().await.unwrap();
                    }
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(
            tokio::time::timeout(DEADLINE, c)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];

    for job in &jobs {
        let info = tokio::time::timeout(DEADLINE, job.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    }
    for (i, job) in jobs.iter().enumerate() {
        job.complete().await.unwrap();
        let bytes = std::fs::read(env.files.join(format!("f{i}"))).unwrap();
        assert_eq!(sha256_hex(&bytes), sha);
    }
    // The subscriber saw every job reach `transferred` (or was cut off explicitly).
    let mut transferred = 0;
    let mut status = None;
    loop {
        let next = events.next(Duration::from_millis(500), 1000).await.unwrap();
        for ev in &next.objects {
            let target = ev.get_object("TargetInstance").unwrap();
            if target.get_str("state") == Some("transferred") {
                transferred += 1;
            }
        }
        if next.done {
            status = next.status;
            break;
        }
        if next.timed_out && next.objects.is_empty() {
            break;
        }
    }
    match status {
        Some(s) => assert_eq!(
            s.code,
            StatusCode::EventsDropped,
            "only an overflow may end it: {s:?}"
        ),
        None => assert_eq!(transferred, 200, "every transfer was seen"),
    }
    eprintln!(
        "load: 50 clients x 20 commands/queries while 200 jobs transferred: p50 {:?}, p99 {:?}, max {:?}; subscriber saw {transferred} transfers",
        p(0.5),
        p(0.99),
        latencies.last().unwrap()
    );
}
