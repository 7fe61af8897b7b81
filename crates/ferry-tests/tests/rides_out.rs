//! The command line and the library as people use them, against a real daemon that is
//! killed (`kill -9`) and started again mid-transfer: `ferry get` and `ferry wait` finish as
//! if nothing happened, a library application's callback object still hears
//! `JobTransferred`; completed files get the creator's umask mode (a replaced file keeps
//! its own); a `ferry get` refused before any transfer leaves no job.
//!
//! `cargo test rides_out` runs them (every test is in the `rides_out` module).

mod common;

mod rides_out {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Child, Output, Stdio};
    use std::sync::Arc;

    use ferry_client::{Callback, CallbackResult, Job, JobInfo, JobState, Manager, Uuid};
    use ferry_testkit::{
        random_bytes, sha256_hex, wait_until_future, Daemon, Mode, TestEnv, TestServer,
    };
    use tokio::sync::mpsc;

    use super::common::*;

    /// 2 MB served at 400 kB/s: about five seconds, long enough to kill the daemon in the
    /// middle.
    const SIZE: usize = 2_000_000;
    const RATE: u64 = 400_000;

    /// Serves `SIZE` random bytes, throttled, at `path`; returns them.
    fn throttled_file(server: &TestServer, path: &str) -> Vec<u8> {
        let data = random_bytes(SIZE, path.len() as u64);
        server.add_file(path, data.clone());
        server.set_mode(
            path,
            Mode {
                throttle_bytes_per_sec: Some(RATE),
                ..Default::default()
            },
        );
        data
    }

    /// Waits until some job of the daemon has moved a quarter of the file; returns it.
    async fn a_job_under_way(m: &Manager) -> JobInfo {
        wait_until_future(DEADLINE, "a job a quarter through", || async {
            let jobs = m.jobs(false).await.expect("list the jobs");
            jobs.into_iter()
                .find(|j| j.bytes_transferred >= SIZE as u64 / 4)
        })
        .await
    }

    /// Kills the daemon with SIGKILL while `job` transfers (checking it did not finish
    /// first) and starts a new one.
    async fn kill_and_restart(env: &TestEnv, daemon: &mut Daemon, job: Uuid) -> Daemon {
        let m = manager(env).await;
        let info = m.job(job).await.unwrap().info().await.unwrap();
        assert_eq!(
            info.state(),
            JobState::Transferring,
            "the job is still under way when the daemon is killed: {info:?}"
        );
        drop(m);
        daemon.kill9();
        env.start_daemon()
    }

    /// Waits for `child` to exit (bounded by the deadline) and returns its output.
    async fn finish(child: Child) -> Output {
        let pid = child.id();
        let child = std::sync::Mutex::new(Some(child));
        wait_until_future(DEADLINE, &format!("process {pid} to exit"), || async {
            let mut guard = child.lock().unwrap();
            let exited = guard.as_mut().unwrap().try_wait().unwrap().is_some();
            exited.then(|| guard.take().unwrap().wait_with_output().unwrap())
        })
        .await
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// What a user reads must be sentences, never a transport error.
    fn assert_no_raw_transport_error(stderr: &str) {
        for raw in ["h2 protocol", "transport error", "code: Unknown", "tonic"] {
            assert!(
                !stderr.contains(raw),
                "a raw transport error reached the user ({raw}): {stderr}"
            );
        }
    }

    /// Stops the daemon `ferry` started on its own (autostart) when dropped, test failed
    /// or not.
    struct StopAutostarted<'a>(&'a TestEnv);

    impl Drop for StopAutostarted<'_> {
        fn drop(&mut self) {
            let _ = ferry(self.0).args(["daemon", "stop"]).output();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_finishes_after_the_daemon_is_killed_and_comes_back() {
        get_across_a_kill(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_starts_the_daemon_again_after_it_is_killed() {
        get_across_a_kill(true).await;
    }

    /// `ferry get` of a throttled file while the daemon is killed: the test starts a new
    /// daemon, or (`autostart`) `ferry get` starts one itself.
    async fn get_across_a_kill(autostart: bool) {
        let env = TestEnv::new();
        let mut daemon = env.start_daemon();
        let _stop = StopAutostarted(&env);
        let server = TestServer::start();
        let data = throttled_file(&server, "/big.iso");
        let out_dir = env.files.join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let dest = out_dir.join("big.iso");
        let mut cmd = if autostart { env.ferry() } else { ferry(&env) };
        cmd.args(["get", &server.url("/big.iso"), "-o", s(&dest)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();

        let m = manager(&env).await;
        let job = a_job_under_way(&m).await;
        drop(m);
        let _daemon = if autostart {
            daemon.kill9();
            None
        } else {
            Some(kill_and_restart(&env, &mut daemon, job.id).await)
        };

        let out = finish(child).await;
        let stderr = text(&out.stderr);
        assert!(
            out.status.success(),
            "ferry get exits 0 after the restart: {}\n{stderr}",
            out.status
        );
        assert_eq!(file_sha(&dest), sha256_hex(&data));
        assert_eq!(dir_entries(&out_dir), vec!["big.iso"], "no part file left");
        assert!(stderr.contains("ferryd went away"), "{stderr}");
        assert!(
            stderr.contains("ferryd is back") && stderr.contains(&job.id.to_string()),
            "{stderr}"
        );
        assert_eq!(
            stderr.contains("started again by ferry"),
            autostart,
            "{stderr}"
        );
        assert!(
            stderr.contains("downloaded 1 file"),
            "the summary: {stderr}"
        );
        assert_no_raw_transport_error(&stderr);
        let m = manager(&env).await;
        let after = m.job(job.id).await.unwrap().info().await.unwrap();
        assert_eq!(
            after.state(),
            JobState::Acknowledged,
            "ferry get completed it"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_finishes_after_the_daemon_is_killed_and_comes_back() {
        let env = TestEnv::new();
        let mut daemon = env.start_daemon();
        let server = TestServer::start();
        let data = throttled_file(&server, "/w.bin");
        let dest = env.files.join("w.bin");
        let m = manager(&env).await;
        let job = m.create_job("waited").await.unwrap();
        job.add_file(&server.url("/w.bin"), s(&dest)).await.unwrap();
        job.resume().await.unwrap();
        let id = job.id().to_string();
        let mut cmd = ferry(&env);
        cmd.args(["wait", &id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        a_job_under_way(&m).await;
        drop((job, m));
        let _daemon = kill_and_restart(&env, &mut daemon, id.parse().unwrap()).await;

        let out = finish(child).await;
        let stderr = text(&out.stderr);
        assert!(
            out.status.success(),
            "ferry wait exits 0 after the restart: {}\n{stderr}",
            out.status
        );
        assert!(
            text(&out.stdout).contains("transferred"),
            "{}",
            text(&out.stdout)
        );
        assert!(stderr.contains("ferryd went away"), "{stderr}");
        assert_no_raw_transport_error(&stderr);
        let mut complete = ferry(&env);
        complete.args(["complete", &id]);
        run_ok(complete);
        assert_eq!(file_sha(&dest), sha256_hex(&data));
    }

    /// Creates jobs named `prefix-N` until `ferry watch` prints one (the subscription may
    /// not be in place yet when the first is created); bounded in count and time.
    async fn create_until_seen(
        m: &Manager,
        lines: &std::sync::mpsc::Receiver<String>,
        prefix: &str,
    ) -> String {
        for n in 0..100 {
            let name = format!("{prefix}-{n}");
            m.create_job(&name).await.expect("create a job");
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                match lines.recv_timeout(left) {
                    Ok(line) if line.contains(&format!("{prefix}-")) => return line,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        panic!("ferry watch never printed the creation of a {prefix} job");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_subscribes_again_after_the_daemon_is_killed_and_comes_back() {
        let env = TestEnv::new();
        let mut daemon = env.start_daemon();
        let mut cmd = ferry(&env);
        cmd.args([
            "watch",
            "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let m = manager(&env).await;
        create_until_seen(&m, &lines, "before").await;
        drop(m);
        daemon.kill9();
        let _daemon = env.start_daemon();
        let m = manager(&env).await;
        let seen = create_until_seen(&m, &lines, "after").await;
        assert!(seen.contains("__InstanceCreationEvent"), "{seen}");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let out = finish(child).await;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
        assert!(stderr.contains("ferryd went away"), "{stderr}");
        assert!(stderr.contains("subscribed again"), "{stderr}");
        assert_no_raw_transport_error(&stderr);
    }

    /// Tells the test when `JobTransferred` arrives.
    struct Application(mpsc::UnboundedSender<Uuid>);

    #[async_trait::async_trait]
    impl Callback for Application {
        async fn job_transferred(&self, _job: Job, info: JobInfo) -> CallbackResult {
            let _ = self.0.send(info.id);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_callback_object_hears_job_transferred_after_the_daemon_comes_back() {
        let env = TestEnv::new();
        let mut daemon = env.start_daemon();
        let server = TestServer::start();
        let data = throttled_file(&server, "/cb.bin");
        let dest = env.files.join("cb.bin");
        // The application: one connection for its whole life, its callback object on the job.
        let app = manager(&env).await;
        let job = app.create_job("called back").await.unwrap();
        job.add_file(&server.url("/cb.bin"), s(&dest))
            .await
            .unwrap();
        let (tx, mut heard) = mpsc::unbounded_channel();
        job.set_notify_interface(Some(Arc::new(Application(tx))))
            .await
            .unwrap();
        job.resume().await.unwrap();
        a_job_under_way(&app).await;
        let _daemon = kill_and_restart(&env, &mut daemon, job.id()).await;
        assert!(
            heard.try_recv().is_err(),
            "nothing was transferred before the kill"
        );

        let id = tokio::time::timeout(DEADLINE, heard.recv())
            .await
            .expect("JobTransferred comes after the restart")
            .expect("the callback object is alive");
        assert_eq!(id, job.id());
        let out = job
            .complete()
            .await
            .expect("the application's connection works again");
        assert_eq!(out.files_committed, 1);
        assert_eq!(file_sha(&dest), sha256_hex(&data));
    }

    /// `ferry get` of `url` to `dest` under `umask`; must succeed.
    fn get_under_umask(env: &TestEnv, url: &str, dest: &Path, umask: libc::mode_t) {
        let mut cmd = ferry(env);
        cmd.args(["get", "-q", url, "-o", s(dest)]);
        // SAFETY: umask(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        run_ok(cmd);
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn completed_files_get_the_mode_of_the_callers_umask() {
        let env = TestEnv::new();
        let _d = env.start_daemon();
        let server = TestServer::start();
        let data = random_bytes(100_000, 7);
        server.add_file("/m.bin", data.clone());
        for (umask, expected) in [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)] {
            let dest = env.files.join(format!("umask-{umask:03o}.bin"));
            get_under_umask(&env, &server.url("/m.bin"), &dest, umask);
            assert_eq!(file_sha(&dest), sha256_hex(&data));
            assert_eq!(
                mode(&dest),
                expected,
                "under umask {umask:03o} a new file is {expected:o}"
            );
        }
    }

    #[test]
    fn a_replaced_destination_keeps_its_mode() {
        let env = TestEnv::new();
        let _d = env.start_daemon();
        let server = TestServer::start();
        let data = random_bytes(100_000, 8);
        server.add_file("/r.bin", data.clone());
        let dest = env.files.join("r.bin");
        std::fs::write(&dest, b"the old content").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
        get_under_umask(&env, &server.url("/r.bin"), &dest, 0o022);
        assert_eq!(file_sha(&dest), sha256_hex(&data), "replaced");
        assert_eq!(mode(&dest), 0o640, "as cp does, the file keeps its mode");
    }

    /// Every job of the daemon, cancelled and acknowledged ones too.
    fn all_jobs(env: &TestEnv) -> Vec<serde_json::Value> {
        let mut list = ferry(env);
        list.args(["--json", "list", "--all"]);
        let out = run_ok(list);
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| match serde_json::from_str(l).unwrap() {
                serde_json::Value::Array(a) => a,
                v => vec![v],
            })
            .collect()
    }

    #[test]
    fn a_get_refused_before_any_transfer_leaves_no_job() {
        let env = TestEnv::new();
        let _d = env.start_daemon();
        let server = TestServer::start();
        server.add_file("/ok.bin", random_bytes(1000, 9));
        let cases = [
            (
                vec!["ftp://127.0.0.1/file.bin".to_string()],
                env.files.join("f.bin"),
                "ftp",
            ),
            (
                vec![server.url("/ok.bin")],
                env.files.join("no-such-folder/ok.bin"),
                "no-such-folder",
            ),
            (
                vec![server.url("/ok.bin"), "ftp://127.0.0.1/second.bin".into()],
                env.files.clone(),
                "ftp",
            ),
        ];
        for (urls, dest, named) in cases {
            let mut cmd = ferry(&env);
            cmd.arg("get").args(&urls).args(["-o", s(&dest)]);
            let out = run(cmd);
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{urls:?} is refused: {stderr}");
            assert!(
                stderr.contains(named),
                "the error names what was wrong ({named}): {stderr}"
            );
            assert_no_raw_transport_error(&stderr);
            assert_eq!(all_jobs(&env), Vec::<serde_json::Value>::new(), "{urls:?}");
        }
        assert_eq!(dir_entries(&env.files), Vec::<String>::new());
        assert_eq!(
            server.request_count("/ok.bin"),
            0,
            "nothing was transferred"
        );
    }

    #[test]
    fn get_takes_headers_and_credentials_like_curl() {
        let env = TestEnv::new();
        let _d = env.start_daemon();
        let server = TestServer::start();
        let data = random_bytes(10_000, 10);
        server.add_file("/auth.bin", data.clone());
        let dest = env.files.join("auth.bin");
        let mut cmd = ferry(&env);
        cmd.args([
            "get",
            &server.url("/auth.bin"),
            "-o",
            s(&dest),
            "-H",
            "X-Token: abc",
            "-u",
            "user:secret",
            "--bandwidth",
            "10M",
        ]);
        run_ok(cmd);
        assert_eq!(file_sha(&dest), sha256_hex(&data));
        let requests = server.requests("/auth.bin");
        let first = requests.first().expect("a request");
        assert_eq!(first.header("x-token"), Some("abc"));
        assert_eq!(
            first.header("authorization"),
            Some("Basic dXNlcjpzZWNyZXQ="),
            "user:secret in base64"
        );
    }
}
