//! One user cannot hurt another (`cargo test multiuser`): private content never reaches
//! the fleet, one user's floods leave the store bounded and other users' calls and
//! transfers going, what `complete` and `daemon status` report is true. The tests with
//! real users (the system-wide daemon) need root; the rest run anywhere.

mod system;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ferry_testkit::{random_bytes, wait_until, Daemon, Fault, TestEnv, TestServer};
use system::{fleet, free_port, peers_section, users, SystemEnv};

/// A per-user ferryd of its own with `config` (the lines of its `ferryd.toml`).
struct Machine {
    env: TestEnv,
    _daemon: Daemon,
}

impl Machine {
    fn start(config: &str) -> Machine {
        let env = TestEnv::new();
        let path = env.dir.path().join("ferryd.toml");
        std::fs::write(&path, config).unwrap();
        let daemon = env.start_daemon_with(&["--config", path.to_str().unwrap()]);
        Machine {
            env,
            _daemon: daemon,
        }
    }

    fn ferry(&self, args: &[&str]) -> Output {
        self.env.ferry().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(out.status.success(), "ferry {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn err(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(!out.status.success(), "ferry {args:?} succeeded: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.env.files.join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.env.log_path()).unwrap_or_default()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The jobs a store holds, read from its file.
fn stored_jobs(state_dir: &Path) -> u64 {
    let c = rusqlite::Connection::open(state_dir.join("ferry.db")).unwrap();
    c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn multiuser_private_content_never_reaches_another_machine_even_by_its_hash() {
    let origin = TestServer::start();
    let certs = tempfile::tempdir().unwrap();
    fleet(certs.path(), &["one", "two"]);
    let (p1, p2) = (free_port(), free_port());
    let one = Machine::start(&peers_section(&certs.path().join("one"), p1, p2));
    let two = Machine::start(&peers_section(&certs.path().join("two"), p2, p1));
    let base = origin.base_url();
    let userinfo = base.replacen("http://", "http://alice:s3cret@", 1);
    // What is private about each request, and the content it fetches.
    let private: Vec<(&str, String, Vec<&str>)> = vec![
        ("userinfo", format!("{userinfo}/userinfo.bin"), vec![]),
        (
            "authorization",
            format!("{base}/authorization.bin"),
            vec!["-H", "Authorization: Bearer t0ken"],
        ),
        (
            "x-api-key",
            format!("{base}/x-api-key.bin"),
            vec!["-H", "X-Api-Key: k3y"],
        ),
        (
            "signed",
            format!("{base}/signed.bin?sig=abc&expires=9"),
            vec![],
        ),
    ];
    let public = random_bytes(256 * 1024, 60);
    origin.add_file("/public.bin", public.clone());
    for (i, (what, _, _)) in private.iter().enumerate() {
        origin.add_file(
            &format!("/{what}.bin"),
            random_bytes(256 * 1024, 61 + i as u64),
        );
    }
    // Machine one fetches everything (and completes: files that qualify enter its cache).
    let mut get = vec!["get".to_string(), format!("{base}/public.bin"), "-o".into()];
    get.push(one.path("public.bin").display().to_string());
    one.ok(&get.iter().map(String::as_str).collect::<Vec<_>>());
    for (what, url, extra) in &private {
        let dest = one.path(&format!("{what}.bin")).display().to_string();
        let mut args: Vec<&str> = vec!["get", url, "-o", &dest];
        args.extend(extra);
        one.ok(&args);
    }
    let cached = wait_until(
        Duration::from_secs(30),
        "the public file in one's cache",
        || {
            let list = one.ok(&["--json", "peers", "cache", "list"]);
            list.contains("/public.bin").then_some(list)
        },
    );
    for (what, _, _) in &private {
        assert!(
            !cached.contains(&format!("/{what}.bin")),
            "{what} was cached: {cached}"
        );
    }

    // Machine two knows the hashes and asks for them under a URL the origin does not
    // serve: only the fleet could answer. The public file comes from machine one (so
    // the way is open); no private one does.
    let decoy = |name: &str| format!("{base}/decoy-{name}");
    let dest = two.path("public.bin").display().to_string();
    two.ok(&[
        "get",
        &decoy("public"),
        "--sha256",
        &sha256_hex(&public),
        "-o",
        &dest,
    ]);
    assert_eq!(std::fs::read(two.path("public.bin")).unwrap(), public);
    for (i, (what, _, _)) in private.iter().enumerate() {
        let content = random_bytes(256 * 1024, 61 + i as u64);
        let dest = two.path(&format!("{what}.bin")).display().to_string();
        let err = two.err(&[
            "get",
            &decoy(what),
            "--sha256",
            &sha256_hex(&content),
            "-o",
            &dest,
        ]);
        assert!(
            err.contains("404") || err.to_lowercase().contains("not found"),
            "{what}: the origin answered, no peer did: {err}"
        );
        assert!(!Path::new(&dest).exists(), "{what} reached machine two");
    }
}

#[test]
fn multiuser_floods_of_headers_handlers_and_cancelled_jobs_leave_the_store_bounded() {
    let m = Machine::start("max_final_jobs_per_user = 20\nmax_handlers_per_user = 3\n");
    // Headers past max_header_bytes (64 KiB by default): refused, naming the key.
    let job = m.ok(&["create", "headers"]);
    let big = format!("X-Big: {}", "a".repeat(60 * 1024));
    let more = format!("X-More: {}", "b".repeat(10 * 1024));
    let err = m.err(&["set", &job, "--header", &big, "--header", &more]);
    assert!(err.contains("max_header_bytes"), "{err}");
    m.ok(&["set", &job, "--header", &big]);

    // Handlers past max_handlers_per_user: refused, naming the key.
    let classes = [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
        "44444444-4444-4444-8444-444444444444",
    ];
    for c in &classes[..3] {
        m.ok(&["handler", "register", c, "--", "/bin/true"]);
    }
    let err = m.err(&["handler", "register", classes[3], "--", "/bin/true"]);
    assert!(err.contains("max_handlers_per_user"), "{err}");
    // Replacing one of the three is no new handler.
    m.ok(&["handler", "register", classes[0], "--", "/bin/echo"]);

    // Jobs created and cancelled in a loop: the oldest final ones leave, the store
    // keeps at most max_final_jobs_per_user of them.
    let name = "n".repeat(4000);
    for _ in 0..60 {
        let j = m.ok(&["create", &name]);
        m.ok(&["cancel", &j]);
    }
    let listed: serde_json::Value =
        serde_json::from_str(&m.ok(&["--json", "list", "--all"])).unwrap();
    let cancelled = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "cancelled")
        .count();
    assert_eq!(cancelled, 20, "the newest 20 cancelled jobs stay");
    assert!(
        stored_jobs(&m.env.state_dir) <= 21,
        "the store holds them and the suspended one only"
    );
    assert!(
        m.log().contains("max_final_jobs_per_user"),
        "the log says why"
    );
}

#[test]
fn multiuser_complete_reports_no_file_it_did_not_move() {
    let m = Machine::start("");
    let server = TestServer::start();
    server.add_file("/f.bin", random_bytes(64 * 1024, 70));
    let folder = m.path("d");
    std::fs::create_dir(&folder).unwrap();
    let job = m.ok(&["create", "moved-away"]);
    m.ok(&[
        "add-file",
        &job,
        &server.url("/f.bin"),
        folder.join("f.bin").to_str().unwrap(),
    ]);
    m.ok(&["resume", &job]);
    m.ok(&["wait", &job]);
    // The folder is moved away and a link to another folder, which holds a file of the
    // destination's name, put in its place.
    std::fs::rename(&folder, m.path("d.old")).unwrap();
    let other = m.path("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("f.bin"), b"not this job's").unwrap();
    std::os::unix::fs::symlink(&other, &folder).unwrap();
    let err = m.err(&["complete", &job]);
    assert!(err.contains("nothing was moved"), "{err}");
    assert_eq!(
        std::fs::read(other.join("f.bin")).unwrap(),
        b"not this job's"
    );
    let info: serde_json::Value = serde_json::from_str(&m.ok(&["--json", "info", &job])).unwrap();
    assert_ne!(info["state"], "acknowledged", "{info}");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn multiuser_a_stalled_users_jobs_do_not_keep_another_users_job_queued() {
    let users = users("multiuser");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    let server = TestServer::start();
    // A fills every slot of the machine (8) with transfers that stall.
    for i in 0..8 {
        let path = format!("/stall-{i}");
        server.add_file(&path, random_bytes(1 << 20, i));
        server.push_fault(&path, Fault::StallAfter(1));
        let job = env.create(a, &format!("stalls-{i}"));
        env.ferry(a, &["add-file", &job, &server.url(&path), &format!("s{i}")])
            .expect_ok("add-file");
        env.ferry(a, &["resume", &job]).expect_ok("resume");
    }
    wait_until(
        Duration::from_secs(60),
        "A's eight transfers stalling",
        || {
            (0..8)
                .all(|i| server.request_count(&format!("/stall-{i}")) >= 1)
                .then_some(())
        },
    );
    // B's normal job gets a slot all the same: A's share shrinks and its last run yields.
    let data = random_bytes(256 * 1024, 99);
    server.add_file("/b.bin", data.clone());
    let job = env.create(b, "b-waits");
    env.ferry(b, &["add-file", &job, &server.url("/b.bin"), "b.bin"])
        .expect_ok("add-file");
    env.ferry(b, &["resume", &job]).expect_ok("resume");
    wait_until(Duration::from_secs(60), "B's job to transfer", || {
        (env.state_of(Some(b), &job) == "transferred").then_some(())
    });
    let listed = env.ferry(a, &["--json", "list"]).expect_ok("list");
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let running = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "transferring" || j["state"] == "connecting")
        .count();
    assert!(running <= 7, "A holds at most its share now: {listed}");
    server.release_stalls();
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn multiuser_5000_connections_of_one_user_leave_another_users_calls_answered() {
    let users = users("multiuser");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    env.create(a, "a-is-here");
    // Room for 5 000 descriptors in this process.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.max(6000);
        limit.rlim_max = limit.rlim_cur;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let mut held = Vec::new();
    for _ in 0..5000 {
        match system::connect_with_ids(&env.env.socket, a.uid, a.gid, &a.groups) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connection {} of A: {e}", held.len()),
        }
    }
    // B's calls are answered, and B's jobs made, with A's 5 000 connections open.
    for i in 0..5 {
        env.create(b, &format!("b-{i}"));
    }
    let listed = env.ferry(b, &["list"]).expect_ok("B lists");
    assert!(listed.contains("b-4"), "{listed}");
    let log = env.log();
    assert!(
        log.contains("max_connections_per_user"),
        "the broker says why it closes A's connections:\n{log}"
    );
    drop(held);
    // And A is served again once theirs are closed.
    wait_until(Duration::from_secs(60), "A answered again", || {
        env.ferry(a, &["list"]).ok.then_some(())
    });
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn multiuser_daemon_status_counts_a_users_own_jobs_and_the_machines_for_root() {
    let users = users("multiuser");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    for i in 0..2 {
        env.create(a, &format!("a-{i}"));
    }
    for i in 0..3 {
        env.create(b, &format!("b-{i}"));
    }
    let jobs = |out: String| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["jobs"].as_u64().unwrap_or_else(|| panic!("jobs in {v}"))
    };
    assert_eq!(
        jobs(
            env.ferry(a, &["--json", "daemon", "status"])
                .expect_ok("status")
        ),
        2
    );
    assert_eq!(
        jobs(
            env.ferry(b, &["--json", "daemon", "status"])
                .expect_ok("status")
        ),
        3
    );
    assert!(
        jobs(
            env.root_ferry(&["--json", "daemon", "status"])
                .expect_ok("status")
        ) >= 5
    );
}
