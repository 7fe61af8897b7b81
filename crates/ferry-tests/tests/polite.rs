//! ferry as a polite network citizen, on a network of the test's own: a client and a
//! server namespace joined by a veth pair (`ferry_testkit::NetLab`), nginx serving in the
//! server namespace, ferryd running in the client namespace. Needs root, iproute2 and
//! nginx. `cargo test polite` runs them.

mod common;

use common::*;
use ferry_client::{JobInfo, JobProperties, JobState, Priority};
use ferry_testkit::{random_file, wait_until_future, NetLab, Nginx, TestEnv};

/// One MiB.
const MIB: usize = 1 << 20;

/// Properties for a job paced at `bytes_per_sec`, with the given retry delay and
/// no-progress timeout.
fn paced(bytes_per_sec: u64, retry_delay_secs: u64, no_progress_secs: u64) -> JobProperties {
    JobProperties {
        priority: Some(Priority::Normal),
        bandwidth_limit: Some(bytes_per_sec),
        minimum_retry_delay_secs: Some(retry_delay_secs),
        no_progress_timeout_secs: Some(no_progress_secs),
        ..Default::default()
    }
}

/// One test of this file at a time: each compares rates on its shaped link, and two at once
/// would share this machine's cores (and its disk) with each other's transfers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The link goes down while two jobs transfer: both stop at once with
/// `network_unreachable` and wait in `transient_error`. One has a retry delay of an hour:
/// it resumes as soon as the link (and its default route) is back. The other retries
/// every second with a no-progress timeout of 2 s while the link stays down for longer
/// than that: time without a route does not count, so it never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and curl: .ci/run runs it"]
async fn polite_network_return_resumes_at_once_and_offline_time_does_not_count() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = NetLab::create("netret");
    let www = tempfile::tempdir().unwrap();
    random_file(www.path(), "a.bin", 8 * MIB, 1);
    random_file(www.path(), "b.bin", 8 * MIB, 2);
    let _nginx = Nginx::start(&lab, www.path());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&lab.client_prefix(), &[]);
    let m = manager(&env).await;

    let start_job = |name: &'static str, props: JobProperties| {
        let m = &m;
        let env = &env;
        async move {
            let job = m.create_job(name).await.unwrap();
            job.add_file(&Nginx::url(name), s(&env.files.join(name)))
                .await
                .unwrap();
            job.set(props).await.unwrap();
            job
        }
    };
    // Both paced at 1 MiB/s: 8 s each if nothing happened.
    let long_delay = start_job("a.bin", paced(MIB as u64, 3600, 600)).await;
    let short_timeout = start_job("b.bin", paced(MIB as u64, 1, 2)).await;
    let watch_a = long_delay.watch().await.unwrap();
    let watch_b = short_timeout.watch().await.unwrap();
    long_delay.resume().await.unwrap();
    short_timeout.resume().await.unwrap();
    let follow_a = tokio::spawn(follow_states(watch_a, |s| {
        s == JobState::Transferred || s == JobState::Error
    }));
    let follow_b = tokio::spawn(follow_states(watch_b, |s| {
        s == JobState::Transferred || s == JobState::Error
    }));
    wait_bytes(&long_delay, MIB as u64).await;
    wait_bytes(&short_timeout, MIB as u64).await;

    lab.set_client_link(false);
    let down: JobInfo = wait_state(&long_delay, |s| s == JobState::TransientError).await;
    let error = down.error.clone().expect("an error record");
    assert_eq!(error.code, "network_unreachable", "{down:?}");
    assert!(error.message.contains("network unreachable"), "{down:?}");
    // The short-timeout job, retried every second, keeps failing while the link is down:
    // wait until it has been down for more than twice its no-progress timeout.
    let down_since = std::time::Instant::now();
    let b_errors_before = short_timeout.info().await.unwrap().error_count;
    wait_until_future(
        DEADLINE,
        "the link down for 5 s and the job retried",
        || async {
            let info = short_timeout.info().await.unwrap();
            assert_ne!(
                info.state(),
                JobState::Error,
                "offline time counted: {info:?}"
            );
            (down_since.elapsed() > std::time::Duration::from_secs(5)
                && info.error_count >= b_errors_before + 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        long_delay.info().await.unwrap().state(),
        JobState::TransientError,
        "the job waits for its retry while the network is down"
    );

    lab.set_client_link(true);
    let (states_a, _) = follow_a.await.unwrap();
    let (states_b, snaps_b) = follow_b.await.unwrap();
    assert_eq!(
        states_a.last(),
        Some(&JobState::Transferred),
        "{states_a:?}"
    );
    assert!(states_a.contains(&JobState::TransientError), "{states_a:?}");
    assert_eq!(
        states_b.last(),
        Some(&JobState::Transferred),
        "the short-timeout job never fails: {states_b:?} {:?}",
        snaps_b.last()
    );
    for job in [&long_delay, &short_timeout] {
        job.complete().await.unwrap();
    }
    for name in ["a.bin", "b.bin"] {
        assert_eq!(
            std::fs::read(env.files.join(name)).unwrap(),
            std::fs::read(www.path().join(name)).unwrap(),
            "{name} arrived whole"
        );
    }
}

/// A `[[bandwidth.schedule]]` entry in force all day for `normal` and `low` jobs: a
/// `normal` job is held to its limit, a `foreground` job of the same file is not, and
/// `ferry daemon status` shows the limit in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polite_schedule_limits_background_jobs_not_foreground_ones() {
    let _one = ONE_AT_A_TIME.lock().await;
    const LIMIT: u64 = 512 * 1024;
    let env = TestEnv::new();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(
        &config,
        format!(
            "[[bandwidth.schedule]]\nfrom = \"00:00\"\nto = \"24:00\"\nlimit = {LIMIT}\n\
             priorities = [\"normal\", \"low\"]\n"
        ),
    )
    .unwrap();
    let _d = env.start_daemon_with(&["--config", s(&config)]);
    let server = ferry_testkit::TestServer::start();
    let len = 2 * MIB;
    server.add_file("/f.bin", ferry_testkit::random_bytes(len, 3));
    let m = manager(&env).await;

    let status = env.ferry().args(["daemon", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("for normal, low jobs now") && text.contains("every day 00:00-24:00"),
        "{text}"
    );

    let mut elapsed = Vec::new();
    for (name, priority) in [("fg", Priority::Foreground), ("bg", Priority::Normal)] {
        let job = m.create_job(name).await.unwrap();
        job.add_file(&server.url("/f.bin"), s(&env.files.join(name)))
            .await
            .unwrap();
        job.set(JobProperties {
            priority: Some(priority),
            ..Default::default()
        })
        .await
        .unwrap();
        let started = std::time::Instant::now();
        job.resume().await.unwrap();
        let info = settle(&job).await;
        assert_eq!(info.state(), JobState::Transferred, "{info:?}");
        elapsed.push(started.elapsed());
    }
    let (fg, bg) = (elapsed[0], elapsed[1]);
    assert!(
        bg > fg * 3,
        "the normal job is held back by the schedule, the foreground job is not: {fg:?} vs {bg:?}"
    );
    // Never faster than the limit allows (less the limiter's small burst).
    let bg_rate = len as f64 / bg.as_secs_f64();
    assert!(bg_rate < LIMIT as f64 * 1.25, "{bg_rate} B/s over {LIMIT}");
}

/// The shaped link of the yielding tests: 40 Mbit/s with a deep queue (200 ms), the
/// queue a plain TCP flow fills and a delay-based controller must see. The server sends
/// with CUBIC, Linux's default (this machine's default, BBR, keeps queues short by
/// itself, so there would be no queue to yield to).
fn shaped_lab(tag: &str) -> NetLab {
    let lab = NetLab::create(tag);
    lab.shape_downlink("40mbit", "200ms");
    lab.set_server_congestion_control("cubic");
    lab
}

/// curl's average download speed of `url` in the client namespace (bytes per second).
async fn curl_speed(lab: &NetLab, url: String) -> f64 {
    let mut cmd = lab.in_client("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "120",
        "-w",
        "%{speed_download}",
    ])
    .arg(url);
    let out = tokio::task::spawn_blocking(move || run_ok(cmd))
        .await
        .unwrap();
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("curl's speed '{out}': {e}"))
}

/// A job of `priority` downloading `name` from nginx, started.
async fn start_download(
    m: &ferry_client::Manager,
    env: &TestEnv,
    name: &str,
    dest: &str,
    priority: Priority,
) -> ferry_client::Job {
    let job = m.create_job(dest).await.unwrap();
    job.add_file(&Nginx::url(name), s(&env.files.join(dest)))
        .await
        .unwrap();
    job.set(JobProperties {
        priority: Some(priority),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    job
}

/// A foreground curl download alone, then next to a `normal` ferry job, then next to a
/// `foreground` one: next to the `normal` job (which yields) curl keeps far more of its
/// solo throughput than next to the `foreground` job (which competes as plain TCP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and curl: .ci/run runs it"]
async fn polite_normal_jobs_yield_to_other_traffic_foreground_jobs_do_not() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = shaped_lab("yield");
    let www = tempfile::tempdir().unwrap();
    random_file(www.path(), "curl.bin", 24 * MIB, 1);
    random_file(www.path(), "big.bin", 128 * MIB, 2);
    let _nginx = Nginx::start(&lab, www.path());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&lab.client_prefix(), &[]);
    let m = manager(&env).await;

    // Measured at most three times until the yield shows: one measurement on a shared
    // host can be disturbed (in one CI run the normal job left curl 0.34 of its speed,
    // 0.93 on an idle machine; CPU, disk and build load beside the test did not
    // reproduce it). A controller that does not yield fails every attempt.
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let solo = curl_speed(&lab, Nginx::url("curl.bin")).await;
        let mut beside = Vec::new();
        for (dest, priority) in [("bg", Priority::Normal), ("fg", Priority::Foreground)] {
            let job = start_download(&m, &env, "big.bin", dest, priority).await;
            wait_bytes(&job, 2 * MIB as u64).await;
            let speed = curl_speed(&lab, Nginx::url("curl.bin")).await;
            let info = job.info().await.unwrap();
            if priority == Priority::Normal {
                // It gave way for all of curl's download (a foreground job, several
                // connections at full speed, may finish first: curl then ends alone).
                assert_eq!(info.state(), JobState::Transferring, "{info:?}");
            }
            let _ = job.cancel().await;
            beside.push(speed);
        }
        let (with_normal, with_foreground) = (beside[0] / solo, beside[1] / solo);
        eprintln!(
            "curl alone {solo:.0} B/s; share kept next to ferry normal {with_normal:.2}, \
             next to ferry foreground {with_foreground:.2}"
        );
        if with_normal > with_foreground * 1.3 && (1.0 - with_normal) * 2.0 < 1.0 - with_foreground
        {
            return;
        }
        attempts.push((with_normal, with_foreground));
    }
    panic!(
        "curl keeps too little of its solo speed next to a normal job, compared with a \
         foreground job; (normal, foreground) per attempt: {attempts:.2?}"
    );
}

/// Idle capacity is used: a `normal` job alone on the shaped link downloads nearly as
/// fast as a `foreground` job of the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and curl: .ci/run runs it"]
async fn polite_a_yielding_job_alone_uses_the_idle_link() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = shaped_lab("idle");
    let www = tempfile::tempdir().unwrap();
    let len = 24 * MIB;
    random_file(www.path(), "f.bin", len, 3);
    let _nginx = Nginx::start(&lab, www.path());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&lab.client_prefix(), &[]);
    let m = manager(&env).await;

    let mut rates = Vec::new();
    for (dest, priority) in [("fg", Priority::Foreground), ("bg", Priority::Normal)] {
        let started = std::time::Instant::now();
        let job = start_download(&m, &env, "f.bin", dest, priority).await;
        let info = settle(&job).await;
        assert_eq!(info.state(), JobState::Transferred, "{info:?}");
        rates.push(len as f64 / started.elapsed().as_secs_f64());
    }
    let (foreground, normal) = (rates[0], rates[1]);
    eprintln!("alone: foreground {foreground:.0} B/s, normal {normal:.0} B/s");
    assert!(
        normal >= 0.75 * foreground,
        "a normal job alone reaches {normal:.0} B/s, a foreground one {foreground:.0} B/s"
    );
}

/// `ferry info` shows a transferring `normal` job as yielding, with its current rate; a
/// `foreground` job as not yielding. The client's view says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (network namespaces), iproute2, nginx and curl: .ci/run runs it"]
async fn polite_info_shows_which_jobs_yield_and_their_rate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = shaped_lab("info");
    let www = tempfile::tempdir().unwrap();
    random_file(www.path(), "big.bin", 64 * MIB, 4);
    let _nginx = Nginx::start(&lab, www.path());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&lab.client_prefix(), &[]);
    let m = manager(&env).await;

    for (dest, priority, yielding) in [
        ("bg", Priority::Normal, "yes"),
        ("fg", Priority::Foreground, "no"),
    ] {
        let job = start_download(&m, &env, "big.bin", dest, priority).await;
        let id = job.id().to_string();
        // The controller says it yields from its first sample of the connection (every
        // SAMPLE_INTERVAL), which can come after the first rate is shown: wait for both.
        let text = wait_until_future(DEADLINE, "ferry info to show a rate", || async {
            let mut cmd = ferry(&env);
            cmd.args(["info", &id]);
            let text = tokio::task::spawn_blocking(move || run_ok(cmd))
                .await
                .unwrap();
            let settled = text
                .lines()
                .any(|l| l.starts_with("yielding:") && l.contains(yielding));
            (text.contains("rate:") && settled).then_some(text)
        })
        .await;
        let line = text
            .lines()
            .find(|l| l.starts_with("yielding:"))
            .unwrap_or_default();
        assert!(
            line.contains(yielding),
            "{priority:?} job, yielding {yielding}: {text}"
        );
        let info = job.info().await.unwrap();
        assert_eq!(info.yielding, yielding == "yes", "{info:?}");
        job.cancel().await.unwrap();
    }
}
