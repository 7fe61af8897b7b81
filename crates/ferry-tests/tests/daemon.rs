//! The daemon as a process: crash (SIGKILL) and orderly stop (SIGTERM) mid-transfer with
//! resume after restart, one daemon per socket, stale sockets, and peers of another uid.

mod common;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use ferry_client::{JobInfo, JobState};
use ferry_testkit::{
    random_bytes, sha256_hex, target_dir_bin, wait_until, Mode, TestEnv, TestServer,
};

const NOBODY: u32 = 65534;

/// Starts a throttled download of `data` (served at `/big`) in the running daemon and
/// returns the job once it has moved `at_least` bytes.
async fn start_throttled(
    env: &TestEnv,
    server: &TestServer,
    data: &[u8],
    rate: u64,
    at_least: u64,
) -> JobInfo {
    server.add_file("/big", data.to_vec());
    server.set_mode(
        "/big",
        Mode {
            throttle_bytes_per_sec: Some(rate),
            ..Default::default()
        },
    );
    let m = manager(env).await;
    let job = m.create_job("survivor").await.unwrap();
    fast_retries(&job).await;
    job.add_file(&server.url("/big"), s(&env.files.join("big.bin")))
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_bytes(&job, at_least).await
}

/// After a restart: the job finishes on its own (no resume), having continued with a range
/// request; checks the bytes and returns the range start.
async fn finish_after_restart(
    env: &TestEnv,
    server: &TestServer,
    data: &[u8],
    id: ferry_client::Uuid,
) -> u64 {
    let m = manager(env).await;
    let job = m.job(id).await.expect("the job survived the restart");
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{:?}", info.error);
    let requests = server.requests("/big");
    assert!(requests.len() >= 2, "{requests:?}");
    let resumed_at = requests[1]
        .range_start
        .expect("the first request after the restart asks for a range");
    assert!(
        resumed_at > 0 && resumed_at < data.len() as u64,
        "resumed at {resumed_at}"
    );
    assert_eq!(
        requests[1].header("if-range"),
        server.etag("/big").as_deref()
    );
    assert!(!env.files.join("big.bin").exists(), "not before complete");
    let out = job.complete().await.unwrap();
    assert_eq!(out.files_committed, 1);
    assert_eq!(file_sha(&env.files.join("big.bin")), sha256_hex(data));
    assert_eq!(dir_entries(&env.files), vec!["big.bin"]);
    resumed_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_transfer_resumes_from_the_last_checkpoint() {
    let env = TestEnv::new();
    let server = TestServer::start();
    let data = random_bytes(4 << 20, 101);
    let mut daemon = env.start_daemon();
    // 256 KiB/s: 1 MiB takes about 4 s, during which the daemon records its progress
    // about every second.
    let info = start_throttled(&env, &server, &data, 256 << 10, 1 << 20).await;
    daemon.kill9();
    assert_eq!(server.request_count("/big"), 1);
    assert!(!env.files.join("big.bin").exists());

    // The restarted daemon gets the rest at full speed.
    server.set_mode("/big", Mode::default());
    let _daemon = env.start_daemon();
    finish_after_restart(&env, &server, &data, info.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_exits_zero_and_the_job_resumes_after_restart() {
    let env = TestEnv::new();
    let server = TestServer::start();
    let data = random_bytes(4 << 20, 102);
    let mut daemon = env.start_daemon();
    let info = start_throttled(&env, &server, &data, 256 << 10, 300_000).await;
    // `terminate` fails the test if the daemon takes more than 30 s.
    let status = daemon.terminate();
    assert!(status.success(), "ferryd exited with {status}");
    assert!(!env.socket.exists(), "an orderly stop removes the socket");

    server.set_mode("/big", Mode::default());
    let _daemon = env.start_daemon();
    let resumed_at = finish_after_restart(&env, &server, &data, info.id).await;
    // An orderly stop checkpoints everything it has: at least what was seen before.
    assert!(
        resumed_at >= info.bytes_transferred,
        "resumed at {resumed_at}, but {} bytes were reported before the stop",
        info.bytes_transferred
    );
}

/// Runs `cmd` to its end (at most [`DEADLINE`]); returns its exit status and stderr.
fn run_bounded(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_until(DEADLINE, "the process to exit", || {
        child.try_wait().expect("try_wait")
    });
    let out = child.wait_with_output().expect("collect the output");
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_the_same_socket_refuses_to_start() {
    let env = TestEnv::new();
    let mut first = env.start_daemon();
    let mut second = Command::new(target_dir_bin("ferryd"));
    second.envs(env.envs());
    let (status, stderr) = run_bounded(second);
    assert!(!status.success(), "the second ferryd must not start");
    assert!(
        stderr.contains("already running"),
        "the message says why: {stderr}"
    );
    // The first one is unharmed.
    assert!(first.exit_status().is_none());
    let status = manager(&env).await.status().await.unwrap();
    assert_eq!(status.pid, first.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced() {
    let env = TestEnv::new();
    let run_dir = env.socket.parent().unwrap();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(run_dir)
        .unwrap();
    // A socket file nobody listens on, as a crashed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    assert!(std::os::unix::net::UnixStream::connect(&env.socket).is_err());

    let daemon = env.start_daemon();
    let m = manager(&env).await;
    assert_eq!(m.status().await.unwrap().pid, daemon.pid());
    let job = m.create_job("after a stale socket").await.unwrap();
    assert_eq!(job.info().await.unwrap().state(), JobState::Suspended);
}

/// A copy of `ferry` that nobody may run: the target directory may sit in a folder other
/// users cannot enter (a checkout made in `mktemp -d` is 0700). The copy lives as long as
/// the returned folder.
fn ferry_for_everyone() -> (tempfile::TempDir, PathBuf) {
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = public.path().join("ferry");
    std::fs::copy(target_dir_bin("ferry"), &copy).unwrap();
    (public, copy)
}

/// `ferry ARGS` (the copy at `ferry`) as uid/gid 65534 (nobody), never starting a daemon.
fn ferry_as_nobody(
    ferry: &Path,
    env: &TestEnv,
    args: &[&str],
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(ferry);
    cmd.envs(env.envs())
        .arg("--no-autostart")
        .args(args)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY);
    run_bounded(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (runs ferry as nobody): .ci/run runs it"]
async fn peer_with_another_uid_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "running as nobody needs root (.ci/run runs this as root)"
    );
    let (_public, ferry_copy) = ferry_for_everyone();
    let env = TestEnv::new();
    let daemon = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    server.add_file("/x", random_bytes(1000, 7));
    let job = m.create_job("mine").await.unwrap();
    job.add_file(&server.url("/x"), s(&env.files.join("x")))
        .await
        .unwrap();
    let jobs_before = m.jobs(true).await.unwrap();
    let id = job.id().to_string();

    // The socket folder is private (0700): another user cannot even reach the socket.
    let run_dir = env.socket.parent().unwrap();
    let mode = std::fs::metadata(run_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the daemon creates its socket folder 0700");
    let (status, stderr) = ferry_as_nobody(&ferry_copy, &env, &["list"]);
    assert!(!status.success());
    assert!(
        stderr.to_lowercase().contains("permission denied"),
        "{stderr}"
    );

    // With every file mode opened up, the daemon itself must refuse the other uid.
    let open = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(env.dir.path(), 0o755);
    open(run_dir, 0o777);
    open(&env.socket, 0o777);
    for args in [
        vec!["list"],
        vec!["info", id.as_str()],
        vec!["cancel", id.as_str()],
        vec!["resume", id.as_str()],
        vec!["create", "intruder"],
    ] {
        let (status, stderr) = ferry_as_nobody(&ferry_copy, &env, &args);
        assert!(!status.success(), "ferry {args:?} as nobody succeeded");
        assert!(
            stderr.contains("this ferryd serves uid"),
            "ferry {args:?}: the daemon itself refuses (PERMISSION_DENIED): {stderr}"
        );
        assert!(
            stderr.contains(&format!("uid {NOBODY}")),
            "ferry {args:?}: the message names the refused uid: {stderr}"
        );
    }
    assert_eq!(m.jobs(true).await.unwrap(), jobs_before, "nothing changed");
    assert_eq!(m.status().await.unwrap().pid, daemon.pid());
    assert!(dir_entries(&env.files).is_empty());
}
