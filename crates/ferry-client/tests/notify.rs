//! Notifications through the public interface, with real processes: callback objects,
//! notification classes and handler activation, notify commands, retries, validation.
//!
//! Starts the real `ferryd` and the examples (the test kit builds them when needed).

mod common;
use common::manager;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::{
    Callback, CallbackResult, ErrorContext, ErrorKind, File, Job, JobInfo, JobProperties, JobState,
    Manager, NotifyFlags, Uuid,
};
use ferry_testkit::{
    example_bin, random_bytes, sha256_hex, wait_until_async, wait_until_future, Fault, TestEnv,
    TestServer,
};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(60);

/// Every callback call, in order: (method, job id, when).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(&'static str, Uuid, Instant)>>,
    events: Option<mpsc::UnboundedSender<&'static str>>,
    complete_on_transfer: bool,
    fail_transferred_times: Mutex<u32>,
    reject_files: bool,
}

impl Recorder {
    fn record(&self, method: &'static str, id: Uuid) {
        self.calls
            .lock()
            .unwrap()
            .push((method, id, Instant::now()));
        if let Some(tx) = &self.events {
            let _ = tx.send(method);
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }
}

#[async_trait::async_trait]
impl Callback for Recorder {
    async fn job_transferred(&self, job: Job, info: JobInfo) -> CallbackResult {
        self.record("job_transferred", info.id);
        {
            let mut left = self.fail_transferred_times.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err("the application is not ready yet".into());
            }
        }
        if self.complete_on_transfer {
            job.complete().await?;
        }
        Ok(())
    }

    async fn job_error(&self, _job: Job, info: JobInfo) -> CallbackResult {
        self.record("job_error", info.id);
        Ok(())
    }

    async fn job_modification(&self, _job: Job, info: JobInfo) -> CallbackResult {
        self.record("job_modification", info.id);
        Ok(())
    }

    async fn file_transferred(&self, _job: Job, file: File) -> CallbackResult {
        self.record("file_transferred", file.info().job_id);
        if self.reject_files {
            assert!(
                Path::new(file.temporary_path()).exists(),
                "the bytes are readable before validation"
            );
            file.set_validation_state(false).await?;
        }
        Ok(())
    }
}

/// A job with one file from `server` (path `/f`), not yet resumed.
async fn job_with_file(
    m: &Manager,
    env: &TestEnv,
    server: &TestServer,
    name: &str,
) -> (Job, Vec<u8>) {
    let data = random_bytes(200_000, name.len() as u64);
    let path = format!("/{name}");
    server.add_file(&path, data.clone());
    let job = m.create_job(name).await.unwrap();
    let dest = env.files.join(name);
    job.add_file(&server.url(&path), dest.to_str().unwrap())
        .await
        .unwrap();
    (job, data)
}

async fn wait_state(job: &Job, state: JobState) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait_for(|s| s == state))
        .await
        .unwrap_or_else(|_| panic!("job {} never reached {state}", job.id()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_completes_job_from_job_transferred_and_flags_select_methods() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;

    // Default flags: job_transferred and job_error only.
    let (job, data) = job_with_file(&m, &env, &server, "a").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rec = Arc::new(Recorder {
        events: Some(tx),
        complete_on_transfer: true,
        ..Default::default()
    });
    job.set_notify_interface(Some(rec.clone())).await.unwrap();
    job.resume().await.unwrap();
    let info = wait_state(&job, JobState::Acknowledged).await;
    assert_eq!(info.files_transferred, 1);
    assert_eq!(rx.recv().await, Some("job_transferred"));
    assert_eq!(
        rec.methods(),
        vec!["job_transferred"],
        "default flags call job_transferred only"
    );
    let written = std::fs::read(env.files.join("a")).unwrap();
    assert_eq!(sha256_hex(&written), sha256_hex(&data));

    // With JOB_MODIFICATION | FILE_TRANSFERRED | JOB_TRANSFERRED, all three are called.
    let (job2, _) = job_with_file(&m, &env, &server, "b").await;
    let rec2 = Arc::new(Recorder {
        complete_on_transfer: true,
        ..Default::default()
    });
    job2.set_notify_flags(
        NotifyFlags::JOB_TRANSFERRED
            | NotifyFlags::JOB_MODIFICATION
            | NotifyFlags::FILE_TRANSFERRED,
    )
    .await
    .unwrap();
    job2.set_notify_interface(Some(rec2.clone())).await.unwrap();
    job2.resume().await.unwrap();
    wait_state(&job2, JobState::Acknowledged).await;
    let methods = rec2.methods();
    assert!(methods.contains(&"job_modification"), "{methods:?}");
    let ft = methods
        .iter()
        .position(|m| *m == "file_transferred")
        .expect("file_transferred called");
    let jt = methods
        .iter()
        .position(|m| *m == "job_transferred")
        .expect("job_transferred called");
    assert!(
        ft < jt,
        "file_transferred comes before job_transferred: {methods:?}"
    );
    assert!(!methods.contains(&"job_error"));

    // DISABLE silences everything.
    let (job3, _) = job_with_file(&m, &env, &server, "c").await;
    let rec3 = Arc::new(Recorder::default());
    job3.set_notify_flags(NotifyFlags::DISABLE | NotifyFlags::JOB_TRANSFERRED)
        .await
        .unwrap();
    job3.set_notify_interface(Some(rec3.clone())).await.unwrap();
    job3.resume().await.unwrap();
    wait_state(&job3, JobState::Transferred).await;
    job3.complete().await.unwrap();
    assert!(
        rec3.methods().is_empty(),
        "DISABLE silences all: {:?}",
        rec3.methods()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_set_notify_interface_wins() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let first_client = manager(&env).await;
    let second_client = manager(&env).await;
    let (job, _) = job_with_file(&first_client, &env, &server, "x").await;
    let first = Arc::new(Recorder::default());
    let second = Arc::new(Recorder {
        complete_on_transfer: true,
        ..Default::default()
    });
    job.set_notify_interface(Some(first.clone())).await.unwrap();
    second_client
        .job(job.id())
        .await
        .unwrap()
        .set_notify_interface(Some(second.clone()))
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Acknowledged).await;
    assert_eq!(second.methods(), vec!["job_transferred"]);
    assert!(
        first.methods().is_empty(),
        "only the last interface is called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_callback_is_retried_after_minimum_retry_delay() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "r").await;
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let rec = Arc::new(Recorder {
        complete_on_transfer: true,
        fail_transferred_times: Mutex::new(1),
        ..Default::default()
    });
    job.set_notify_interface(Some(rec.clone())).await.unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Acknowledged).await;
    let calls = rec.calls.lock().unwrap().clone();
    assert_eq!(
        calls.len(),
        2,
        "one failed call, one retry: {:?}",
        rec.methods()
    );
    let gap = calls[1].2 - calls[0].2;
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before the 1 s retry delay"
    );
    // The failure was recorded, then cleared once the retry succeeded.
    wait_until_future(DEADLINE, "the notification error to clear", || {
        let job = job.clone();
        async move {
            job.info()
                .await
                .ok()?
                .last_notification_error
                .is_empty()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_file_ends_in_validation_error_and_leaves_no_file() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "v").await;
    job.set_notify_flags(NotifyFlags::FILE_TRANSFERRED | NotifyFlags::JOB_ERROR)
        .await
        .unwrap();
    let rec = Arc::new(Recorder {
        reject_files: true,
        ..Default::default()
    });
    job.set_notify_interface(Some(rec.clone())).await.unwrap();
    job.resume().await.unwrap();
    let info = wait_state(&job, JobState::Error).await;
    let err = info.error.expect("an error record");
    assert_eq!(err.context, Some(ErrorContext::Validation));
    let files = job.files().await.unwrap();
    assert!(
        !Path::new(&files[0].temporary_path).exists(),
        "the part file is discarded"
    );
    // job_error is due while the job stays in `error`: wait for it before completing.
    wait_until_async(DEADLINE, "job_error delivered", || {
        rec.methods().contains(&"job_error").then_some(())
    })
    .await;
    job.complete().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&env.files).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_command_runs_with_job_environment() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "cmd").await;
    let out = env.dir.path().join("cmd.out");
    job.set_notify_command(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "echo \"$FERRY_JOB_ID $FERRY_JOB_STATE\" > {}",
            out.display()
        ),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    let text = wait_until_async(DEADLINE, "the notify command's output", || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    assert_eq!(text.trim(), format!("{} transferred", job.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_command_runs_for_the_events_its_flags_select_and_its_output_is_logged() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "flagged").await;
    let runs = env.dir.path().join("runs");
    job.set_notify_flags(NotifyFlags::JOB_ERROR).await.unwrap();
    job.set_notify_command(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "echo \"$FERRY_JOB_STATE\" >> {}; echo said $FERRY_JOB_STATE; echo complained >&2",
            runs.display()
        ),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    // The application rejects the file: the job enters `error`, which the flags select.
    job.file(0)
        .await
        .unwrap()
        .set_validation_state(false)
        .await
        .unwrap();
    let ran = wait_until_async(DEADLINE, "the notify command's run", || {
        std::fs::read_to_string(&runs)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    assert_eq!(
        ran, "error\n",
        "run for job_error only, not for transferred"
    );
    let error = job.info().await.unwrap().error.expect("the rejection");
    assert!(
        error.message.ends_with("): it was discarded"),
        "{}",
        error.message
    );

    // Its output is in the daemon's log of notify commands, each line after the job id.
    let log = env.state_dir.join("notify-commands.log");
    let text = wait_until_async(DEADLINE, "the command's output in the log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("said") && t.contains("complained"))
    })
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&format!("{}: said error", job.id()).as_str()),
        "{text}"
    );
    assert!(
        lines.contains(&format!("{}: complained", job.id()).as_str()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_program_that_cannot_run_is_refused() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let class = Uuid::new_v4();
    let missing = env.dir.path().join("no-such-handler");
    let not_executable = env.dir.path().join("handler.txt");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    for program in [&missing, &not_executable] {
        let e = m
            .register_handler(class, vec![program.display().to_string()], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(e.reason().as_deref(), Some("HANDLER_PROGRAM_NOT_RUNNABLE"));
        assert!(
            e.to_string().contains(&program.display().to_string()),
            "{e}"
        );
    }
    assert!(m.handlers().await.unwrap().is_empty(), "nothing registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_starts_handler_that_completes_the_job() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let class = Uuid::new_v4();
    let workdir = env.dir.path().join("handler");
    std::fs::create_dir_all(&workdir).unwrap();
    let job_id;
    let data;
    {
        // The application: registers the handler, creates the job, and goes away.
        let app = manager(&env).await;
        app.register_handler(
            class,
            vec![example_bin("notify_handler").display().to_string()],
            Some(workdir.display().to_string()),
        )
        .await
        .unwrap();
        let (job, d) = job_with_file(&app, &env, &server, "act").await;
        job.set_notification_class(class).await.unwrap();
        job.resume().await.unwrap();
        job_id = job.id();
        data = d;
    }
    let marker = workdir.join(format!("ferry-handled-{job_id}"));
    wait_until_async(DEADLINE, "the activated handler's marker", || {
        marker.exists().then_some(())
    })
    .await;
    let m = manager(&env).await;
    let job = m.job(job_id).await.unwrap();
    let info = wait_state(&job, JobState::Acknowledged).await;
    assert_eq!(info.files_transferred, 1);
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("act")).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_after_daemon_restart_between_transferred_and_delivery() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let server = TestServer::start();
    let class = Uuid::new_v4();
    let workdir = env.dir.path().join("handler");
    std::fs::create_dir_all(&workdir).unwrap();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "restart").await;
    job.set(JobProperties {
        notification_class: Some(class),
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    // No handler yet: the notification stays undelivered in the outbox.
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    let failure = wait_until_future(DEADLINE, "the delivery failure to be recorded", || {
        let job = job.clone();
        async move {
            let info = job.info().await.ok()?;
            (!info.last_notification_error.is_empty()).then_some(info.last_notification_error)
        }
    })
    .await;
    assert!(failure.contains("no handler"), "{failure}");
    drop(m);
    daemon.kill9();

    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    m.register_handler(
        class,
        vec![example_bin("notify_handler").display().to_string()],
        Some(workdir.display().to_string()),
    )
    .await
    .unwrap();
    let marker = workdir.join(format!("ferry-handled-{}", job.id()));
    wait_until_async(DEADLINE, "the handler's marker after the restart", || {
        marker.exists().then_some(())
    })
    .await;
    let job = m.job(job.id()).await.unwrap();
    wait_state(&job, JobState::Acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_of_missing_handler_is_a_recorded_failure() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let class = Uuid::new_v4();
    // Registration checks the program; it is removed afterwards, before activation.
    let program = env.dir.path().join("vanishing-handler");
    std::fs::copy("/bin/true", &program).unwrap();
    m.register_handler(class, vec![program.display().to_string()], None)
        .await
        .unwrap();
    std::fs::remove_file(&program).unwrap();
    let (job, _) = job_with_file(&m, &env, &server, "missing").await;
    job.set(JobProperties {
        notification_class: Some(class),
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    let failure = wait_until_future(DEADLINE, "the activation failure to be recorded", || {
        let job = job.clone();
        async move {
            let info = job.info().await.ok()?;
            (!info.last_notification_error.is_empty()).then_some(info.last_notification_error)
        }
    })
    .await;
    assert!(failure.contains("cannot start the handler"), "{failure}");
    // The daemon is unharmed: another job runs to the end.
    let (other, data) = job_with_file(&m, &env, &server, "other").await;
    other.resume().await.unwrap();
    wait_state(&other, JobState::Transferred).await;
    other.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(env.files.join("other")).unwrap()),
        sha256_hex(&data)
    );
    assert!(m.status().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_is_never_called_again_and_its_job_falls_back_to_its_class() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let class = Uuid::new_v4();
    let workdir = env.dir.path().join("handler");
    std::fs::create_dir_all(&workdir).unwrap();
    let m = manager(&env).await;
    m.register_handler(
        class,
        vec![example_bin("notify_handler").display().to_string()],
        Some(workdir.display().to_string()),
    )
    .await
    .unwrap();

    // A real client process registers its callback object for a job whose server stalls.
    server.add_file("/held", random_bytes(100_000, 9));
    server.push_fault("/held", Fault::StallAfter(1000));
    let dest = env.files.join("held");
    /// Kills the client process however the test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut client = std::process::Command::new(example_bin("notify_callback"))
        .arg(server.url("/held"))
        .arg(&dest)
        .env("FERRY_SOCKET", &env.socket)
        .env("FERRY_STATE_DIR", &env.state_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let job = wait_until_future(DEADLINE, "the client's job to transfer", || {
        let m = m.clone();
        async move {
            let jobs = m.jobs(false).await.ok()?;
            jobs.into_iter()
                .find(|j| j.bytes_transferred > 0)
                .map(|j| m.job_unchecked(j.id))
        }
    })
    .await;
    job.set_notification_class(class).await.unwrap();
    client.0.kill().unwrap();
    client.0.wait().unwrap();
    server.release_stalls();
    let marker = workdir.join(format!("ferry-handled-{}", job.id()));
    wait_until_async(DEADLINE, "the class handler to take over", || {
        marker.exists().then_some(())
    })
    .await;
    wait_state(&job, JobState::Acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_callback_object_receives_undelivered_job_transferred_at_once() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let (job, _) = job_with_file(&m, &env, &server, "late").await;
    // A long retry delay: "at once" must not wait for it.
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    // The application restarts (a new connection) and registers its callback object.
    let restarted = manager(&env).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rec = Arc::new(Recorder {
        events: Some(tx),
        complete_on_transfer: true,
        ..Default::default()
    });
    restarted
        .job(job.id())
        .await
        .unwrap()
        .set_notify_interface(Some(rec.clone()))
        .await
        .unwrap();
    let first = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
    assert_eq!(first, Some("job_transferred"));
    wait_state(&job, JobState::Acknowledged).await;
}
