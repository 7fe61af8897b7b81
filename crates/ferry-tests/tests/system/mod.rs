//! The system-wide ferryd under test, with real users: the test set-up creates two
//! unprivileged users and an administrator (`useradd`, idempotent, under a lock so that
//! test processes running at once do not race), starts `ferryd --system` as root on the
//! test's own socket and store, and runs the `ferry` command as each user (`setpriv
//! --reuid --regid --init-groups`, with the umask asked). Raw gRPC connections made *as* a
//! user (a thread of this process takes the user's effective ids just for `connect`,
//! which is what the kernel records for `SO_PEERCRED`) reach what the command line does
//! not: event subscriptions, callback channels, thousands of calls.
//!
//! Everything needs root: the tests are `#[ignore]`d, and `.ci/run` runs them as root
//! with `--include-ignored`.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry_testkit::{example_bin, target_dir_bin, wait_until, Daemon, TestEnv};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The admin group the tests' daemons are configured with.
pub const ADMIN_GROUP: &str = "ferrytest-admins";
/// Where the test users' passwd homes are (their own, 0700).
const HOMES: &str = "/var/tmp/ferry-test-homes";
/// How long one `ferry` command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// A user of the machine.
#[derive(Debug, Clone)]
pub struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// Every group (`id -G`).
    pub groups: Vec<u32>,
    /// The passwd entry's home.
    pub home: PathBuf,
}

/// The test users: two unprivileged ones and a member of [`ADMIN_GROUP`].
#[derive(Debug)]
pub struct Users {
    pub a: User,
    pub b: User,
    pub admin: User,
}

/// The test users, created the first time (panics when this process is not root).
pub fn users(test: &str) -> &'static Users {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "{test} needs root to create users and run ferryd --system (.ci/run runs it as root)"
    );
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(create_users)
}

fn run(program: &str, args: &[&str]) -> io::Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
}

fn must(program: &str, args: &[&str]) {
    let out = run(program, args).unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn id_of(flag: &str, name: &str) -> Option<String> {
    let out = run("id", &[flag, name]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Holds the lock under which users are created (test processes run at once).
fn users_lock() -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/ferry-test-users.lock")
        .expect("open the users lock");
    // SAFETY: flock on an open descriptor; released when `lock` is closed.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    lock
}

fn create_users() -> Users {
    let _lock = users_lock();
    Users {
        a: make_user("ferrytest-a", false),
        b: make_user("ferrytest-b", false),
        admin: make_user("ferrytest-adm", true),
    }
}

/// The system user the cache process runs as (`_ferry`, as the Debian package creates
/// it), created the first time; its uid.
pub fn cache_user() -> u32 {
    let _lock = users_lock();
    if id_of("-u", "_ferry").is_none() {
        must(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "-U",
                "_ferry",
            ],
        );
    }
    id_of("-u", "_ferry").unwrap().parse().unwrap()
}

/// A user of its own for one test (created the first time, as root), for checks that
/// look at every process of a user and so must not see other tests' commands.
pub fn dedicated_user(name: &'static str) -> User {
    let _lock = users_lock();
    make_user(name, false)
}

/// Creates `name` unless it exists (home under [`HOMES`], 0700, its own group), in the
/// admin group when `admin`.
fn make_user(name: &'static str, admin: bool) -> User {
    must("groupadd", &["-f", ADMIN_GROUP]);
    std::fs::create_dir_all(HOMES).unwrap();
    std::fs::set_permissions(HOMES, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = Path::new(HOMES).join(name);
    let home_s = home.to_str().unwrap();
    if id_of("-u", name).is_none() {
        let mut args = vec!["-M", "-d", home_s, "-s", "/bin/sh", "-U"];
        if admin {
            args.extend(["-G", ADMIN_GROUP]);
        }
        args.push(name);
        must("useradd", &args);
    } else if admin
        && !id_of("-Gn", name)
            .unwrap_or_default()
            .split_whitespace()
            .any(|g| g == ADMIN_GROUP)
    {
        must("usermod", &["-aG", ADMIN_GROUP, name]);
    }
    std::fs::create_dir_all(&home).unwrap();
    must("chown", &[&format!("{name}:{name}"), home_s]);
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let num = |flag| id_of(flag, name).unwrap().parse::<u32>().unwrap();
    let groups = id_of("-G", name)
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    User {
        name,
        uid: num("-u"),
        gid: num("-g"),
        groups,
        home,
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The trimmed standard output of a command that must have succeeded.
    pub fn expect_ok(&self, what: &str) -> String {
        assert!(self.ok, "{what} failed: {}{}", self.stderr, self.stdout);
        self.stdout.trim().to_string()
    }

    /// The standard error of a command that must have failed.
    pub fn expect_err(&self, what: &str) -> String {
        assert!(!self.ok, "{what} succeeded: {}", self.stdout);
        self.stderr.clone()
    }
}

/// Runs `cmd` to its end (bounded), collecting its output.
pub fn run_bounded(mut cmd: Command) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read both pipes on threads so a chatty command never blocks on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let so = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let se = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let end = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("a command ran longer than {COMMAND_DEADLINE:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        ok: status.success(),
        stdout: so.join().unwrap(),
        stderr: se.join().unwrap(),
    }
}

/// A system-wide ferryd of its own, with the users' folders for one test.
pub struct SystemEnv {
    pub env: TestEnv,
    pub daemon: Daemon,
    pub users: &'static Users,
    /// A folder everyone may read and enter, with copies of `ferry` and `notify_handler`
    /// (the target directory may be out of other users' reach).
    pub bin: PathBuf,
    /// This test's folders of A and B (0700 each, theirs), and a folder of root's only.
    pub home_a: PathBuf,
    pub home_b: PathBuf,
    pub root_only: PathBuf,
    pub config: PathBuf,
    /// The daemon's arguments (for [`SystemEnv::restart`]).
    args: Vec<String>,
}

impl SystemEnv {
    /// Starts `ferryd --system` as root with the configuration `admin_group =
    /// "ferrytest-admins"` plus `extra_config`.
    pub fn start(users: &'static Users, extra_config: &str) -> SystemEnv {
        SystemEnv::start_with(users, extra_config, &["--system"])
    }

    /// Starts `ferryd ARGS --config FILE` as root, FILE holding `admin_group =
    /// "ferrytest-admins"` plus `extra_config` (system mode by `--system` in `args` or by
    /// `mode = "system"` in `extra_config`).
    pub fn start_with(users: &'static Users, extra_config: &str, args: &[&str]) -> SystemEnv {
        SystemEnv::start_after(users, extra_config, args, |_| {})
    }

    /// As [`SystemEnv::start_with`], with `prepare` called with the state folder (not yet
    /// created) before the daemon starts.
    pub fn start_after(
        users: &'static Users,
        extra_config: &str,
        args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> SystemEnv {
        let env = TestEnv::new();
        prepare(&env.state_dir);
        let dir = env.dir.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, from) in [
            ("ferry", target_dir_bin("ferry")),
            ("notify_handler", example_bin("notify_handler")),
        ] {
            std::fs::copy(from, bin.join(name)).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let folder = |name: &str, owner: Option<&User>| {
            let p = dir.join(name);
            std::fs::create_dir(&p).unwrap();
            if let Some(u) = owner {
                std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
            p
        };
        let home_a = folder("home-a", Some(&users.a));
        let home_b = folder("home-b", Some(&users.b));
        let root_only = folder("root-only", None);
        let config = dir.join("ferryd.toml");
        std::fs::write(
            &config,
            format!("admin_group = \"{ADMIN_GROUP}\"\n{extra_config}"),
        )
        .unwrap();
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--config".to_string(), config.to_str().unwrap().to_string()]);
        let daemon = env.start_daemon_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        SystemEnv {
            env,
            daemon,
            users,
            bin,
            home_a,
            home_b,
            root_only,
            config,
            args,
        }
    }

    /// Starts the daemon again with the same arguments (after it was stopped or killed).
    pub fn restart(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.daemon = self.env.start_daemon_with(&args);
    }

    /// Stops the daemon and starts it again with the same arguments and `vars` added to
    /// its environment (as a unit's `Environment=` lines would).
    pub fn restart_with_env(&mut self, vars: &[(&str, &str)]) {
        self.daemon.terminate();
        let prefix: Vec<String> = std::iter::once("env".to_string())
            .chain(vars.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.daemon = self.env.start_daemon_wrapped(&prefix, &args);
    }

    /// The `ferry` copy everyone may run.
    pub fn ferry_path(&self) -> PathBuf {
        self.bin.join("ferry")
    }

    /// `ferry --system ARGS` as `user` (its groups, umask 022), in its test folder.
    pub fn ferry(&self, user: &User, args: &[&str]) -> Out {
        self.ferry_with_umask(user, "022", args)
    }

    /// `ferry --system ARGS` as `user` with `umask`.
    pub fn ferry_with_umask(&self, user: &User, umask: &str, args: &[&str]) -> Out {
        let mut cmd = self.as_user(user);
        cmd.args(["/bin/sh", "-c", "umask \"$0\" && exec \"$@\"", umask])
            .arg(self.ferry_path())
            .arg("--system")
            .args(args);
        run_bounded(cmd)
    }

    /// `setpriv` as `user` (ids and groups), in a clean environment naming the test
    /// socket, in the user's test folder; the program and its arguments follow.
    pub fn as_user(&self, user: &User) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &user.uid.to_string(),
            "--regid",
            &user.gid.to_string(),
            "--init-groups",
            "--",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &user.home)
        .env("FERRY_SOCKET", &self.env.socket)
        .current_dir(self.folder_of(user));
        cmd
    }

    /// The test folder of `user` (its passwd home for the admin).
    pub fn folder_of(&self, user: &User) -> PathBuf {
        if user.uid == self.users.a.uid {
            self.home_a.clone()
        } else if user.uid == self.users.b.uid {
            self.home_b.clone()
        } else {
            user.home.clone()
        }
    }

    /// `ferry --system ARGS` as root.
    pub fn root_ferry(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(self.ferry_path());
        cmd.arg("--system")
            .args(args)
            .env("FERRY_SOCKET", &self.env.socket);
        run_bounded(cmd)
    }

    /// Creates a job as `user` and returns its id.
    pub fn create(&self, user: &User, name: &str) -> String {
        self.ferry(user, &["create", name])
            .expect_ok("ferry create")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// The `STATE` line of `ferry info JOB` run by `user` (root when `None`).
    pub fn state_of(&self, user: Option<&User>, job: &str) -> String {
        let out = match user {
            Some(u) => self.ferry(u, &["--json", "info", job]),
            None => self.root_ferry(&["--json", "info", job]),
        };
        let text = out.expect_ok("ferry info");
        let v: serde_json::Value = serde_json::from_str(&text).expect("info --json");
        v["state"].as_str().unwrap_or_default().to_string()
    }

    /// Waits until `job` (looked at by root, an administrator) is in one of `states`.
    pub fn wait_state(&self, job: &str, states: &[&str]) -> String {
        wait_until(
            Duration::from_secs(120),
            &format!("job {job} to reach {states:?}"),
            || {
                let s = self.state_of(None, job);
                states.contains(&s.as_str()).then_some(s)
            },
        )
    }

    /// A gRPC channel to the daemon, connected as `user` (see the module documentation).
    pub async fn connect_as(&self, user: &User) -> Channel {
        let socket = self.env.socket.clone();
        let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
        Endpoint::try_from("http://ferryd.local")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let (socket, groups) = (socket.clone(), groups.clone());
                async move {
                    let std = tokio::task::spawn_blocking(move || {
                        connect_with_ids(&socket, uid, gid, &groups)
                    })
                    .await
                    .map_err(io::Error::other)??;
                    std.set_nonblocking(true)?;
                    Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::from_std(std)?))
                }
            }))
            .await
            .expect("connect as the user")
    }
}

/// Connects to `socket` from a new thread whose effective ids (and groups) are `uid`,
/// `gid`, `groups` during the `connect`: the kernel records them as the peer's
/// credentials. Raw system calls, so only that thread changes; it ends right after.
pub fn connect_with_ids(
    socket: &Path,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> io::Result<std::os::unix::net::UnixStream> {
    let socket = socket.to_owned();
    let groups = groups.to_vec();
    std::thread::spawn(move || {
        let keep = u32::MAX; // -1: leave that id as it is
                             // SAFETY: raw per-thread credential changes on this short-lived thread.
        unsafe {
            let check = |r: libc::c_long| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            check(libc::syscall(
                libc::SYS_setgroups,
                groups.len(),
                groups.as_ptr(),
            ))?;
            check(libc::syscall(libc::SYS_setresgid, keep, gid, keep))?;
            check(libc::syscall(libc::SYS_setresuid, keep, uid, keep))?;
            let stream = std::os::unix::net::UnixStream::connect(&socket);
            // Back to root (the saved and real ids are still 0) before the thread ends.
            libc::syscall(libc::SYS_setresuid, keep, 0u32, keep);
            libc::syscall(libc::SYS_setresgid, keep, 0u32, keep);
            stream
        }
    })
    .join()
    .map_err(|_| io::Error::other("the connecting thread panicked"))?
}

/// The pids of the processes running as `uid` (any of real, effective, saved).
pub fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let runs_as = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take(3)
                    .any(|u| u == uid.to_string())
            });
        if runs_as {
            pids.push(pid);
        }
    }
    pids
}

/// Names in `dir` (sorted), for before/after comparisons.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What a file is: content, owner, group, mode, inode (for "nothing changed" checks).
pub fn fingerprint(path: &Path) -> (Vec<u8>, u32, u32, u32, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (
        std::fs::read(path).unwrap_or_default(),
        m.uid(),
        m.gid(),
        m.mode(),
        m.ino(),
    )
}

/// A free TCP port on 127.0.0.1 (bound and let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ferry peers ca new` and `ferry peers cert issue` for `names`, in `dir`.
pub fn fleet(dir: &Path, names: &[&str]) {
    let ferry = ferry_testkit::target_dir_bin("ferry");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&ferry)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry {args:?}: {out:?}");
    };
    run(&["peers", "ca", "new", dir.join("ca").to_str().unwrap()]);
    for n in names {
        run(&[
            "peers",
            "cert",
            "issue",
            "--ca",
            dir.join("ca").to_str().unwrap(),
            n,
            "--out",
            dir.join(n).to_str().unwrap(),
        ]);
    }
}

/// The `[peers]` section of a node with certificates in `certs`.
pub fn peers_section(certs: &Path, port: u16, static_peer: u16) -> String {
    format!(
        "[peers]\nenabled = true\ndiscovery = \"static\"\nlisten_address = \"127.0.0.1\"\n\
         port = {port}\nstatic_peers = [\"127.0.0.1:{static_peer}\"]\nlookup_timeout = \"3s\"\n\
         probe_interval = \"300ms\"\nmax_upload_rate = 0\nca_cert = \"{c}/ca.pem\"\n\
         node_cert = \"{c}/node.pem\"\nnode_key = \"{c}/node.key\"\n",
        c = certs.display()
    )
}
