//! The command line people trust, where the daemon is involved (issue 28; `cargo test
//! cli_trust`): `ferry get` resumes when run again and leaves its job going on Ctrl-C,
//! failures end (with the reason on screen, curl's exit codes), retries alone never hold
//! off the no-progress timeout, destinations go where asked (through a symlink, to
//! standard output, into a folder made for them), several URLs keep what arrived,
//! detached jobs complete themselves, `-k` skips the certificate check, `daemon stop`
//! sticks, and the daemon's log is plain text that `ferry daemon log` shows.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use ferry_testkit::{random_bytes, wait_until, Fault, TestEnv, TestServer};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ferry ARGS` (whatever its exit).
fn ferry_out(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = ferry(env);
    cmd.args(args);
    run(cmd)
}

/// The jobs `ferry list --all --json` shows.
fn jobs(env: &TestEnv) -> Vec<serde_json::Value> {
    let out = ferry_out(env, &["--json", "list", "--all"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn cli_trust_ctrl_c_leaves_the_job_going_and_the_same_get_goes_on_with_it() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(1 << 20, 300);
    server.add_file("/big.bin", data.clone());
    server.push_fault("/big.bin", Fault::StallAfter(64 * 1024));
    let dest = env.files.join("big.bin");
    let mut child = ferry(&env)
        .args(["get", &server.url("/big.bin"), "-o", s(&dest)])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the get's job transferring",
        || {
            jobs(&env)
                .iter()
                .any(|j| j["state"] == "transferring")
                .then_some(())
        },
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(status.code(), Some(130), "interrupted: {said}");
    let listed = jobs(&env);
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert!(
        said.contains(&format!("ferry wait {id}")) && said.contains(&format!("ferry cancel {id}")),
        "it says how to follow or stop the job: {said}"
    );
    assert!(
        !listed[0]["state"].as_str().unwrap().contains("cancel"),
        "it goes on"
    );

    // The same command again goes on with that job (its bytes kept), no second job.
    server.release_stalls();
    let again = ferry_out(&env, &["get", &server.url("/big.bin"), "-o", s(&dest)]);
    assert_eq!(code(&again), Some(0), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains(&id),
        "it names the job it goes on with"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let listed = jobs(&env);
    assert_eq!(listed.len(), 1, "one job for one destination");
    assert_eq!(listed[0]["state"], "acknowledged");
}

#[test]
fn cli_trust_a_refused_connection_ends_with_the_reason_and_curls_code() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    // Nothing listens on the discard port of 127.0.0.1.
    let out = ferry_out(
        &env,
        &[
            "get",
            "http://127.0.0.1:9/x",
            "-o",
            s(&env.files.join("x")),
            "--retry",
            "2",
        ],
    );
    assert_eq!(code(&out), Some(7), "curl's 7: {}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("refused") && said.contains("giving up"),
        "{said}"
    );
    assert_eq!(said.matches("retrying").count(), 2, "two retries: {said}");
    assert!(
        jobs(&env).iter().all(|j| j["state"] == "cancelled"),
        "nothing left running"
    );
}

#[test]
fn cli_trust_retries_alone_never_hold_off_the_no_progress_timeout() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let job = text(&ferry_out(&env, &["create", "abandoned"]).stdout)
        .trim()
        .to_string();
    let dest = env.files.join("never");
    assert!(
        ferry_out(&env, &["add-file", &job, "http://127.0.0.1:9/x", s(&dest)])
            .status
            .success()
    );
    let set = ferry_out(
        &env,
        &[
            "set",
            &job,
            "--min-retry-delay",
            "1s",
            "--no-progress-timeout",
            "3s",
        ],
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(ferry_out(&env, &["resume", &job]).status.success());
    let waited = ferry_out(&env, &["wait", &job]);
    assert_eq!(code(&waited), Some(7), "{}", text(&waited.stderr));
    let info: serde_json::Value =
        serde_json::from_slice(&ferry_out(&env, &["--json", "info", &job]).stdout).unwrap();
    assert_eq!(info["state"], "error");
    let message = info["error"]["message"].as_str().unwrap();
    assert!(message.contains("no_progress_timeout"), "{message}");
    // One line in the log when it started failing, not one per retry.
    let log = std::fs::read_to_string(env.log_path()).unwrap();
    assert_eq!(log.matches("transient error, retrying").count(), 1, "{log}");
}

#[test]
fn cli_trust_destinations_go_where_asked() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(200_000, 301);
    server.add_file("/a.bin", data.clone());

    // Through a symlink: the file lands where it leads; the link stays a link.
    let real = env.files.join("real.bin");
    std::fs::write(&real, b"old").unwrap();
    let link = env.files.join("link.bin");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = ferry_out(&env, &["get", &server.url("/a.bin"), "-o", s(&link)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&real).unwrap(), data);

    // `-o -`: the verified bytes on standard output, no file left behind.
    let before = dir_entries(&env.files);
    let out = ferry_out(&env, &["get", &server.url("/a.bin"), "-o", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, data);
    assert_eq!(dir_entries(&env.files), before);

    // A folder that does not exist yet: `DIR/`, or `--create-dirs` for a file in it.
    let out = ferry_out(
        &env,
        &[
            "get",
            &server.url("/a.bin"),
            "-o",
            &format!("{}/", s(&env.files.join("new"))),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(env.files.join("new/a.bin")).unwrap(), data);
    let deep = env.files.join("d1/d2/a.bin");
    let out = ferry_out(
        &env,
        &[
            "get",
            &server.url("/a.bin"),
            "-o",
            s(&deep),
            "--create-dirs",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&deep).unwrap(), data);
}

#[test]
fn cli_trust_several_urls_keep_those_that_arrived_and_detached_jobs_complete_themselves() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(100_000, 302);
    server.add_file("/good.bin", data.clone());
    let out_dir = env.files.join("several");
    let out = ferry_out(
        &env,
        &[
            "get",
            &server.url("/missing.bin"),
            &server.url("/good.bin"),
            "-o",
            &format!("{}/", s(&out_dir)),
        ],
    );
    assert_eq!(code(&out), Some(113), "partial: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("404"),
        "the reason: {}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(out_dir.join("good.bin")).unwrap(), data);
    assert!(!out_dir.join("missing.bin").exists());

    let detached = env.files.join("detached.bin");
    let out = ferry_out(
        &env,
        &[
            "get",
            "--detach",
            &server.url("/good.bin"),
            "-o",
            s(&detached),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    wait_until(Duration::from_secs(60), "the detached job in place", || {
        std::fs::read(&detached).ok().filter(|d| *d == data)
    });
    let info: serde_json::Value =
        serde_json::from_slice(&ferry_out(&env, &["--json", "info", &id]).stdout).unwrap();
    assert_eq!(info["state"], "acknowledged");
    assert_eq!(info["auto_complete"], true);
}

#[test]
fn cli_trust_insecure_skips_the_certificate_check_and_says_so() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let (server, tls) = TestServer::start_tls();
    let data = random_bytes(50_000, 303);
    server.add_file("/s.bin", data.clone());
    let refused = ferry_out(
        &env,
        &["get", &server.url("/s.bin"), "-o", s(&env.files.join("no"))],
    );
    assert_eq!(code(&refused), Some(60), "{}", text(&refused.stderr));
    let dest = env.files.join("k.bin");
    let out = ferry_out(&env, &["get", "-k", &server.url("/s.bin"), "-o", s(&dest)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let listed = ferry_out(&env, &["--json", "list", "--all"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|j| j["insecure_tls"] == true),
        "the job says its certificate was not checked"
    );
    // `ferry info` says so too, and `ferry set --secure` undoes -k.
    let job = ferry_out(&env, &["create", "k-then-secure"]);
    let job = text(&job.stdout).trim().to_string();
    assert!(ferry_out(&env, &["set", &job, "-k"]).status.success());
    let info = text(&ferry_out(&env, &["info", &job]).stdout);
    assert!(info.contains("TLS check:        off"), "{info}");
    assert!(info.contains("created:          20"), "{info}");
    let set = ferry_out(&env, &["set", &job, "--secure"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let info = text(&ferry_out(&env, &["info", &job]).stdout);
    assert!(!info.contains("TLS check"), "{info}");
    let v: serde_json::Value =
        serde_json::from_slice(&ferry_out(&env, &["--json", "info", &job]).stdout).unwrap();
    assert_eq!(v["insecure_tls"], false, "{v}");
    let both = ferry_out(&env, &["set", &job, "-k", "--secure"]);
    assert_eq!(code(&both), Some(2), "{}", text(&both.stderr));
    // The job's other switches, set and shown.
    let set = ferry_out(
        &env,
        &[
            "set",
            &job,
            "--auto-complete",
            "yes",
            "--keep-going",
            "yes",
            "-H",
            "X-Api-Key: hidden",
            "--headers-write-only",
        ],
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    let info = text(&ferry_out(&env, &["info", &job]).stdout);
    for line in [
        "completes:        by itself",
        "keep going:       yes",
        "header values:    write-only",
    ] {
        assert!(info.contains(line), "{line}: {info}");
    }
    assert!(!info.contains("hidden"), "{info}");
    assert!(ferry_out(&env, &["set", &job, "--keep-going", "no"])
        .status
        .success());
    let v: serde_json::Value =
        serde_json::from_slice(&ferry_out(&env, &["--json", "info", &job]).stdout).unwrap();
    assert_eq!(
        (
            &v["auto_complete"],
            &v["keep_going"],
            &v["headers_write_only"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(false),
            &serde_json::json!(true)
        ),
        "{v}"
    );
    // The CA file, as before, and no -k needed.
    let dest = env.files.join("ca.bin");
    let out = ferry_out(
        &env,
        &[
            "get",
            "--cacert",
            s(&tls.ca_pem_path),
            &server.url("/s.bin"),
            "-o",
            s(&dest),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// True when process `pid` holds a connected Unix stream socket (`ferry` reached ferryd).
fn has_connected_unix_socket(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    // Num RefCount Protocol Flags Type St Inode [Path]; St 03 is connected.
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() > 6 && f[5] == "03" && inodes.contains(f[6]))
}

#[test]
fn cli_trust_daemon_stop_sticks_until_a_new_command_and_the_log_is_plain_text() {
    // The daemon `ferry` itself starts (autostart on), with its own state folder and socket.
    let env = TestEnv::new();
    // Whatever happens below, the daemon `ferry` started is stopped at the end.
    struct StopAtEnd<'a>(&'a TestEnv);
    impl Drop for StopAtEnd<'_> {
        fn drop(&mut self) {
            let _ = ferry(self.0).args(["daemon", "stop"]).output();
        }
    }
    let _stop = StopAtEnd(&env);
    let started = |args: &[&str]| {
        run({
            let mut c = env.ferry();
            c.args(args);
            c
        })
    };
    let server = TestServer::start();
    server.add_file("/slow.bin", random_bytes(1 << 20, 304));
    server.push_fault("/slow.bin", Fault::StallAfter(1024));
    let url = server.url("/slow.bin");
    let dest = env.files.join("slow.bin");
    let out = started(&["get", "--detach", &url, "-o", s(&dest)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = text(&out.stdout).trim().to_string();
    // A client stays attached: `ferry wait` rides out daemon restarts by starting one.
    let mut waiter = env
        .ferry()
        .args(["wait", &job])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Attached before the stop: a `ferry` that first connects after it is a new command,
    // and a new command starts the daemon (as it should).
    let waiter_pid = waiter.id();
    wait_until(
        Duration::from_secs(30),
        "ferry wait connected to ferryd",
        || has_connected_unix_socket(waiter_pid).then_some(()),
    );
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = waiter.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let stop = started(&["daemon", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    // The waiter notices the daemon went away…
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let l = lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the waiter says the daemon went away");
        if l.contains("went away") {
            break;
        }
    }
    // …and does not start it again: for as long as it keeps trying (its backoff doubles
    // to a second), nothing answers on the socket.
    for _ in 0..30 {
        assert!(
            std::os::unix::net::UnixStream::connect(&env.socket).is_err(),
            "ferryd was started again after `ferry daemon stop`"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the waiter still waits"
    );
    // A new command that needs the daemon starts it; the waiter goes on with it.
    assert!(started(&["list"]).status.success());
    server.release_stalls();
    let status = waiter.wait().unwrap();
    assert!(status.success(), "the waiter saw its job transferred");

    // The log: a file a day, plain text, shown by `ferry daemon log`.
    let shown = ferry_out(&env, &["daemon", "log", "-n", "200"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let log = text(&shown.stdout);
    assert!(log.contains("job transferred"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");
}

#[test]
fn cli_trust_stdout_takes_one_url_and_dev_stdout_is_refused() {
    let env = TestEnv::new();
    let out = ferry_out(
        &env,
        &[
            "get",
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/b",
            "-o",
            "-",
        ],
    );
    assert_eq!(code(&out), Some(2), "{}", text(&out.stderr));
    // /dev/stdout is a link into /proc: refused, nothing replaced.
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/x", random_bytes(10, 305));
    let out = ferry_out(&env, &["get", &server.url("/x"), "-o", "/dev/stdout"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-o -"),
        "it points to -o -: {}",
        text(&out.stderr)
    );
    assert!(std::fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type()
        .is_symlink());
}
