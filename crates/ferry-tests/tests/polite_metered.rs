//! Metered networks: ferryd reads NetworkManager's `Metered` property over the system
//! D-Bus and holds background jobs back while the network is metered. Each test runs a
//! private `dbus-daemon` and, where NetworkManager should be present, a stand-in that
//! serves its `Metered` property and signals its changes (`metered_kit`); ferryd is the
//! real daemon, pointed at the private bus with `DBUS_SYSTEM_BUS_ADDRESS`.
//! `cargo test polite` runs them (with the other polite tests).
//!
//! Why a stand-in and not NetworkManager itself: `NetworkManager --no-daemon` does start
//! on a private bus inside a network namespace of the test (with its run and state
//! folders on tmpfs in a mount namespace) and answers `Metered`, but where no udev runs
//! (containers, this CI) it leaves every interface "strictly unmanaged", so no connection
//! profile can be activated and `Metered` never leaves 0 (unknown); running udevd would act
//! on the host's devices.

mod common;
mod metered_kit;

use common::*;
use ferry_client::{Job, JobInfo, JobProperties, JobState, Manager, Priority};
use ferry_testkit::{random_bytes, sha256_hex, wait_until_future, Mode, TestEnv, TestServer};
use metered_kit::{NetworkManagerStandIn, PrivateBus, NM_METERED_NO, NM_METERED_YES};

const KIB: u64 = 1024;
const MIB: usize = 1 << 20;

/// A job of `priority` fetching `name` from `server` into the test's files folder, not
/// resumed yet.
async fn job(m: &Manager, env: &TestEnv, server: &TestServer, name: &str, p: Priority) -> Job {
    let job = m.create_job(name).await.unwrap();
    job.add_file(&server.url(&format!("/{name}")), s(&env.files.join(name)))
        .await
        .unwrap();
    job.set(JobProperties {
        priority: Some(p),
        ..Default::default()
    })
    .await
    .unwrap();
    job
}

/// Polls the job until `ok` holds; returns that snapshot.
async fn wait_info(job: &Job, what: &str, ok: impl Fn(&JobInfo) -> bool) -> JobInfo {
    wait_until_future(DEADLINE, &format!("job {}: {what}", job.id()), || async {
        let info = job.info().await.expect("job info");
        ok(&info).then_some(info)
    })
    .await
}

/// True for a job held back by the metered network.
fn held(i: &JobInfo) -> bool {
    i.state() == JobState::Queued && i.waiting_for_unmetered
}

/// Polls the daemon's status until `ok` holds on its JSON form.
async fn wait_status(m: &Manager, what: &str, ok: impl Fn(&ferry_client::DaemonStatus) -> bool) {
    wait_until_future(
        DEADLINE,
        &format!("the daemon's status: {what}"),
        || async {
            let st = m.status().await.expect("status");
            ok(&st).then_some(())
        },
    )
    .await
}

/// Completes `job` and checks the file's bytes against `data`.
async fn complete_and_check(job: &Job, env: &TestEnv, name: &str, data: &[u8]) {
    job.complete().await.unwrap();
    assert_eq!(
        file_sha(&env.files.join(name)),
        sha256_hex(data),
        "{name} has the right bytes"
    );
}

/// A metered network stops a running `normal` job (its progress kept, state `queued`,
/// marked as waiting for an unmetered network, visible in `ferry info` and `--json`) and
/// not a `foreground` one; `ferry daemon status` says the network is metered and that
/// NetworkManager said so. When the network is unmetered again the held job starts by
/// itself, resumes where it stopped, and completes with the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: .ci/run runs it"]
async fn polite_metered_network_pauses_background_not_foreground_and_resumes_it() {
    let bus = PrivateBus::start();
    let nm = NetworkManagerStandIn::start(&bus, NM_METERED_NO).await;
    let server = TestServer::start();
    let (bg_data, fg_data) = (random_bytes(3 * MIB, 1), random_bytes(3 * MIB, 2));
    server.add_file("/bg.bin", bg_data.clone());
    server.add_file("/fg.bin", fg_data.clone());
    let slow = Mode {
        throttle_bytes_per_sec: Some(512 * KIB),
        ..Default::default()
    };
    server.set_mode("/bg.bin", slow.clone());
    server.set_mode("/fg.bin", slow);
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&bus.daemon_prefix(), &[]);
    let m = manager(&env).await;
    wait_status(&m, "follows NetworkManager", |st| {
        st.network_cost_source == "NetworkManager (Metered: no)" && !st.network_metered
    })
    .await;

    let bg = job(&m, &env, &server, "bg.bin", Priority::Normal).await;
    let fg = job(&m, &env, &server, "fg.bin", Priority::Foreground).await;
    bg.resume().await.unwrap();
    fg.resume().await.unwrap();
    wait_bytes(&bg, 256 * KIB).await;
    wait_bytes(&fg, 256 * KIB).await;

    nm.set_metered(NM_METERED_YES).await;
    wait_info(&bg, "held by the metered network", held).await;
    // The foreground job is the clock: while it moves 2 × 128 KiB, the held one moves
    // nothing, and what it had is kept.
    let fg_at = fg.info().await.unwrap().bytes_transferred;
    wait_bytes(&fg, fg_at + 128 * KIB).await;
    let bg_a = bg.info().await.unwrap();
    let fg_b = wait_bytes(&fg, fg_at + 256 * KIB).await;
    let bg_b = bg.info().await.unwrap();
    assert!(held(&bg_b), "still held: {bg_b:?}");
    assert_eq!(
        bg_a.bytes_transferred, bg_b.bytes_transferred,
        "held: no bytes"
    );
    assert!(
        bg_b.bytes_transferred >= 256 * KIB,
        "progress kept: {bg_b:?}"
    );
    assert!(bg_b.error.is_none(), "not failed: {bg_b:?}");
    assert!(
        !fg_b.waiting_for_unmetered,
        "foreground continues: {fg_b:?}"
    );

    let id = bg.id().to_string();
    let info = run_ok({
        let mut c = ferry(&env);
        c.args(["info", &id]);
        c
    });
    assert!(info.contains("state:            queued"), "{info}");
    assert!(
        info.contains("waiting:          the network is metered"),
        "{info}"
    );
    assert!(
        info.contains("on metered:       pause (by its priority)"),
        "{info}"
    );
    let json = run_json({
        let mut c = ferry(&env);
        c.args(["--json", "info", &id]);
        c
    });
    assert_eq!(json["waiting_for_unmetered"], true, "{json}");
    let status = run_ok({
        let mut c = ferry(&env);
        c.args(["daemon", "status"]);
        c
    });
    assert!(
        status.contains("network:  metered (NetworkManager (Metered: yes))"),
        "{status}"
    );

    nm.set_metered(NM_METERED_NO).await;
    let done = wait_state(&bg, |s| s == JobState::Transferred).await;
    assert!(!done.waiting_for_unmetered, "{done:?}");
    complete_and_check(&bg, &env, "bg.bin", &bg_data).await;
    let starts = range_starts(&server.requests("/bg.bin"));
    assert!(
        starts.iter().any(|s| s.is_some_and(|at| at > 0)),
        "the held job resumed where it stopped: {starts:?}"
    );
    settle(&fg).await;
    complete_and_check(&fg, &env, "fg.bin", &fg_data).await;
}

/// On a metered network, `ferry set J --on-metered continue` lets a `normal` job run while
/// another `normal` job keeps waiting; raising that one to `high` (which continues by
/// default) lets it run too. A policy ferry does not know is refused with the ones it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: .ci/run runs it"]
async fn polite_metered_continue_policy_keeps_a_normal_job_running() {
    let bus = PrivateBus::start();
    let _nm = NetworkManagerStandIn::start(&bus, NM_METERED_YES).await;
    let server = TestServer::start();
    let (a_data, b_data) = (random_bytes(MIB, 3), random_bytes(MIB, 4));
    server.add_file("/a.bin", a_data.clone());
    server.add_file("/b.bin", b_data.clone());
    let env = TestEnv::new();
    let _d = env.start_daemon_wrapped(&bus.daemon_prefix(), &[]);
    let m = manager(&env).await;
    wait_status(&m, "metered", |st| st.network_metered).await;

    let waits = job(&m, &env, &server, "a.bin", Priority::Normal).await;
    let goes = job(&m, &env, &server, "b.bin", Priority::Normal).await;
    waits.resume().await.unwrap();
    goes.resume().await.unwrap();
    wait_info(&waits, "held", held).await;
    wait_info(&goes, "held", held).await;

    let set = |id: String, args: &[&str]| {
        let mut c = ferry(&env);
        c.args(["set", &id]).args(args);
        c
    };
    let refused = run(set(waits.id().to_string(), &["--on-metered", "sometimes"]));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("unknown metered policy 'sometimes' (expected one of: pause, continue)"),
        "{err}"
    );

    run_ok(set(goes.id().to_string(), &["--on-metered", "continue"]));
    let done = wait_state(&goes, |s| s == JobState::Transferred).await;
    assert_eq!(done.bytes_transferred, MIB as u64);
    let info = run_ok({
        let mut c = ferry(&env);
        c.args(["info", &goes.id().to_string()]);
        c
    });
    assert!(info.contains("on metered:       continue"), "{info}");
    complete_and_check(&goes, &env, "b.bin", &b_data).await;
    // The other one waited all along.
    let still = waits.info().await.unwrap();
    assert!(held(&still), "{still:?}");
    assert_eq!(still.bytes_transferred, 0);
    assert_eq!(
        server.request_count("/a.bin"),
        0,
        "nothing was asked for it"
    );

    run_ok(set(waits.id().to_string(), &["--priority", "high"]));
    wait_state(&waits, |s| s == JobState::Transferred).await;
    complete_and_check(&waits, &env, "a.bin", &a_data).await;
}

/// Without any system bus, ferryd says so once in its log, reports the network as
/// unmetered and where that came from, and transfers background jobs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polite_metered_no_bus_logs_once_and_transfers_as_unmetered() {
    let nowhere = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let data = random_bytes(MIB, 5);
    server.add_file("/c.bin", data.clone());
    let env = TestEnv::new();
    let address = format!(
        "DBUS_SYSTEM_BUS_ADDRESS=unix:path={}",
        nowhere.path().join("no-bus").display()
    );
    let d = env.start_daemon_wrapped(&["env".into(), address], &[]);
    let m = manager(&env).await;
    wait_status(&m, "no bus", |st| {
        st.network_cost_source.starts_with("no system D-Bus") && !st.network_metered
    })
    .await;
    let c = job(&m, &env, &server, "c.bin", Priority::Normal).await;
    c.resume().await.unwrap();
    wait_state(&c, |s| s == JobState::Transferred).await;
    complete_and_check(&c, &env, "c.bin", &data).await;
    let json = run_json({
        let mut cmd = ferry(&env);
        cmd.args(["--json", "daemon", "status"]);
        cmd
    });
    assert_eq!(json["network_metered"], false, "{json}");
    let log = d.log_text();
    assert_eq!(
        log.matches("no system D-Bus").count(),
        1,
        "said once:\n{log}"
    );
}

/// NetworkManager starting after ferryd is followed (`NameOwnerChanged`): a metered
/// network then holds a background job back; NetworkManager leaving the bus makes the
/// network unmetered again, and the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon: .ci/run runs it"]
async fn polite_metered_networkmanager_appearing_later_is_followed() {
    let bus = PrivateBus::start();
    let server = TestServer::start();
    let data = random_bytes(MIB, 6);
    server.add_file("/d.bin", data.clone());
    let env = TestEnv::new();
    let d = env.start_daemon_wrapped(&bus.daemon_prefix(), &[]);
    let m = manager(&env).await;
    wait_status(&m, "NetworkManager absent", |st| {
        st.network_cost_source == "NetworkManager is not running: taken as unmetered"
    })
    .await;

    let nm = NetworkManagerStandIn::start(&bus, NM_METERED_YES).await;
    wait_status(&m, "metered", |st| {
        st.network_metered && st.network_cost_source == "NetworkManager (Metered: yes)"
    })
    .await;
    let job = job(&m, &env, &server, "d.bin", Priority::Low).await;
    job.resume().await.unwrap();
    wait_info(&job, "held", held).await;
    assert_eq!(server.request_count("/d.bin"), 0);

    drop(nm);
    wait_state(&job, |s| s == JobState::Transferred).await;
    complete_and_check(&job, &env, "d.bin", &data).await;
    let st = m.status().await.unwrap();
    assert!(!st.network_metered);
    assert_eq!(
        st.network_cost_source,
        "NetworkManager left the system bus: taken as unmetered"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("NetworkManager is not on the system bus")
            .count(),
        1,
        "said once:\n{log}"
    );
}
