//! `ferry monitor` in a real pseudo-terminal (a tmux session of its own): it shows a job
//! appear and progress, suspends it on a key, and on `q` gives the terminal back as it
//! found it (main screen, cursor shown); at 80×24 its states stay whole and its help in
//! view.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use ferry_client::JobState;
use ferry_testkit::{random_bytes, wait_until, wait_until_future, Mode, TestEnv, TestServer};

/// A tmux server of its own (its own socket), killed when dropped, test failed or not.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached 160×30 session.
    fn start(socket: PathBuf, command: &str) -> Tmux {
        Tmux::start_sized(socket, command, 160, 30)
    }

    /// Starts `command` in a detached `width`×`height` session.
    fn start_sized(socket: PathBuf, command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux { socket };
        let (width, height) = (width.to_string(), height.to_string());
        let out = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                &width,
                "-y",
                &height,
                "-s",
                "t",
                command,
            ])
            .output()
            .expect("run tmux (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    /// The pane's text now.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format variable of the pane (`alternate_on`, `cursor_flag`).
    fn pane(&self, variable: &str) -> String {
        let out = self
            .cmd()
            .args([
                "display-message",
                "-p",
                "-t",
                "t",
                &format!("#{{{variable}}}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn keys(&self, keys: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "t", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the screen satisfies `f`; returns the line it picked.
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> Option<String>) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(DEADLINE, what, || {
                last = self.screen();
                f(&last)
            })
        }));
        found.unwrap_or_else(|_| panic!("the monitor never showed {what}; screen:\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The line of the screen that names `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(name))
}

/// The percentage a job row shows, if any.
fn percent(line: &str) -> Option<u32> {
    let at = line.find('%')?;
    line[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The shell command line that runs the monitor of `env` and then waits.
fn monitor_command(env: &TestEnv) -> String {
    let ferry_bin = env.ferry().get_program().to_owned();
    let mut line = String::from("env");
    for (k, v) in env.envs() {
        line.push_str(&format!(" {k}='{v}'"));
    }
    line.push_str(&format!(
        " '{}' --no-autostart monitor; echo \"monitor exited $?\"; exec sleep 600",
        ferry_bin.to_string_lossy()
    ));
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux: .ci/run runs it"]
async fn cli_trust_monitor_in_an_80x24_terminal_keeps_states_whole_and_its_help_in_view() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/slow.bin", random_bytes(3_000_000, 12));
    server.set_mode(
        "/slow.bin",
        Mode {
            throttle_bytes_per_sec: Some(150_000),
            ..Default::default()
        },
    );
    let tmux = Tmux::start_sized(
        env.dir.path().join("tmux.sock"),
        &monitor_command(&env),
        80,
        24,
    );
    tmux.wait_for("its header", |s| {
        s.contains("ferry monitor").then(String::new)
    });
    let m = manager(&env).await;
    let job = m.create_job("small-screen").await.unwrap();
    job.add_file(&server.url("/slow.bin"), s(&env.files.join("slow.bin")))
        .await
        .unwrap();
    job.resume().await.unwrap();
    let line = tmux.wait_for("the job transferring, its state whole", |s| {
        row(s, "small-screen")
            .filter(|l| {
                l.split_whitespace().any(|w| w == "xferring") && percent(l).is_some_and(|p| p >= 1)
            })
            .map(String::from)
    });
    assert!(!line.contains("transfe "), "{line}");
    tmux.wait_for(
        "the selected job's priority and files under the table",
        |s| {
            s.contains("small-screen: normal priority, files 0/1")
                .then(String::new)
        },
    );
    tmux.keys("?");
    // The overlay is drawn over a few frames (a capture may catch it half drawn): wait
    // until it shows every line asked for; if one never fits, the wait fails with the
    // last screen.
    let lines = [
        "select a job",
        "q, Ctrl-C",
        "xferring  transferring",
        "acked",
    ];
    tmux.wait_for("the help, every line of it in view at 80x24", |s| {
        (s.contains("Keys (") && lines.iter().all(|l| s.contains(l))).then(String::new)
    });
    tmux.keys("?");
    tmux.wait_for("the help closed", |s| {
        (!s.contains("Keys (")).then(String::new)
    });
    tmux.keys("q");
    tmux.wait_for("the shell after the monitor", |s| {
        s.contains("monitor exited 0").then(String::new)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tmux: .ci/run runs it"]
async fn monitor_in_a_terminal_follows_a_job_suspends_it_and_restores_the_terminal() {
    let env = TestEnv::new();
    let _d = env.start_daemon();
    let server = TestServer::start();
    server.add_file("/watched.bin", random_bytes(3_000_000, 11));
    server.set_mode(
        "/watched.bin",
        Mode {
            throttle_bytes_per_sec: Some(150_000),
            ..Default::default()
        },
    );
    let tmux = Tmux::start(env.dir.path().join("tmux.sock"), &monitor_command(&env));
    tmux.wait_for("its header", |s| {
        s.contains("ferry monitor").then(String::new)
    });
    assert_eq!(
        tmux.pane("alternate_on"),
        "1",
        "it draws on the alternate screen"
    );

    let m = manager(&env).await;
    let job = m.create_job("watched-job").await.unwrap();
    job.add_file(&server.url("/watched.bin"), s(&env.files.join("w.bin")))
        .await
        .unwrap();
    job.resume().await.unwrap();

    let first = tmux.wait_for("the job transferring with some progress", |s| {
        row(s, "watched-job")
            .filter(|l| l.contains("transferring") && percent(l).is_some_and(|p| p >= 1))
            .map(String::from)
    });
    let first_percent = percent(&first).unwrap();
    tmux.wait_for("the job's progress move on", |s| {
        row(s, "watched-job")
            .filter(|l| percent(l).is_some_and(|p| p > first_percent))
            .map(String::from)
    });
    tmux.wait_for("a rate in the header", |s| {
        s.lines()
            .next()
            .filter(|h| h.contains("1 transferring") && h.contains("/s") && !h.contains("total 0 "))
            .map(String::from)
    });

    tmux.keys("s");
    let info = wait_until_future(DEADLINE, "the job to be suspended", || async {
        let info = job.info().await.unwrap();
        (info.state() == JobState::Suspended).then_some(info)
    })
    .await;
    assert!(info.bytes_transferred > 0);
    tmux.wait_for("the job suspended", |s| {
        row(s, "watched-job")
            .filter(|l| l.contains("suspended"))
            .map(String::from)
    });

    tmux.keys("q");
    let after = tmux.wait_for("the shell after the monitor", |s| {
        s.contains("monitor exited 0").then(|| s.to_string())
    });
    assert!(
        !after.contains("watched-job"),
        "the monitor's screen is gone: {after}"
    );
    assert_eq!(tmux.pane("alternate_on"), "0", "back on the main screen");
    assert_eq!(tmux.pane("cursor_flag"), "1", "the cursor is shown");
    assert_eq!(
        job.info().await.unwrap().state(),
        JobState::Suspended,
        "quitting leaves the job as it was"
    );
}
