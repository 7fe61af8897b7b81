//! Privilege separation of the system-wide ferryd (`cargo test privsep`, as root): each
//! user's work runs in a worker process of that user, so what a user could turn the old
//! single root process against — another user's open files through `/proc`, the
//! existence of files in folders they cannot enter, the network as root — is the
//! kernel's to refuse, and one worker's death costs only its user.

mod system;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::{random_bytes, wait_until, Fault, TestServer};
use system::{fleet, free_port, peers_section, processes_of, users, SystemEnv, User};

/// The worker (`ferryd --worker`) of `env`'s broker running as `uid`, once there is
/// exactly one.
fn worker_of(env: &SystemEnv, uid: u32) -> u32 {
    wait_until(
        Duration::from_secs(60),
        &format!("the worker of uid {uid}"),
        || match workers_of(env, uid).as_slice() {
            [one] => Some(*one),
            _ => None,
        },
    )
}

/// The workers of `env`'s broker running as `uid` now. The users are shared by the tests
/// of this binary, which run at the same time: a worker is this test's when its
/// `--state-dir` is under this test's state folder.
fn workers_of(env: &SystemEnv, uid: u32) -> Vec<u32> {
    let state = env.env.state_dir.as_os_str().as_encoded_bytes().to_vec();
    processes_of(uid)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first() == Some(&&b"ferryd"[..])
                        && args.contains(&&b"--worker"[..])
                        && args.iter().any(|a| a.starts_with(&state))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The uid of every TCP socket (IPv4 and IPv6) whose remote port is `port`: the client
/// ends of connections to a server on that port.
fn socket_owners_to(port: u16) -> Vec<u32> {
    let mut uids = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid …
            let Some(remote) = cols.get(2) else { continue };
            let remote_port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) {
                uids.push(cols[7].parse().unwrap());
            }
        }
    }
    uids
}

/// `ferry --json info JOB` as `user`.
fn info(env: &SystemEnv, user: &User, job: &str) -> serde_json::Value {
    serde_json::from_str(&env.ferry(user, &["--json", "info", job]).expect_ok("info")).unwrap()
}

/// Waits until `user`'s `job` is in one of `states`.
fn wait_state_of(env: &SystemEnv, user: &User, job: &str, states: &[&str]) -> String {
    wait_until(
        Duration::from_secs(120),
        &format!("job {job} of {} to reach {states:?}", user.name),
        || {
            let s = env.state_of(Some(user), job);
            states.contains(&s.as_str()).then_some(s)
        },
    )
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_proc_fd_spellings_never_reach_another_users_open_file() {
    let users = users("privsep");
    let env = SystemEnv::start(users, "max_jobs_per_user = 1000\n");
    let (a, b) = (&users.a, &users.b);
    let server = TestServer::start();
    server.push_fault("/upload", Fault::StallAfter(64 * 1024));

    // A's secret, in A's 0700 folder, held open by A's upload (the server stops reading).
    let secret = random_bytes(512 * 1024, 25);
    let secret_path = env.home_a.join("secret.bin");
    std::fs::write(&secret_path, &secret).unwrap();
    std::os::unix::fs::chown(&secret_path, Some(a.uid), Some(a.gid)).unwrap();
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let up = env
        .ferry(a, &["create", "a-upload", "--type", "upload"])
        .expect_ok("create the upload");
    env.ferry(
        a,
        &[
            "add-file",
            &up,
            &server.url("/upload"),
            secret_path.to_str().unwrap(),
        ],
    )
    .expect_ok("add the secret");
    env.ferry(a, &["resume", &up]).expect_ok("resume");
    wait_state_of(&env, a, &up, &["transferring"]);
    let a_worker = worker_of(&env, a.uid);

    // Every spelling of "a descriptor of the daemon's" B can write is refused outright.
    let job = env.create(b, "b-steals");
    let mut spellings = Vec::new();
    for n in 0..24 {
        spellings.push(format!("file:///proc/self/fd/{n}"));
        spellings.push(format!("file:///proc/{a_worker}/fd/{n}"));
        spellings.push(format!("file:///dev/fd/{n}"));
    }
    let rel = secret_path.strip_prefix("/").unwrap().display().to_string();
    spellings.push(format!("file:///proc/self/cwd/{rel}"));
    spellings.push(format!("file:///proc/self/root/{rel}"));
    spellings.push(format!("file:///proc/{a_worker}/root/{rel}"));
    for (i, url) in spellings.iter().enumerate() {
        let err = env
            .ferry(b, &["add-file", &job, url, &format!("stolen-{i}")])
            .expect_err(&format!("B adds {url}"));
        assert!(
            err.contains("/proc"),
            "{url} is refused for what it is: {err}"
        );
    }

    // Through a symlink of B's own, the path is not refused by name: the kernel refuses
    // to show B's worker anything of A's worker (another user's, and not dumpable).
    let link = env.home_b.join("a-worker-fds");
    std::os::unix::fs::symlink(format!("/proc/{a_worker}/fd"), &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(b.uid), Some(b.gid)).unwrap();
    let mut jobs = Vec::new();
    for n in 0..24 {
        let j = env.create(b, &format!("b-link-{n}"));
        let url = format!("file://{}/{n}", link.display());
        let dest = format!("linked-{n}");
        if env.ferry(b, &["add-file", &j, &url, &dest]).ok {
            env.ferry(b, &["resume", &j]).expect_ok("resume");
            jobs.push((j, dest));
        }
    }
    for (j, dest) in &jobs {
        let state = wait_state_of(&env, b, j, &["error", "transferred"]);
        if state == "transferred" {
            env.ferry(b, &["complete", j]).expect_ok("complete");
            let got = std::fs::read(env.home_b.join(dest)).unwrap_or_default();
            assert!(
                !got.windows(4096)
                    .any(|w| secret.windows(4096).any(|s| s == w)),
                "B read A's secret through {}",
                link.display()
            );
        } else {
            let err = info(&env, b, j)["error"]["message"].to_string();
            assert!(
                err.to_lowercase().contains("permission denied"),
                "the kernel refused B's worker: {err}"
            );
        }
    }
    assert_eq!(jobs.len(), 24, "the symlinked spellings reach the transfer");
    // A's upload is untouched by all this.
    assert_eq!(env.state_of(Some(a), &up), "transferring");
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_a_handler_check_tells_nothing_about_a_folder_one_cannot_enter() {
    let users = users("privsep");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    // A program of A's, inside A's 0700 folder, and a name that does not exist there.
    let program = env.home_a.join("handler.sh");
    std::fs::write(&program, "#!/bin/sh\nexit 0\n").unwrap();
    std::os::unix::fs::chown(&program, Some(a.uid), Some(a.gid)).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let missing = env.home_a.join("handler.sh.missing");
    let class = "8e2c1f84-6d6b-4f8e-9b8e-3d1c0e1f2a3b";
    let answer = |path: &Path| {
        let err = env
            .ferry(
                b,
                &["handler", "register", class, "--", path.to_str().unwrap()],
            )
            .expect_err("B registers a program in A's folder");
        err.replace(path.to_str().unwrap(), "PATH")
    };
    let existing = answer(&program);
    let absent = answer(&missing);
    assert_eq!(
        existing, absent,
        "B learns nothing from the answers about what A's folder holds"
    );
    assert!(
        existing.to_lowercase().contains("permission denied"),
        "checked as B, who may not enter A's folder: {existing}"
    );
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_every_transfer_socket_belongs_to_the_jobs_owner() {
    let users = users("privsep");
    let env = SystemEnv::start(users, "connections_per_file = 4\n");
    let (a, b) = (&users.a, &users.b);
    let server = TestServer::start();
    let port = server.addr().port();
    for (user, path) in [(a, "/a.bin"), (b, "/b.bin")] {
        server.add_file(path, random_bytes(16 << 20, user.uid as u64));
        for _ in 0..8 {
            server.push_fault(path, Fault::StallAfter(256 * 1024));
        }
        let job = env.create(user, "socket-owner");
        env.ferry(user, &["add-file", &job, &server.url(path), "big.bin"])
            .expect_ok("add-file");
        env.ferry(user, &["resume", &job]).expect_ok("resume");
        wait_state_of(&env, user, &job, &["transferring"]);
    }
    let owners = wait_until(
        Duration::from_secs(60),
        "both users' connections to the server",
        || {
            let o = socket_owners_to(port);
            (o.contains(&a.uid) && o.contains(&b.uid)).then_some(o)
        },
    );
    assert!(
        owners.iter().all(|u| *u == a.uid || *u == b.uid),
        "every connection to the origin is its job owner's, none root's: {owners:?}"
    );
    server.release_stalls();
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_kill9_of_a_worker_costs_only_its_user() {
    let users = users("privsep");
    let env = SystemEnv::start(users, "");
    let (a, b) = (&users.a, &users.b);
    let server = TestServer::start();
    let data_a = random_bytes(4 << 20, 31);
    let data_b = random_bytes(4 << 20, 32);
    server.add_file("/a.bin", data_a.clone());
    server.add_file("/b.bin", data_b.clone());
    server.push_fault("/a.bin", Fault::StallAfter(1 << 20));
    server.push_fault("/b.bin", Fault::StallAfter(1 << 20));
    let mut jobs = Vec::new();
    for (user, path) in [(a, "/a.bin"), (b, "/b.bin")] {
        let job = env.create(user, "kill9");
        env.ferry(user, &["add-file", &job, &server.url(path), "out.bin"])
            .expect_ok("add-file");
        env.ferry(user, &["resume", &job]).expect_ok("resume");
        wait_state_of(&env, user, &job, &["transferring"]);
        jobs.push(job);
    }
    let (worker_a, worker_b) = (worker_of(&env, a.uid), worker_of(&env, b.uid));
    // Both stalled after 1 MiB, each on one connection.
    wait_until(Duration::from_secs(60), "both connections open", || {
        (server.request_count("/a.bin") == 1 && server.request_count("/b.bin") == 1).then_some(())
    });

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(worker_a as i32, libc::SIGKILL) }, 0);
    // The broker starts A's worker again; A's job resumes where it was (with a range).
    let new_a = wait_until(
        Duration::from_secs(60),
        "a new worker of A",
        || match workers_of(&env, a.uid).as_slice() {
            [one] if *one != worker_a => Some(*one),
            _ => None,
        },
    );
    assert_ne!(new_a, worker_a);
    wait_until(Duration::from_secs(60), "A's job asking again", || {
        (server.request_count("/a.bin") >= 2).then_some(())
    });
    // B noticed nothing: the same worker, the same connection, still transferring.
    assert_eq!(
        workers_of(&env, b.uid),
        vec![worker_b],
        "B's worker lives on"
    );
    assert_eq!(
        server.request_count("/b.bin"),
        1,
        "B's connection was never cut"
    );
    assert_eq!(env.state_of(Some(b), &jobs[1]), "transferring");

    server.release_stalls();
    for ((user, job), data) in [a, b].into_iter().zip(&jobs).zip([&data_a, &data_b]) {
        wait_state_of(&env, user, job, &["transferred"]);
        env.ferry(user, &["complete", job]).expect_ok("complete");
        let out = env.folder_of(user).join("out.bin");
        assert_eq!(
            &std::fs::read(&out).unwrap(),
            data,
            "{}'s file is whole",
            user.name
        );
    }
    let log = env.log();
    assert!(
        log.contains(&format!("the worker of uid {} ended unexpectedly", a.uid)),
        "the broker saw A's worker die:\n{log}"
    );
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_kill9_of_the_broker_loses_no_job() {
    let users = users("privsep");
    let mut env = SystemEnv::start(users, "");
    let a = &users.a;
    let server = TestServer::start();
    let data = random_bytes(4 << 20, 41);
    server.add_file("/a.bin", data.clone());
    server.push_fault("/a.bin", Fault::StallAfter(1 << 20));
    let job = env.create(a, "broker-dies");
    env.ferry(a, &["add-file", &job, &server.url("/a.bin"), "out.bin"])
        .expect_ok("add-file");
    env.ferry(a, &["resume", &job]).expect_ok("resume");
    wait_state_of(&env, a, &job, &["transferring"]);
    let old_worker = worker_of(&env, a.uid);

    env.daemon.kill9();
    // The worker sees its broker gone and stops as on SIGTERM (checkpointing).
    wait_until(
        Duration::from_secs(60),
        "the orphaned worker to stop",
        || workers_of(&env, a.uid).is_empty().then_some(()),
    );
    server.release_stalls();
    // A new broker starts every known user's worker: the job goes on without a call.
    env.restart();
    let new_worker = worker_of(&env, a.uid);
    assert_ne!(new_worker, old_worker);
    assert_eq!(
        wait_state_of(&env, a, &job, &["transferred", "error"]),
        "transferred"
    );
    env.ferry(a, &["complete", &job]).expect_ok("complete");
    assert_eq!(std::fs::read(env.home_a.join("out.bin")).unwrap(), data);
    assert!(
        server.request_count("/a.bin") >= 2,
        "the job was resumed by the new worker"
    );
}

#[test]
#[ignore = "needs root (real users, ferryd --system): .ci/run runs it"]
fn privsep_the_single_store_of_an_earlier_version_moves_into_each_users_worker() {
    let users = users("privsep");
    let (a, b) = (&users.a, &users.b);
    // A store of the system-wide daemon before privilege separation (schema 4, two
    // owners), given to the test users; nothing in it may reach out of this machine.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferryd/tests/fixtures/store-v4.db");
    let mut names: std::collections::HashMap<u32, Vec<String>> = Default::default();
    let mut env = SystemEnv::start_after(users, "", &["--system"], |state| {
        std::fs::create_dir_all(state).unwrap();
        let db = state.join("ferry.db");
        std::fs::copy(&fixture, &db).unwrap();
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(&format!(
            "UPDATE jobs SET owner_uid = CASE owner_uid WHEN 1000 THEN {} ELSE {} END;
             UPDATE handlers SET owner_uid = CASE owner_uid WHEN 1000 THEN {} ELSE {} END;
             UPDATE files SET remote_url = 'http://127.0.0.1:9/x';
             UPDATE jobs SET state = 'suspended'
                 WHERE state IN ('queued', 'connecting', 'transferring', 'transient_error');
             UPDATE jobs SET modified_ms = {now}, last_progress_ms = {now};",
            a.uid,
            b.uid,
            a.uid,
            b.uid,
            // Touched now: the fixture's dates are past the retention and inactivity
            // periods, which would cancel and purge its jobs at the first housekeeping.
            now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ))
        .unwrap();
        let mut q = c
            .prepare("SELECT owner_uid, display_name FROM jobs")
            .unwrap();
        for row in q
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
        {
            let (uid, name) = row.unwrap();
            names.entry(uid).or_default().push(name);
        }
    });
    assert!(names[&a.uid].len() >= 2 && !names[&b.uid].is_empty());
    for user in [a, b] {
        let listed: serde_json::Value = serde_json::from_str(
            &env.ferry(user, &["--json", "list", "--all"])
                .expect_ok("list"),
        )
        .unwrap();
        let mut got: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["display_name"].as_str().unwrap().to_string())
            .collect();
        let mut want = names[&user.uid].clone();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "{} has exactly their jobs of the old store",
            user.name
        );
        let store = env
            .env
            .state_dir
            .join("users")
            .join(user.uid.to_string())
            .join("ferry.db");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&store).unwrap().uid(),
            user.uid,
            "their store is theirs"
        );
    }
    assert!(env.env.state_dir.join("ferry.db.migrated").exists());
    assert!(!env.env.state_dir.join("ferry.db").exists());
    // Once moved, a restart finds nothing to move and keeps every job.
    env.daemon.terminate();
    env.restart();
    let listed = env.ferry(a, &["--json", "list", "--all"]).expect_ok("list");
    for name in &names[&a.uid] {
        assert!(
            listed.contains(name.as_str()),
            "{name} is still there: {listed}"
        );
    }
    assert!(
        !env.env.state_dir.join("migrate").exists(),
        "the emptied folders are gone"
    );
}

#[test]
#[ignore = "needs root (real users, the _ferry user, ferryd --system): .ci/run runs it"]
fn privsep_the_cache_process_gets_descriptors_and_fetches_for_the_workers() {
    let users = users("privsep");
    let ferry_uid = system::cache_user();
    let a = &users.a;
    let origin = TestServer::start();
    let data = random_bytes(3 << 20, 51);
    origin.add_file("/shared.bin", data.clone());
    let mine = random_bytes(1 << 20, 52);
    origin.add_file("/mine.bin", mine.clone());
    let certs = tempfile::tempdir().unwrap();
    fleet(certs.path(), &["node1", "node2"]);
    let (p1, p2) = (free_port(), free_port());

    // Another machine of the fleet (a per-user ferryd on loopback) holds the content.
    let other = ferry_testkit::TestEnv::new();
    let other_config = other.dir.path().join("ferryd.toml");
    std::fs::write(
        &other_config,
        peers_section(&certs.path().join("node2"), p2, p1),
    )
    .unwrap();
    let _other_daemon = other.start_daemon_with(&["--config", other_config.to_str().unwrap()]);
    let got = other
        .ferry()
        .args(["get", &origin.url("/shared.bin"), "-o"])
        .arg(other.files.join("shared.bin"))
        .output()
        .unwrap();
    assert!(got.status.success(), "the other machine downloads: {got:?}");
    let origin_gets = origin.request_count("/shared.bin");

    // This machine: the system-wide daemon with its cache process.
    let env = SystemEnv::start(users, &peers_section(&certs.path().join("node1"), p1, p2));
    let cache_pid = wait_until(Duration::from_secs(60), "the cache process", || {
        processes_of(ferry_uid).first().copied()
    });
    let status = std::fs::read_to_string(format!("/proc/{cache_pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "the cache process holds no capability:\n{status}"
    );

    // A's download comes from the other machine, through the cache process's gateway
    // (only it speaks the fleet's TLS): the origin is not asked for the bytes again.
    env.ferry(a, &["get", &origin.url("/shared.bin"), "-o", "shared.bin"])
        .expect_ok("A's get");
    assert_eq!(std::fs::read(env.home_a.join("shared.bin")).unwrap(), data);
    let listed: serde_json::Value =
        serde_json::from_str(&env.ferry(a, &["--json", "list", "--all"]).expect_ok("list"))
            .unwrap();
    let job = &listed.as_array().unwrap()[0];
    assert_eq!(
        job["bytes_from_peers"].as_u64(),
        Some(data.len() as u64),
        "every byte came from the peer: {job}"
    );
    assert!(
        origin.request_count("/shared.bin") - origin_gets <= 1,
        "at most a HEAD went to the origin"
    );

    // A file of A's, in A's 0700 folder, enters the machine's cache as a descriptor:
    // the cache process could not have opened it by its path.
    env.ferry(a, &["get", &origin.url("/mine.bin"), "-o", "mine.bin"])
        .expect_ok("A's second get");
    let path = env.home_a.join("mine.bin");
    let mut as_cache_user = std::process::Command::new("setpriv");
    as_cache_user
        .args([
            "--reuid",
            &ferry_uid.to_string(),
            "--regid",
            &ferry_uid.to_string(),
        ])
        .args(["--clear-groups", "cat"])
        .arg(&path);
    let out = system::run_bounded(as_cache_user);
    assert!(
        !out.ok && out.stderr.contains("Permission denied"),
        "the cache user cannot read A's file by its path: {out:?}"
    );
    let cached = wait_until(
        Duration::from_secs(60),
        "A's file in the machine's cache",
        || {
            let list = env
                .root_ferry(&["--json", "peers", "cache", "list"])
                .expect_ok("list");
            list.contains("/mine.bin").then_some(list)
        },
    );
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&mine))
    };
    assert!(
        cached.contains(&sha),
        "the cached copy is A's bytes: {cached}"
    );

    // The machine's cache and the fleet are the administrators' to see.
    for args in [
        vec!["peers", "cache", "list"],
        vec!["peers", "status"],
        vec!["peers", "cache", "clear"],
    ] {
        let err = env
            .ferry(a, &args)
            .expect_err("a user asks for the machine's cache");
        assert!(err.contains("admin"), "{args:?}: {err}");
    }
    let status = env
        .root_ferry(&["peers", "status"])
        .expect_ok("root's peers status");
    assert!(status.contains(&format!("127.0.0.1:{p2}")), "{status}");
    assert!(
        status.contains("cert:      expires"),
        "the certificate's expiry, from the cache process: {status}"
    );

    // A's application (here A at the shell) validates a transferred file: it is in the
    // machine's cache when the command returns, through the cache process, no waiting.
    origin.add_file("/vouched.bin", random_bytes(1 << 20, 53));
    let job = env.ferry(a, &["create", "vouched"]).expect_ok("create");
    let job = job.trim();
    let dest = env.home_a.join("vouched.bin");
    env.ferry(
        a,
        &[
            "add-file",
            job,
            &origin.url("/vouched.bin"),
            dest.to_str().unwrap(),
        ],
    )
    .expect_ok("add-file");
    env.ferry(a, &["resume", job]).expect_ok("resume");
    env.ferry(a, &["wait", job]).expect_ok("wait");
    env.ferry(a, &["files", "validate", job, "0", "--valid"])
        .expect_ok("validate");
    let list = env
        .root_ferry(&["--json", "peers", "cache", "list"])
        .expect_ok("list");
    assert!(list.contains("/vouched.bin"), "at once: {list}");
    env.ferry(a, &["files", "validate", job, "0", "--invalid"])
        .expect_ok("reject");
    let list = env
        .root_ferry(&["--json", "peers", "cache", "list"])
        .expect_ok("list");
    assert!(!list.contains("/vouched.bin"), "gone at once: {list}");
}

#[test]
#[ignore = "needs systemd-analyze (Debian's systemd): .ci/run runs it"]
fn privsep_the_shipped_unit_has_an_exposure_of_3_or_less() {
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/systemd/system/ferryd.service");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&unit, dir.path().join("ferryd.service")).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", "ferryd.service"])
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze (Debian's systemd) is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ferryd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure in systemd-analyze's answer:\n{text}"));
    assert!(
        exposure <= 3.0,
        "the system unit's exposure is {exposure} (at most 3.0):\n{text}"
    );
    // The capabilities it keeps are the broker's, and only those.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let kept = unit_text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a bounding set");
    let mut kept: Vec<&str> = kept.split_whitespace().collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID"
        ]
    );
}
