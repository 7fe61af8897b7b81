//! systemd socket activation: ferryd serves a listening socket passed as fd 3 with
//! `LISTEN_FDS=1` and `LISTEN_PID` set to its own pid, as `ferryd.socket` does.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use ferry_client::{ConnectOptions, Manager};
use ferry_testkit::{target_dir_bin, wait_until, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferryd_serves_a_socket_passed_by_systemd() {
    let env = TestEnv::new();
    let socket = env.dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = std::process::Command::new(target_dir_bin("ferryd"));
    // No environment changes on the Command: the child's environment is read at exec,
    // after pre_exec has set LISTEN_PID to the child's own pid.
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&env.state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec: dup2, getpid, and
    // setenv on the child's private copy of the environment.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let pid = format!("{}\0", libc::getpid());
            libc::setenv(c"LISTEN_PID".as_ptr(), pid.as_ptr().cast(), 1);
            libc::setenv(c"LISTEN_FDS".as_ptr(), c"1".as_ptr(), 1);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let m = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match Manager::connect_with(ConnectOptions {
                socket: socket.clone(),
                autostart: false,
                ..Default::default()
            })
            .await
            {
                Ok(m) => match m.status().await {
                    Ok(_) => break m,
                    Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                    Err(_) => {}
                },
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("ferryd never answered: {e}")
                }
                Err(_) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ferryd exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    drop(listener);
    let status = m.status().await.unwrap();
    assert_eq!(status.pid, child.id(), "the activated ferryd answers");
    let job = m.create_job("over an activated socket").await.unwrap();
    assert_eq!(m.jobs(false).await.unwrap()[0].id, job.id());
    m.shutdown_daemon().await.unwrap();
    wait_until(Duration::from_secs(30), "ferryd to exit", || {
        child.try_wait().ok().flatten()
    });
    assert!(socket.exists(), "a socket systemd owns is left in place");
}
