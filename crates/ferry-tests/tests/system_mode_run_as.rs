//! Processes the system-wide ferryd starts for a job run as its owner, and a job needs
//! no session of its owner (`cargo test system_mode`).

mod system;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::{random_bytes, wait_until, Fault, TestServer};
use system::{dedicated_user, processes_of, users, SystemEnv};

/// Waits for `path` to be written (a process the daemon started writes it).
fn written(path: &Path) -> String {
    wait_until(
        Duration::from_secs(60),
        &format!("{} to be written", path.display()),
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|s| s.ends_with('\n'))
        },
    )
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_notify_command_and_handler_run_as_the_owner() {
    let users = users("system_mode_notify_command_and_handler_run_as_the_owner");
    let env = SystemEnv::start(users, "");
    let a = &users.a;
    let server = TestServer::start();
    server.add_file("/f", b"A's bytes\n".to_vec());

    // The notify command: its uid, groups and environment.
    let job = env.create(a, "notify-command");
    env.ferry(a, &["add-file", &job, &server.url("/f"), "by-command"])
        .expect_ok("add-file");
    let out = env.home_a.join("command-ran-as");
    let script = format!(
        "{{ id -u; id -G; env | sort; }} > {0}.tmp && mv {0}.tmp {0} && echo >> {0}; \
         echo said-by-the-command",
        out.display()
    );
    let mut args = vec!["set", &job, "--notify-command", "--", "/bin/sh", "-c"];
    args.push(&script);
    env.ferry(a, &args).expect_ok("set --notify-command");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    let text = written(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(a.uid.to_string().as_str()), "{text}");
    let groups: Vec<u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    let mut expected = a.groups.clone();
    expected.sort();
    let mut got = groups.clone();
    got.sort();
    got.dedup();
    assert_eq!(got, expected, "A's groups, no more: {text}");
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), a.uid);
    let home = format!("HOME={}", a.home.display());
    for wanted in [
        home.as_str(),
        &format!("USER={}", a.name),
        &format!("LOGNAME={}", a.name),
        "SHELL=/bin/sh",
        &format!("FERRY_JOB_ID={job}"),
    ] {
        assert!(text.lines().any(|l| l == wanted), "{wanted} in:\n{text}");
    }
    // Its output: in A's own log in the daemon's state folder, written as A, after the job.
    let log = env
        .env
        .state_dir
        .join(format!("users/{}/notify-commands.log", a.uid));
    let line = format!("{job}: said-by-the-command");
    let logged = wait_until(Duration::from_secs(60), "the command's output", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains(&line))
    });
    assert!(logged.lines().all(|l| l.starts_with(&job)), "{logged}");
    assert_eq!(std::fs::metadata(&log).unwrap().uid(), a.uid);
    for unwanted in ["RUST_LOG", "NO_COLOR", "FERRY_STATE_DIR"] {
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{unwanted}="))),
            "the daemon's {unwanted} leaked into A's command:\n{text}"
        );
    }

    // The activated handler: it writes its uid, then completes the job as A.
    let class = "6c0d9c3a-47d2-4e4b-9a57-2f0c5b1d3e11";
    let handler_out = env.home_a.join("handler-ran-as");
    let handler = format!(
        "id -u > {0}.tmp && mv {0}.tmp {0} && exec {1}",
        handler_out.display(),
        env.bin.join("notify_handler").display()
    );
    env.ferry(
        a,
        &[
            "handler",
            "register",
            class,
            "--workdir",
            env.home_a.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &handler,
        ],
    )
    .expect_ok("handler register");
    let job = env.create(a, "handled");
    env.ferry(a, &["add-file", &job, &server.url("/f"), "by-handler"])
        .expect_ok("add-file");
    env.ferry(a, &["set", &job, "--notify-class", class])
        .expect_ok("set --notify-class");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    assert_eq!(written(&handler_out).trim(), a.uid.to_string());
    assert_eq!(std::fs::metadata(&handler_out).unwrap().uid(), a.uid);
    // The handler, as A, completed A's job: the file is A's.
    env.wait_state(&job, &["acknowledged"]);
    let done = std::fs::metadata(env.home_a.join("by-handler")).unwrap();
    assert_eq!((done.uid(), done.gid()), (a.uid, a.gid));
    let marker = std::fs::metadata(env.home_a.join(format!("ferry-handled-{job}"))).unwrap();
    assert_eq!(marker.uid(), a.uid, "the handler's own file is A's");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn system_mode_jobs_transfer_with_no_session_of_their_owner() {
    let users = users("system_mode_jobs_transfer_with_no_session_of_their_owner");
    // A user no other test runs anything as, so "no process of theirs" is exact.
    let lone = dedicated_user("ferrytest-lone");
    let env = SystemEnv::start(users, "");
    let server = TestServer::start();
    let data = random_bytes(2 << 20, 7);
    server.add_file("/big", data.clone());
    server.push_fault("/big", Fault::StallAfter(64 * 1024));

    let job = env.create(&lone, "no-session");
    env.ferry(&lone, &["add-file", &job, &server.url("/big"), "big.bin"])
        .expect_ok("add-file");
    env.ferry(&lone, &["resume", &job]).expect_ok("resume");
    // The user logs out: none of their processes is left but the worker the broker
    // started for them (the commands above have ended; none of them was a login
    // session).
    let worker = wait_until(
        Duration::from_secs(30),
        "no process of the user but its worker",
        || match processes_of(lone.uid).as_slice() {
            [one] if is_worker(*one) => Some(*one),
            _ => None,
        },
    );
    if let Ok(out) = std::process::Command::new("loginctl")
        .args(["list-sessions", "--no-legend"])
        .output()
    {
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(
            !listed.contains(lone.name),
            "no session of theirs: {listed}"
        );
    }
    // The transfer goes on, and ends, all the same.
    server.release_stalls();
    env.wait_state(&job, &["transferred"]);
    assert_eq!(
        processes_of(lone.uid),
        vec![worker],
        "nothing else started as the user, and the same worker did the whole transfer"
    );
    env.root_ferry(&["complete", &job])
        .expect_ok("complete by root");
    let file = lone.home.join("big.bin");
    assert_eq!(std::fs::read(&file).unwrap(), data);
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), lone.uid);
}

/// True when process `pid` is a worker of the system-wide daemon.
fn is_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first() == Some(&&b"ferryd"[..]) && args.contains(&&b"--worker"[..])
        })
        .unwrap_or(false)
}
