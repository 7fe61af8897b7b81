//! Helpers shared by the integration tests of ferry-client (each test binary uses some).
#![allow(dead_code)]

use std::time::Duration;

use ferry_client::{ConnectOptions, Job, JobInfo, Manager};
use ferry_testkit::TestEnv;

/// How long `wait_done` waits for a job to settle.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// A client of the test daemon of `env` (never autostarts one).
pub async fn manager(env: &TestEnv) -> Manager {
    Manager::connect_with(ConnectOptions {
        socket: env.socket.clone(),
        autostart: false,
        ..Default::default()
    })
    .await
    .expect("connect to the test daemon")
}

/// Waits until `job` is transferred or has failed, at most `SETTLE_DEADLINE`.
pub async fn wait_done(job: &Job) -> JobInfo {
    tokio::time::timeout(SETTLE_DEADLINE, job.wait())
        .await
        .expect("the job settles")
        .unwrap()
}
