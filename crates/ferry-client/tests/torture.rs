//! Crash torture: a mixed workload while ferryd is killed with SIGKILL at random moments
//! and restarted. At the end every job is acknowledged with the right bytes, none is lost
//! or duplicated, every job with a notification class was completed by its activated
//! handler (so its `job_transferred` was delivered), and the store passes
//! `PRAGMA integrity_check`.
//!
//! `FERRY_TORTURE_KILLS` sets the number of kills (default 20, the CI version; the long
//! version is 200 or more).

mod common;
use common::manager;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ferry_client::{JobProperties, JobState, Uuid};
use ferry_testkit::{
    example_bin, random_bytes, sha256_hex, wait_until_future, Mode, TestEnv, TestServer,
};

const DEADLINE: Duration = Duration::from_secs(300);

/// xorshift: a reproducible kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Expected {
    dest: std::path::PathBuf,
    sha: String,
    by_handler: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_sigkill_at_random_moments_loses_nothing() {
    let kills: u32 = std::env::var("FERRY_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let env = TestEnv::new();
    let server = TestServer::start();
    let class = Uuid::new_v4();
    let workdir = env.dir.path().join("handler");
    std::fs::create_dir_all(&workdir).unwrap();

    let mut daemon = env.start_daemon();
    let m = manager(&env).await;
    m.register_handler(
        class,
        vec![example_bin("notify_handler").display().to_string()],
        Some(workdir.display().to_string()),
    )
    .await
    .unwrap();

    // The workload: large throttled downloads, many small ones, and jobs whose
    // notification goes to the class handler.
    let mut expected: HashMap<Uuid, Expected> = HashMap::new();
    let add = |name: String, size: usize, seed: u64, throttle: Option<u64>| {
        let data = random_bytes(size, seed);
        let path = format!("/{name}");
        server.add_file(&path, data.clone());
        if throttle.is_some() {
            server.set_mode(
                &path,
                Mode {
                    throttle_bytes_per_sec: throttle,
                    ..Default::default()
                },
            );
        }
        (name, path, sha256_hex(&data))
    };
    let mut specs = Vec::new();
    for i in 0..4 {
        specs.push((
            add(format!("large-{i}"), 6 << 20, 100 + i, Some(3 << 20)),
            false,
        ));
    }
    for i in 0..24 {
        specs.push((add(format!("small-{i}"), 40_000, 200 + i, None), false));
    }
    for i in 0..3 {
        specs.push((
            add(format!("notified-{i}"), 500_000, 300 + i, Some(1 << 20)),
            true,
        ));
    }
    for ((name, path, sha), by_handler) in specs {
        let job = m.create_job(&name).await.unwrap();
        let dest = env.files.join(&name);
        job.add_file(&server.url(&path), dest.to_str().unwrap())
            .await
            .unwrap();
        job.set(JobProperties {
            minimum_retry_delay_secs: Some(1),
            notification_class: by_handler.then_some(class),
            ..Default::default()
        })
        .await
        .unwrap();
        job.resume().await.unwrap();
        expected.insert(
            job.id(),
            Expected {
                dest,
                sha,
                by_handler,
            },
        );
    }
    drop(m);

    let mut rng = Rng(0x5eed_f00d_1234_5678);
    for _ in 0..kills {
        let wait = Duration::from_millis(30 + rng.next() % 400);
        tokio::time::sleep(wait).await;
        daemon.kill9();
        daemon = env.start_daemon();
    }

    // Let the last daemon finish the work.
    let m = manager(&env).await;
    let jobs = m.jobs(true).await.unwrap();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let unique: BTreeSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no job is duplicated");
    assert_eq!(
        unique,
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "no job is lost or invented"
    );
    for (id, exp) in &expected {
        let job = m.job(*id).await.unwrap();
        if exp.by_handler {
            tokio::time::timeout(DEADLINE, job.wait_for(|s| s == JobState::Acknowledged))
                .await
                .unwrap_or_else(|_| panic!("job {id} was never completed by its handler"))
                .unwrap();
            let marker = workdir.join(format!("ferry-handled-{id}"));
            ferry_testkit::wait_until_async(DEADLINE, "the handler's marker", || {
                marker.exists().then_some(())
            })
            .await;
        } else {
            let info = tokio::time::timeout(DEADLINE, job.wait())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                info.state(),
                JobState::Transferred,
                "job {id}: {:?}",
                info.error
            );
            job.complete().await.unwrap();
        }
        let bytes = std::fs::read(&exp.dest).unwrap_or_else(|e| {
            panic!(
                "{} ({e}); job {id}: {:?}; files: {:?}",
                exp.dest.display(),
                futures::executor::block_on(job.info()).ok(),
                futures::executor::block_on(job.files()).ok()
            )
        });
        assert_eq!(
            sha256_hex(&bytes),
            exp.sha,
            "{} has the right bytes",
            exp.dest.display()
        );
    }
    wait_until_future(DEADLINE, "every job acknowledged", || {
        let m = m.clone();
        async move {
            let jobs = m.jobs(true).await.ok()?;
            jobs.iter()
                .all(|j| j.state() == JobState::Acknowledged)
                .then_some(())
        }
    })
    .await;
    drop(m);
    let status = daemon.terminate();
    assert!(status.success(), "ferryd stops cleanly: {status}");
    let db = rusqlite::Connection::open(env.state_dir.join("ferry.db")).unwrap();
    let verdict: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
    let leftovers: Vec<_> = std::fs::read_dir(&env.files)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "no part file is left: {leftovers:?}");
    eprintln!(
        "torture: {kills} SIGKILLs survived; {} jobs ({} via an activated handler) acknowledged with the right SHA-256; integrity_check ok",
        expected.len(),
        expected.values().filter(|e| e.by_handler).count()
    );
}
