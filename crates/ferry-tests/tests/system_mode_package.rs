//! ferry's Debian package and systemd (`cargo test system_mode`): `dist/deb/build` makes
//! the package with `cargo deb` from the binaries the tests run; it holds the binaries,
//! units, configuration, man pages and completions, `systemd-analyze verify` accepts its
//! units, `dpkg -i` installs it (the groups and the `_ferry` user made, the system units
//! enabled), again as an upgrade, and the installed `ferry --version` runs; a purge
//! disables the units again (the package is purged when the test ends, even when it
//! fails). And ferryd speaks systemd's
//! notify protocol: READY once it serves, WATCHDOG pings.
//!
//! Needs root (dpkg -i, ferryd --system) and cargo-deb: the tests are `#[ignore]`d, and
//! `.ci/run` installs cargo-deb and runs them as root with `--include-ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ferry_testkit::target_dir_bin;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `dpkg ARGS`, polled until another dpkg or apt (another engineer's `apt-get install`
/// on a shared machine) has let go of dpkg's lock, for at most two minutes.
fn dpkg(args: &[&std::ffi::OsStr]) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("dpkg {args:?}: {e}"));
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || std::time::Instant::now() > deadline {
            assert!(
                out.status.success(),
                "dpkg {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the installed package when dropped.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| dpkg(&["--purge".as_ref(), "ferry".as_ref()]));
    }
}

/// `systemd-analyze`, installed (package `systemd`) when missing.
fn ensure_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    run(Command::new("apt-get").args(["install", "-y", "-qq", "systemd"]));
}

#[test]
#[ignore = "needs root (dpkg -i), cargo-deb and systemd-analyze: .ci/run runs it"]
fn system_mode_debian_package_builds_installs_and_runs() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "dpkg -i needs root (.ci/run runs this as root)");
    if !Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        panic!("cargo-deb is missing: `cargo install cargo-deb` (.ci/run does)");
    }
    ensure_systemd_analyze();

    // The binaries of the profile these tests run with, built by the test kit.
    let xtask = target_dir_bin("xtask");
    target_dir_bin("ferry");
    target_dir_bin("ferryd");
    let profile_dir = xtask.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    let out_dir = tempfile::tempdir().unwrap();
    run(Command::new(Path::new(WORKSPACE).join("dist/deb/build"))
        .args([&profile, "-o"])
        .arg(out_dir.path())
        .env("FERRY_DEB_PREBUILT", "1")
        .env("CARGO_TARGET_DIR", target_dir));
    let deb: PathBuf = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb was made");

    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/ferry",
        "./usr/bin/ferryd",
        "./etc/ferry/ferryd.toml",
        "./usr/lib/systemd/system/ferryd.service",
        "./usr/lib/systemd/system/ferryd.socket",
        "./usr/lib/systemd/user/ferryd.service",
        "./usr/lib/systemd/user/ferryd.socket",
        "./usr/share/man/man1/ferry.1",
        "./usr/share/man/man1/ferryd.1",
        "./usr/share/man/man1/ferry-get.1",
        "./usr/share/man/man1/ferry-peers-ca-new.1",
        "./usr/share/doc/ferry/changelog.Debian",
        "./usr/share/doc/ferry/copyright",
        "./usr/share/bash-completion/completions/ferry",
        "./usr/share/zsh/vendor-completions/_ferry",
        "./usr/share/fish/vendor_completions.d/ferry.fish",
        "./usr/lib/apt/methods/ferry",
        "./usr/lib/apt/methods/ferry+http -> ferry",
        "./usr/lib/apt/methods/ferry+https -> ferry",
        "./usr/lib/systemd/system/ferryd.service.d/apt.conf",
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.ends_with(path) || l.ends_with(&format!("{path}.gz"))),
            "{path} in the package:\n{contents}"
        );
    }

    let _installed = Installed;
    dpkg(&["-i".as_ref(), deb.as_os_str()]);
    let version = text(&run(Command::new("/usr/bin/ferry").arg("--version")));
    assert!(
        version.starts_with(&format!("ferry {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let version = text(&run(Command::new("/usr/bin/ferryd").arg("--version")));
    assert!(version.starts_with("ferryd "), "{version}");
    // apt's method, as apt starts it for a ferry+http source: its capabilities first.
    let said = text(&run(&mut Command::new("/usr/lib/apt/methods/ferry+http")));
    assert!(said.starts_with("100 Capabilities\n"), "{said}");
    let conffiles = text(&run(Command::new("dpkg-query").args([
        "--showformat=${Conffiles}",
        "--show",
        "ferry",
    ])));
    assert!(conffiles.contains("/etc/ferry/ferryd.toml"), "{conffiles}");
    run(Command::new("getent").args(["group", "ferry-admin"]));
    // The system user of the daemon's unprivileged processes: a system account without a
    // home or a login, in a group of its own.
    let ferry_user = text(&run(Command::new("getent").args(["passwd", "_ferry"])));
    let fields: Vec<&str> = ferry_user.trim().split(':').collect();
    assert_eq!(fields[5], "/nonexistent", "{ferry_user}");
    assert!(fields[6].ends_with("nologin"), "{ferry_user}");
    assert!(fields[2].parse::<u32>().unwrap() < 1000, "{ferry_user}");
    run(Command::new("getent").args(["group", "_ferry"]));
    // The system units are enabled as dh_installsystemd's snippets do (the service's
    // Also= enables the socket), whether or not systemd runs here.
    let wants = Path::new("/etc/systemd/system/sockets.target.wants/ferryd.socket");
    assert!(wants.is_symlink(), "{} after install", wants.display());
    // An upgrade (the same package again) runs the scripts again: they find the user,
    // the group and the links there.
    dpkg(&["-i".as_ref(), deb.as_os_str()]);
    assert!(wants.is_symlink(), "{} after an upgrade", wants.display());
    // The installed configuration is the system daemon's, and ferryd accepts it.
    let config = std::fs::read_to_string("/etc/ferry/ferryd.toml").unwrap();
    assert!(config.contains("mode = \"system\""));

    // The units, as installed.
    for (units, user) in [
        ("/usr/lib/systemd/system", false),
        ("/usr/lib/systemd/user", true),
    ] {
        let mut cmd = Command::new("systemd-analyze");
        cmd.args(["verify", "--man=no"]);
        if user {
            // Checked as files: a root test has no user manager to ask.
            cmd.arg("--generators=no");
        }
        cmd.arg(format!("{units}/ferryd.socket"))
            .arg(format!("{units}/ferryd.service"));
        let out = cmd.output().expect("systemd-analyze");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "systemd-analyze verify of {units}: {said}"
        );
    }

    // Purged, the package takes its links with it (the user stays, as Debian's do).
    dpkg(&["--purge".as_ref(), "ferry".as_ref()]);
    assert!(
        !wants.exists() && !wants.is_symlink(),
        "{} after purge",
        wants.display()
    );
}

#[test]
#[ignore = "needs root (ferryd --system): .ci/run runs it"]
fn system_mode_tells_systemd_it_is_ready_and_pings_the_watchdog() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "ferryd --system needs root (.ci/run runs this as root)"
    );
    // systemd's side of `Type=notify` and `WatchdogSec=`: a datagram socket named by
    // NOTIFY_SOCKET, and WATCHDOG_USEC (here 400 ms: a ping every 200 ms).
    let env = ferry_testkit::TestEnv::new();
    let notify_path = env.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut daemon = Command::new(target_dir_bin("ferryd"))
        .arg("--system")
        .envs(env.envs())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferryd --system");
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded: READY first, then two watchdog pings (each read waits at most 30 s).
    while said
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 2
        && said.len() < 50
    {
        match notify.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.contains("READY=1") {
                    // Ready means serving: the socket answers now.
                    assert!(
                        std::os::unix::net::UnixStream::connect(&env.socket).is_ok(),
                        "READY before the socket answers"
                    );
                }
                said.push(m);
            }
            Err(e) => {
                let _ = daemon.kill();
                panic!("no notification from ferryd ({e}); so far: {said:?}");
            }
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        said[0].contains("READY=1") && said[0].contains("STATUS=serving every user"),
        "READY comes first: {said:?}"
    );
    assert!(said.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2);
}
