//! Local file safety and a full disk: ferry writes only its part file and the destination,
//! never through a symbolic link, and a full disk is a transient error it recovers from.

mod common;
use common::manager;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use ferry_client::{ErrorContext, ErrorKind, Job, JobInfo, JobProperties, JobState};
use ferry_testkit::{random_bytes, sha256_hex, Mode, TestEnv, TestServer};

const DEADLINE: Duration = Duration::from_secs(120);

async fn wait_state(job: &Job, state: JobState) -> JobInfo {
    tokio::time::timeout(DEADLINE, job.wait_for(|s| s == state))
        .await
        .unwrap_or_else(|_| panic!("job {} never reached {state}", job.id()))
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_parent_is_resolved_once_and_a_later_swap_cannot_redirect_writes() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let real = env.files.join("real");
    let elsewhere = env.files.join("elsewhere");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let link = env.files.join("link");
    symlink(&real, &link).unwrap();
    let data = random_bytes(50_000, 1);
    server.add_file("/s", data.clone());
    let job = m.create_job("symlink parent").await.unwrap();
    let f = job
        .add_file(&server.url("/s"), link.join("out.bin").to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        Path::new(&f.local_path),
        real.join("out.bin"),
        "the folder is resolved"
    );
    // Someone points the link elsewhere before the transfer.
    std::fs::remove_file(&link).unwrap();
    symlink(&elsewhere, &link).unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(real.join("out.bin")).unwrap()),
        sha256_hex(&data)
    );
    assert!(
        names(&elsewhere).is_empty(),
        "nothing written through the swapped link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_that_becomes_a_symlink_is_replaced_not_followed() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let victim = env.files.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let data = random_bytes(20_000, 2);
    server.add_file("/d", data.clone());
    let dest = env.files.join("dest.bin");
    let job = m.create_job("dest symlink").await.unwrap();
    job.add_file(&server.url("/d"), dest.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::Transferred).await;
    symlink(&victim, &dest).unwrap();
    job.complete().await.unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "the link's target is untouched"
    );
    let meta = std::fs::symlink_metadata(&dest).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the destination is now the downloaded file"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_file_replaced_by_a_symlink_is_refused() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let victim = env.files.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    // Larger than the bodies ferry gathers in memory, so the cut leaves a part file.
    server.add_file("/p", random_bytes(600_000, 3));
    server.push_fault("/p", ferry_testkit::Fault::CutAfter(300_000));
    let job = m.create_job("part symlink").await.unwrap();
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let f = job
        .add_file(&server.url("/p"), env.files.join("p.bin").to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    wait_state(&job, JobState::TransientError).await;
    job.suspend().await.unwrap();
    // Plant a link where the part file is.
    std::fs::remove_file(&f.temporary_path).unwrap();
    symlink(&victim, &f.temporary_path).unwrap();
    job.resume().await.unwrap();
    let info = tokio::time::timeout(DEADLINE, job.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "never written through the link"
    );
    // Either refused (a symlink where the part file was) or started afresh beside it:
    // in no case through the link.
    if info.state() == JobState::Error {
        let e = info.error.unwrap();
        assert_eq!(e.context, Some(ErrorContext::LocalFile), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_and_dotdot_destinations_are_refused() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let m = manager(&env).await;
    let job = m.create_job("bad paths").await.unwrap();
    for path in [
        env.files.to_str().unwrap().to_string(),
        format!("{}/../escape.bin", env.files.display()),
        "relative/path.bin".to_string(),
    ] {
        let e = job
            .add_file("http://127.0.0.1:9/x", &path)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{path}: {e}");
    }
    assert!(job.files().await.unwrap().is_empty());
}

/// Mounts a small tmpfs (root only).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a small tmpfs): .ci/run runs it"]
async fn full_disk_is_transient_and_the_job_finishes_once_space_is_freed() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc_geteuid() } == 0;
    assert!(
        root,
        "mounting a tmpfs needs root (.ci/run runs this as root)"
    );
    let env = TestEnv::new();
    let fs = Tmpfs::mount(&env.dir.path().join("small"), "1m")
        .expect("mount a small tmpfs (needs root and a kernel that allows it)");
    let _d = env.start_daemon();
    let server = TestServer::start();
    let m = manager(&env).await;
    let data = random_bytes(3 << 20, 4);
    server.add_file("/big", data.clone());
    server.set_mode(
        "/big",
        Mode {
            throttle_bytes_per_sec: Some(8 << 20),
            ..Default::default()
        },
    );
    let job = m.create_job("full disk").await.unwrap();
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let dest = fs.0.join("big.bin");
    job.add_file(&server.url("/big"), dest.to_str().unwrap())
        .await
        .unwrap();
    job.resume().await.unwrap();
    let info = wait_state(&job, JobState::TransientError).await;
    let e = info.error.unwrap();
    assert_eq!(e.context, Some(ErrorContext::LocalFile));
    assert_eq!(e.code, "enospc");
    assert!(e.message.contains("free some space"), "{}", e.message);
    fs.resize("16m");
    wait_state(&job, JobState::Transferred).await;
    job.complete().await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );
    drop(m);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
