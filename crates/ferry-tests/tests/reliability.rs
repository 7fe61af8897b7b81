//! Reliability under stress, with the real daemon: a storm of activations of one handler
//! class, `kill -9` in the middle of `complete` and `cancel` of a 3 000-file job, a state
//! folder whose disk fills to the brim (a tmpfs mounted by the test), a descriptor limit
//! of 256 with 1 000 jobs, a notify command that hangs, and the folders ferryd and its
//! commands work in.
//!
//! `cargo test storm`, `cargo test crash_complete`, `cargo test state_disk`,
//! `cargo test open_file_limit`, `cargo test hanging_notify_command`,
//! `cargo test working_folder`. The tmpfs test needs root (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ferry_client::{ErrorKind, FileSpec, Job, JobProperties, JobState, NotifyFlags, Uuid};
use ferry_testkit::{
    example_bin, random_bytes, sha256_hex, wait_until, wait_until_future, Mode, TestEnv, TestServer,
};

/// A job of `n` `file://` sources (2 KiB each, distinct bytes) into `env.files`,
/// transferred; returns it with each destination and its bytes.
async fn transferred_job(env: &TestEnv, n: usize, name: &str) -> (Job, Vec<(PathBuf, Vec<u8>)>) {
    let m = manager(env).await;
    let src = env.dir.path().join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    let mut files = Vec::with_capacity(n);
    let mut specs = Vec::with_capacity(n);
    for i in 0..n {
        let data = random_bytes(2048, i as u64 + 1);
        let from = src.join(format!("s{i}"));
        std::fs::write(&from, &data).unwrap();
        let dest = env.files.join(format!("{name}-{i}"));
        specs.push(FileSpec::new(
            format!("file://{}", from.display()),
            dest.display().to_string(),
        ));
        files.push((dest, data));
    }
    let job = m.create_job(name).await.unwrap();
    for chunk in specs.chunks(1000) {
        job.add_files(chunk.to_vec()).await.unwrap();
    }
    job.resume().await.unwrap();
    let info = settle(&job).await;
    assert_eq!(info.state(), JobState::Transferred, "{info:?}");
    (job, files)
}

/// Spins (briefly sleeping) until `f` holds; panics after `DEADLINE`.
fn spin_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_complete_of_3000_files_is_finished_by_the_restart() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let (job, files) = transferred_job(&env, 3000, "c").await;
    let call = {
        let job = job.clone();
        tokio::spawn(async move { job.complete().await })
    };
    spin_until("the first file of the commit", || files[0].0.exists());
    daemon.kill9();
    let placed = files.iter().filter(|(p, _)| p.exists()).count();
    assert!(
        placed < files.len(),
        "the commit finished before the kill: the test did not cut it"
    );
    let cut = call
        .await
        .unwrap()
        .expect_err("the call was cut by the kill");
    assert_eq!(cut.kind(), ErrorKind::Unavailable, "{cut}");

    // The restart finishes the commit by itself: no call but reads.
    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    let job = m.job(job.id()).await.unwrap();
    let info = wait_state(&job, |s| s == JobState::Acknowledged).await;
    assert_eq!(info.files_transferred, 3000);
    for (dest, data) in &files {
        assert_eq!(&std::fs::read(dest).unwrap(), data, "{}", dest.display());
    }
    let parts: Vec<String> = dir_entries(&env.files)
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "part files left: {}", parts.len());
    // The client whose call was cut calls again and gets the outcome.
    let again = job.complete().await.unwrap();
    assert_eq!(again.job.state(), JobState::Acknowledged);
    assert_eq!(again.files_committed, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_complete_cancel_of_3000_files_removes_every_part_after_the_restart() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon();
    let (job, files) = transferred_job(&env, 3000, "x").await;
    let parts: Vec<PathBuf> = dir_entries(&env.files)
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .map(|n| env.files.join(n))
        .collect();
    assert_eq!(parts.len(), 3000);
    let call = {
        let job = job.clone();
        tokio::spawn(async move { job.cancel().await })
    };
    spin_until("the first part file to go", || {
        parts.iter().any(|p| !p.exists())
    });
    daemon.kill9();
    let left = parts.iter().filter(|p| p.exists()).count();
    assert!(
        left > 0,
        "the cancel finished before the kill: the test did not cut it"
    );
    let _ = call.await.unwrap();

    let _daemon = env.start_daemon();
    let m = manager(&env).await;
    let job = m.job(job.id()).await.unwrap();
    wait_state(&job, |s| s == JobState::Cancelled).await;
    wait_until(DEADLINE, "every part file removed by the restart", || {
        parts.iter().all(|p| !p.exists()).then_some(())
    });
    assert!(
        files.iter().all(|(d, _)| !d.exists()),
        "no destination appears"
    );
    assert_eq!(job.cancel().await.unwrap().state(), JobState::Cancelled);
}

/// A tmpfs mounted over a folder for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("ferry-state-test")
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs on {} (needs root)",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the disk is full; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a; 16 * 1024];
    let mut written = 0u64;
    for _ in 0..100_000 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Small writes take the last blocks.
    while f.write(&[0x5a; 512]).is_ok_and(|n| n > 0) {
        written += 512;
    }
    let _ = f.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a tmpfs): .ci/run runs it"]
async fn state_disk_full_refuses_clearly_pauses_and_recovers_by_itself() {
    let env = TestEnv::new();
    let _tmpfs = Tmpfs::mount(&env.state_dir, "4m");
    let mut daemon = env.start_daemon();
    let server = TestServer::start();
    let data = random_bytes(1_500_000, 77);
    server.add_file("/big", data.clone());
    server.set_mode(
        "/big",
        Mode {
            throttle_bytes_per_sec: Some(150_000),
            ..Default::default()
        },
    );
    let m = manager(&env).await;
    let job = m.create_job("big").await.unwrap();
    let dest = env.files.join("big");
    job.add_file(&server.url("/big"), s(&dest)).await.unwrap();
    fast_retries(&job).await;
    job.resume().await.unwrap();
    wait_bytes(&job, 200_000).await;

    let filler = env.state_dir.join("filler");
    assert!(fill(&filler) > 0);
    // Commands fail with an error that names the state folder (the first write that
    // meets the full disk, or a later command once the store is known unwritable).
    let mut refusal = None;
    for i in 0..2000 {
        match m.create_job(&format!("while full {i}")).await {
            Ok(_) => continue,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("a command is refused once the state disk is full");
    assert_eq!(refusal.kind(), ErrorKind::ResourceExhausted, "{refusal}");
    let text = refusal.to_string();
    assert!(
        text.contains(&env.state_dir.display().to_string()),
        "{text}"
    );
    assert!(text.contains("full"), "{text}");

    // The transfer waits in transient_error with its offset.
    let paused = wait_state(&job, |s| s == JobState::TransientError).await;
    let error = paused.error.clone().expect("an error record");
    assert_eq!(error.code, "state_unwritable", "{error:?}");
    assert!(paused.bytes_transferred > 0, "{paused:?}");
    let refused = m.create_job("still full").await.expect_err("still refused");
    assert_eq!(refused.kind(), ErrorKind::ResourceExhausted, "{refused}");

    // Space returns: everything goes on by itself.
    std::fs::remove_file(&filler).unwrap();
    let info = wait_state(&job, |s| s == JobState::Transferred).await;
    assert_eq!(info.bytes_transferred, data.len() as u64);
    let starts = range_starts(&server.requests("/big"));
    assert!(
        starts.iter().any(|s| s.is_some_and(|s| s > 0)),
        "the transfer went on from its offset: {starts:?}"
    );
    job.complete().await.unwrap();
    assert_eq!(file_sha(&dest), sha256_hex(&data));
    m.create_job("after").await.expect("commands work again");

    daemon.terminate();
    let db = rusqlite::Connection::open(env.state_dir.join("ferry.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let stored: i64 = db
        .query_row(
            "SELECT count(*) FROM jobs WHERE display_name = 'after'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "the job created after the recovery is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_file_limit_256_with_1000_jobs_all_finish() {
    let env = TestEnv::new();
    let daemon = env.start_daemon();
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg("--nofile=256:256")
        .status()
        .expect("run prlimit");
    assert!(status.success());
    let server = TestServer::start();
    let m = manager(&env).await;
    let mut jobs = Vec::new();
    for i in 0..1000u64 {
        let path = format!("/f{i}");
        let data = random_bytes(4096, 1000 + i);
        server.add_file(&path, data.clone());
        let job = m.create_job(&format!("j{i}")).await.unwrap();
        let dest = env.files.join(format!("f{i}"));
        job.add_file(&server.url(&path), s(&dest)).await.unwrap();
        job.set(JobProperties {
            minimum_retry_delay_secs: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
        jobs.push((job, dest, data));
    }
    for (job, _, _) in &jobs {
        job.resume().await.unwrap();
    }
    for (job, dest, data) in &jobs {
        let info = wait_state(job, |s| s == JobState::Transferred).await;
        assert_eq!(info.files_transferred, 1);
        job.complete().await.unwrap();
        assert_eq!(&std::fs::read(dest).unwrap(), data);
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .count();
    assert!(fds <= 256, "{fds} descriptors open");
    assert!(m.status().await.is_ok(), "ferryd still serves");
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) … utime(11) stime(12).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_file_limit_reached_on_accept_waits_without_spinning() {
    let env = TestEnv::new();
    let daemon = env.start_daemon();
    let m = manager(&env).await;
    m.status().await.unwrap();
    let pid = daemon.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // The soft limit only: the hard one stays, so it can be raised again.
    let limit = |n: usize| {
        let status = Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={n}:"))
            .status()
            .expect("run prlimit");
        assert!(status.success());
    };
    limit(open + 2);
    // More connections than descriptors left: the rest wait in the backlog.
    let conns: Vec<_> = (0..16)
        .map(|_| std::os::unix::net::UnixStream::connect(&env.socket).unwrap())
        .collect();
    wait_until(DEADLINE, "ferryd to use up its descriptors", || {
        let now = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        (now >= open + 2).then_some(())
    });
    // Over a window, ferryd burns a small part of the time (a spinning accept loop would
    // use all of it).
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (busy, wall) = (
        (cpu_ticks(pid) - c0) as f64 / ticks_per_sec,
        t0.elapsed().as_secs_f64(),
    );
    assert!(
        busy < wall / 4.0,
        "ferryd used {busy:.2} s of CPU in {wall:.2} s"
    );
    let log = std::fs::read_to_string(env.log_path()).unwrap();
    assert!(
        log.contains("cannot accept a connection"),
        "the limit is logged"
    );
    // Descriptors back: clients are served again.
    drop(conns);
    limit(1024);
    let m = manager(&env).await;
    m.status().await.expect("served once descriptors are back");
}

/// The ids of the zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(child);
        }
    }
    out
}

/// Whether process `pid` runs (exists and is not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_notify_command_is_bounded_reaped_and_recorded() {
    let env = TestEnv::new();
    let config = env.dir.path().join("ferryd.toml");
    std::fs::write(&config, "notify_command_timeout = \"2s\"\n").unwrap();
    let daemon = env.start_daemon_with(&["--config", s(&config)]);
    let server = TestServer::start();
    server.add_file("/f", random_bytes(10_000, 5));
    let m = manager(&env).await;
    let job = m.create_job("hang").await.unwrap();
    job.add_file(&server.url("/f"), s(&env.files.join("f")))
        .await
        .unwrap();
    let pids = env.dir.path().join("pids");
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(600),
        notify_command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "sleep 1000 & echo \"$$ $!\" > {}.tmp && mv {0}.tmp {0}; wait",
                pids.display()
            ),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    job.resume().await.unwrap();
    let started = wait_until(DEADLINE, "the notify command to start", || {
        std::fs::read_to_string(&pids).ok()
    });
    let ids: Vec<u32> = started
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let failure = wait_until_future(DEADLINE, "the timeout to be recorded", || {
        let job = job.clone();
        async move {
            let info = job.info().await.ok()?;
            (!info.last_notification_error.is_empty()).then_some(info.last_notification_error)
        }
    })
    .await;
    assert!(failure.contains("notify_command_timeout"), "{failure}");
    wait_until(DEADLINE, "the command and its child to be gone", || {
        ids.iter().all(|p| !running(*p)).then_some(())
    });
    wait_until(DEADLINE, "no zombie children of ferryd", || {
        zombie_children(daemon.pid()).is_empty().then_some(())
    });
    assert!(m.status().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_50_jobs_starts_one_handler_and_delivers_in_order() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let class = Uuid::new_v4();
    let workdir = env.dir.path().join("handler");
    std::fs::create_dir_all(&workdir).unwrap();
    let m = manager(&env).await;
    // Each start of the handler leaves a line in starts.log (in its working folder); it
    // takes a second before it registers its class object.
    let script = format!(
        "echo $$ >> starts.log; sleep 1; FERRY_HANDLER_IDLE_SECS=20 exec {}",
        example_bin("notify_handler").display()
    );
    m.register_handler(
        class,
        vec!["/bin/sh".into(), "-c".into(), script],
        Some(workdir.display().to_string()),
    )
    .await
    .unwrap();
    let mut jobs = Vec::new();
    for i in 0..50u64 {
        let path = format!("/s{i}");
        let data = random_bytes(8192, 500 + i);
        server.add_file(&path, data.clone());
        let job = m.create_job(&format!("storm {i}")).await.unwrap();
        let dest = env.files.join(format!("s{i}"));
        job.add_file(&server.url(&path), s(&dest)).await.unwrap();
        job.set(JobProperties {
            notification_class: Some(class),
            notify_flags: Some(NotifyFlags::FILE_TRANSFERRED | NotifyFlags::JOB_TRANSFERRED),
            minimum_retry_delay_secs: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
        jobs.push((job, dest, data));
    }
    for (job, _, _) in &jobs {
        job.resume().await.unwrap();
    }
    for (job, dest, data) in &jobs {
        wait_state(job, |s| s == JobState::Acknowledged).await;
        assert_eq!(&std::fs::read(dest).unwrap(), data);
    }
    let starts = std::fs::read_to_string(workdir.join("starts.log")).unwrap();
    assert_eq!(starts.lines().count(), 1, "handler starts: {starts:?}");
    let calls = std::fs::read_to_string(workdir.join("ferry-calls.log")).unwrap();
    for (job, _, _) in &jobs {
        let id = job.id().to_string();
        let mine: Vec<&str> = calls
            .lines()
            .filter(|l| l.ends_with(&id))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let first_job = mine.iter().position(|m| *m == "job_transferred");
        let first_file = mine.iter().position(|m| *m == "file_transferred");
        assert!(
            matches!((first_file, first_job), (Some(f), Some(j)) if f < j),
            "job {id}: {mine:?}"
        );
    }
}

/// The home folder of the user running the tests, from the password database.
fn my_home() -> PathBuf {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("reading the password database")
        .expect("no password entry for this user")
        .dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_folder_of_ferryd_is_root_and_commands_start_in_home() {
    let env = TestEnv::new();
    // The test runs in the crate's folder; ferryd does not keep it.
    let daemon = env.start_daemon();
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", daemon.pid())).unwrap();
    assert_eq!(cwd, Path::new("/"));
    let server = TestServer::start();
    server.add_file("/f", random_bytes(1000, 9));
    let m = manager(&env).await;
    let job = m.create_job("cwd").await.unwrap();
    job.add_file(&server.url("/f"), s(&env.files.join("f")))
        .await
        .unwrap();
    let out = env.dir.path().join("cwd.out");
    job.set_notify_command(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("pwd > {0}.tmp && mv {0}.tmp {0}", out.display()),
    ])
    .await
    .unwrap();
    job.resume().await.unwrap();
    let pwd = wait_until(DEADLINE, "the notify command's folder", || {
        std::fs::read_to_string(&out).ok()
    });
    assert_eq!(Path::new(pwd.trim()), my_home());
}
