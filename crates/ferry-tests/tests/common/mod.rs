//! Helpers shared by the integration tests: connecting to the test daemon, waiting for
//! job states with a deadline, listing folders, running the `ferry` binary.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_client::{ConnectOptions, Job, JobInfo, JobProperties, JobState, Manager};
use ferry_testkit::{sha256_hex, wait_until_future, TestEnv};
use futures::StreamExt;

/// The longest any test waits for one thing before failing (generous: the machine may be
/// busy running the other tests).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A client connected to the daemon of `env` (never starting one itself).
pub async fn manager(env: &TestEnv) -> Manager {
    Manager::connect_with(ConnectOptions {
        socket: env.socket.clone(),
        autostart: false,
        ..Default::default()
    })
    .await
    .expect("connect to the test daemon")
}

/// Waits until `job` is `transferred`, `error` or final.
pub async fn settle(job: &Job) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait())
        .await
        .expect("the job settles within the deadline")
        .expect("watching the job")
}

/// Waits until the state of `job` satisfies `done`.
pub async fn wait_state(job: &Job, done: impl Fn(JobState) -> bool) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait_for(done))
        .await
        .expect("the job reaches the state within the deadline")
        .expect("watching the job")
}

/// Follows a watch stream (from [`ferry_client::Job::watch`], opened before the changes
/// to observe) until the job's state satisfies `done`; returns every state seen on the way
/// (consecutive duplicates removed) and every snapshot.
pub async fn follow_states<S>(
    stream: S,
    done: impl Fn(JobState) -> bool,
) -> (Vec<JobState>, Vec<JobInfo>)
where
    S: futures::Stream<Item = ferry_client::Result<JobInfo>>,
{
    let mut stream = Box::pin(stream);
    let mut states: Vec<JobState> = Vec::new();
    let mut snapshots = Vec::new();
    let follow = async {
        while let Some(info) = stream.next().await {
            let info = info.expect("watch stream item");
            let state = info.state();
            if states.last() != Some(&state) {
                states.push(state);
            }
            snapshots.push(info);
            if done(state) {
                return;
            }
        }
        panic!("the watch stream ended before the awaited state; states: {states:?}");
    };
    tokio::time::timeout(DEADLINE, follow)
        .await
        .expect("the awaited state comes within the deadline");
    (states, snapshots)
}

/// Polls the job until `bytes_transferred` reaches `at_least`; returns that snapshot.
pub async fn wait_bytes(job: &Job, at_least: u64) -> JobInfo {
    wait_until_future(
        DEADLINE,
        &format!("job {} to transfer {at_least} bytes", job.id()),
        || async {
            let info = job.info().await.expect("job info");
            assert!(
                !matches!(info.state(), JobState::Error) && !info.state().is_final(),
                "the job stopped while waiting for bytes: {info:?}"
            );
            (info.bytes_transferred >= at_least).then_some(info)
        },
    )
    .await
}

/// Retries after a transient error come after 1 s instead of the default minute.
pub async fn fast_retries(job: &Job) {
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .expect("set the retry delay");
}

/// The names in a folder, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// SHA-256 of a file's content (hex).
pub fn file_sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}

/// Runs a command to its end, with its output captured.
pub fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run the command")
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a command that must succeed and print one JSON value.
pub fn run_json(cmd: Command) -> serde_json::Value {
    let out = run_ok(cmd);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the output is not one JSON value ({e}): {out}"))
}

/// The `ferry` binary for `env`, never starting a daemon on its own.
pub fn ferry(env: &TestEnv) -> Command {
    let mut cmd = env.ferry();
    cmd.arg("--no-autostart");
    cmd
}

/// The `Range` start of every request the server recorded, in order.
pub fn range_starts(requests: &[ferry_testkit::RecordedRequest]) -> Vec<Option<u64>> {
    requests.iter().map(|r| r.range_start).collect()
}
