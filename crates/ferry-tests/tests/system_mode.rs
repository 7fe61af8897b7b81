//! The system-wide ferryd with real users (`cargo test system_mode`): who sees and
//! manages which jobs, the admin group, the limits. The files written and read for a job
//! are in `system_mode_files.rs`, the processes started for it in `system_mode_run_as.rs`,
//! the Debian package in `system_mode_package.rs`.

mod system;

use std::time::Duration;

use ferry_proto::v1 as pb;
use system::{users, SystemEnv, User};
use tokio_stream_like::next_event;

/// Runs `ferry` as `user` with `args`, expecting a refusal that says the job is not
/// found for them (another user's job does not exist for them).
fn refused(env: &SystemEnv, user: &User, args: &[&str]) {
    let err = env.ferry(user, args).expect_err(&format!("{args:?}"));
    assert!(
        err.to_lowercase().contains("not found") || err.to_lowercase().contains("no job"),
        "{args:?} by {} should say the job is not found: {err}",
        user.name
    );
}

fn ids_in_list(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("list --json");
    v.as_array()
        .expect("an array of jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_isolation_of_users_and_admins() {
    let users = users("system_mode_isolation_of_users_and_admins");
    let env = SystemEnv::start(users, "");
    let (a, b, admin) = (&users.a, &users.b, &users.admin);
    let job_a = env.create(a, "a-job");
    let job_b = env.create(b, "b-job");
    env.ferry(a, &["add-file", &job_a, "http://127.0.0.1:9/x", "x"])
        .expect_ok("A adds a file to A's job");

    // B cannot see or touch A's job, through any command.
    for args in [
        vec!["info", &job_a],
        vec!["files", &job_a],
        vec!["resume", &job_a],
        vec!["suspend", &job_a],
        vec!["complete", &job_a],
        vec!["cancel", &job_a],
        vec!["set", &job_a, "--name", "stolen"],
        vec!["add-file", &job_a, "http://127.0.0.1:9/x", "x"],
    ] {
        refused(&env, b, &args);
    }
    let listed_by_b = ids_in_list(&env.ferry(b, &["--json", "list", "--all"]).expect_ok("list"));
    assert_eq!(listed_by_b, vec![job_b.clone()], "B lists only B's job");
    let queried = env
        .ferry(b, &["--json", "query", "SELECT id, owner_uid FROM Job"])
        .expect_ok("query");
    assert!(
        queried.contains(&job_b) && !queried.contains(&job_a),
        "B's query shows only B's job: {queried}"
    );
    let err = env
        .ferry(b, &["list", "--all-users"])
        .expect_err("list --all-users by B");
    assert!(
        err.contains("ferrytest-admins") || err.to_lowercase().contains("admin"),
        "the refusal names the admin group: {err}"
    );
    // A's job is unchanged by B's attempts.
    assert_eq!(env.state_of(Some(a), &job_a), "suspended");
    let info: serde_json::Value =
        serde_json::from_str(&env.ferry(a, &["--json", "info", &job_a]).expect_ok("info")).unwrap();
    assert_eq!(info["display_name"], "a-job");

    // Root and the admin see both, with their owners, and manage A's job.
    for (who, out) in [
        ("root", env.root_ferry(&["--json", "list", "--all-users"])),
        (
            "admin",
            env.ferry(admin, &["--json", "list", "--all-users"]),
        ),
    ] {
        let ids = ids_in_list(&out.expect_ok("list --all-users"));
        assert!(
            ids.contains(&job_a) && ids.contains(&job_b),
            "{who} sees both jobs: {ids:?}"
        );
    }
    let by_owner = env
        .ferry(
            admin,
            &[
                "--json",
                "query",
                &format!("SELECT id FROM Job WHERE owner_uid = {}", a.uid),
            ],
        )
        .expect_ok("admin query over owner_uid");
    assert!(by_owner.contains(&job_a) && !by_owner.contains(&job_b));
    env.ferry(admin, &["resume", &job_a])
        .expect_ok("admin resume");
    env.ferry(admin, &["suspend", &job_a])
        .expect_ok("admin suspend");
    assert_eq!(env.state_of(Some(a), &job_a), "suspended");
    env.ferry(admin, &["cancel", &job_a])
        .expect_ok("admin cancel");
    env.root_ferry(&["cancel", &job_b]).expect_ok("root cancel");
    assert_eq!(env.state_of(Some(a), &job_a), "cancelled");
    assert_eq!(env.state_of(Some(b), &job_b), "cancelled");

    // Each action on another user's job is logged with who did it.
    let log = env.log();
    for action in ["resumed", "suspended", "cancelled"] {
        let line = format!(
            "administrator uid {} {action} job {job_a} of uid {}",
            admin.uid, a.uid
        );
        assert!(log.contains(&line), "the log has {line:?}:\n{log}");
    }
    let line = format!("administrator uid 0 cancelled job {job_b} of uid {}", b.uid);
    assert!(log.contains(&line), "the log has {line:?}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
async fn system_mode_events_and_callbacks_stay_with_their_user() {
    let users = users("system_mode_events_and_callbacks_stay_with_their_user");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    let ch_a = env.connect_as(a).await;
    let ch_b = env.connect_as(b).await;
    let wql = "SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE TargetInstance ISA 'Job'";
    let events_of = |ch: &tonic::transport::Channel| {
        let ch = ch.clone();
        async move {
            pb::queries_client::QueriesClient::new(ch)
                .exec_notification_query(pb::ExecNotificationQueryRequest { wql: wql.into() })
                .await
                .expect("event query")
                .into_inner()
        }
    };
    let mut ev_a = events_of(&ch_a).await;
    let mut ev_b = events_of(&ch_b).await;

    let create = |ch: &tonic::transport::Channel, name: &str| {
        let (ch, name) = (ch.clone(), name.to_string());
        async move {
            pb::jobs_client::JobsClient::new(ch)
                .create_job(pb::CreateJobRequest {
                    display_name: name,
                    ..Default::default()
                })
                .await
                .expect("create")
                .into_inner()
                .job
                .unwrap()
                .id
        }
    };
    // A's job: A hears of it. Then B's job: the first thing B hears of is B's own job,
    // so B never heard of A's.
    let job_a = create(&ch_a, "a-events").await;
    let seen_a = next_event(&mut ev_a).await;
    assert!(seen_a.contains(&job_a), "A hears of A's job: {seen_a}");
    let job_b = create(&ch_b, "b-events").await;
    let seen_b = next_event(&mut ev_b).await;
    assert!(
        seen_b.contains(&job_b) && !seen_b.contains(&job_a),
        "B's first event is B's own job, not A's: {seen_b}"
    );

    // B cannot watch A's job.
    let watch = pb::jobs_client::JobsClient::new(ch_b.clone())
        .watch_job(pb::WatchJobRequest {
            job_id: job_a.clone(),
        })
        .await;
    assert_eq!(watch.err().map(|s| s.code()), Some(tonic::Code::NotFound));

    // A's callback channel and object, offered on B's job by B: refused.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConnectRequest {
        kind: Some(pb::connect_request::Kind::Hello(pb::Hello {
            pid: std::process::id(),
        })),
    })
    .await
    .unwrap();
    let mut inbound = pb::notifications_client::NotificationsClient::new(ch_a.clone())
        .connect(tokio_stream_like::from_receiver(rx))
        .await
        .expect("A's callback channel")
        .into_inner();
    let welcome = tokio::time::timeout(Duration::from_secs(30), inbound.message())
        .await
        .expect("welcome in time")
        .expect("welcome")
        .expect("a message");
    let Some(pb::connect_response::Kind::Welcome(w)) = welcome.kind else {
        panic!("the first message is the welcome: {welcome:?}");
    };
    let offered = pb::notifications_client::NotificationsClient::new(ch_b.clone())
        .set_notify_interface(pb::SetNotifyInterfaceRequest {
            job_id: job_b.clone(),
            callback: Some(pb::ObjectRef {
                channel_id: w.channel_id,
                object_id: 1,
            }),
        })
        .await;
    let status = offered.expect_err("B used A's callback object");
    assert!(
        matches!(
            status.code(),
            tonic::Code::PermissionDenied | tonic::Code::NotFound | tonic::Code::FailedPrecondition
        ),
        "refused with a fitting code: {status:?}"
    );
    // And A may not put it on B's job either (B's job does not exist for A).
    let offered = pb::notifications_client::NotificationsClient::new(ch_a.clone())
        .set_notify_interface(pb::SetNotifyInterfaceRequest {
            job_id: job_b.clone(),
            callback: Some(pb::ObjectRef {
                channel_id: w.channel_id,
                object_id: 1,
            }),
        })
        .await;
    assert_eq!(offered.err().map(|s| s.code()), Some(tonic::Code::NotFound));
    drop(tx);
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_limits_name_the_key_and_spare_root() {
    let users = users("system_mode_limits_name_the_key_and_spare_root");
    // The defaults of the system-wide daemon: 60 jobs per user.
    let env = SystemEnv::start(users, "max_files_per_job = 2\n");
    let a = &users.a;
    let mut last = String::new();
    for i in 0..60 {
        last = env.create(a, &format!("job-{i}"));
    }
    let err = env
        .ferry(a, &["create", "job-61"])
        .expect_err("the 61st job");
    assert!(
        err.contains("max_jobs_per_user") && err.contains("60"),
        "the refusal names the limit: {err}"
    );
    assert!(
        err.contains("ferryd.toml") || err.to_lowercase().contains("raise"),
        "the refusal says how to raise it: {err}"
    );
    // Root is exempt.
    for i in 0..61 {
        env.root_ferry(&["create", &format!("root-{i}")])
            .expect_ok("root creates past the per-user limit");
    }
    // Files per job: the third file of a job is refused, naming the key.
    for name in ["one", "two"] {
        env.ferry(a, &["add-file", &last, "http://127.0.0.1:9/f", name])
            .expect_ok("add-file under the limit");
    }
    let err = env
        .ferry(a, &["add-file", &last, "http://127.0.0.1:9/f", "three"])
        .expect_err("the third file");
    assert!(err.contains("max_files_per_job"), "{err}");
    // A cancelled job no longer counts.
    env.ferry(a, &["cancel", &last]).expect_ok("cancel");
    env.create(a, "job-after-cancel");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_from_the_config_file_and_the_machine_limit() {
    let users = users("system_mode_from_the_config_file_and_the_machine_limit");
    // `mode = "system"` in the file, no --system: the same system-wide daemon.
    let env = SystemEnv::start_with(users, "mode = \"system\"\nmax_jobs_per_machine = 2\n", &[]);
    let (a, b) = (&users.a, &users.b);
    let job_a = env.create(a, "a-one");
    let job_b = env.create(b, "b-one");
    let listed = ids_in_list(&env.ferry(b, &["--json", "list"]).expect_ok("list"));
    assert_eq!(listed, vec![job_b.clone()], "B sees only B's job");
    let err = env
        .ferry(a, &["create", "a-two"])
        .expect_err("the third job of the machine");
    assert!(
        err.contains("max_jobs_per_machine") && err.contains('2'),
        "the refusal names the limit: {err}"
    );
    let job_root = env
        .root_ferry(&["create", "root-past-the-limit"])
        .expect_ok("root is exempt");
    // Root's job counts for the machine: both go, and A may create again.
    env.ferry(a, &["cancel", &job_a]).expect_ok("cancel");
    env.root_ferry(&["cancel", &job_root]).expect_ok("cancel");
    env.create(a, "a-after-cancel");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_a_jobs_default_proxy_is_the_machines() {
    let users = users("system_mode_a_jobs_default_proxy_is_the_machines");
    let mut env = SystemEnv::start(users, "");
    // The test server answers a proxy's absolute-form requests: it is the machine's proxy,
    // named only in the broker's environment, as a unit's `Environment=` line names it.
    let proxy = ferry_testkit::TestServer::start();
    proxy.add_file("/through-the-proxy", b"via the machine's proxy".to_vec());
    let proxy_url = format!("http://{}", proxy.addr());
    env.restart_with_env(&[("http_proxy", &proxy_url)]);
    let a = &users.a;
    let job = env.create(a, "proxied");
    // Port 1 of localhost answers nothing: only the proxy can serve this URL.
    env.ferry(
        a,
        &[
            "add-file",
            &job,
            "http://localhost:1/through-the-proxy",
            "p.bin",
        ],
    )
    .expect_ok("add-file");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    env.wait_state(&job, &["transferred"]);
    let asked = proxy.requests("/through-the-proxy");
    assert_eq!(asked.len(), 1, "the worker asked the proxy once: {asked:?}");
    assert_eq!(asked[0].path, "http://localhost:1/through-the-proxy");
    env.ferry(a, &["complete", &job]).expect_ok("complete");
    assert_eq!(
        std::fs::read(env.home_a.join("p.bin")).unwrap(),
        b"via the machine's proxy"
    );
}

/// Small stream helpers (no extra crate for two functions).
mod tokio_stream_like {
    use std::time::Duration;

    use ferry_proto::v1 as pb;

    /// The next event of an event query, as text, within a deadline.
    pub async fn next_event(s: &mut tonic::Streaming<pb::ExecNotificationQueryResponse>) -> String {
        let m = tokio::time::timeout(Duration::from_secs(60), s.message())
            .await
            .expect("an event in time")
            .expect("the stream")
            .expect("an event");
        format!("{m:?}")
    }

    /// A stream of the values `rx` receives.
    pub fn from_receiver<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
