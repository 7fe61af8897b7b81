//! apt through ferry (`cargo test apt_fleet`; needs root, iproute2, nginx, apt-ftparchive
//! from apt-utils and dpkg-deb): a real Debian repository built by the test behind nginx
//! on a `tc`-limited link, real `apt-get update` and `apt-get install --download-only`
//! with `ferry+http://` sources, each apt in its own tree and in a machine's network
//! namespace, the machine running the system-wide ferryd as the Debian package does.
//! apt starts the method as root and the method becomes `_apt` (apt's sandbox user), so
//! ferryd's `_apt` worker writes apt's `partial/` folder as `_apt`. Everything is removed
//! when a test ends, even when it fails (drop guards).

mod apt_kit;
#[allow(unused_imports)] // the kit re-exports what other tests use
mod peer_cache_kit;
mod system;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use apt_kit::apt::{AptRoot, AptRun};
use apt_kit::machine::{peers_section, SystemMachine};
use apt_kit::repo::{self, Package};
use ferry_client::{ConnectOptions, Manager, PeerState};
use ferry_testkit::wait_until;
use peer_cache_kit::net::shape;
use peer_cache_kit::{peer_in_state, Fleet, Host, Lan, Origin};

const PEER_PORT: u16 = 7391;
/// Every wait of a test is bounded by this.
const DEADLINE: Duration = Duration::from_secs(180);

/// The origin at .1 and machines at .2, .3, …; a repository under the origin's `/debian/`.
struct World {
    // Dropped first: machines and the origin stop before their namespaces go.
    machines: Vec<SystemMachine>,
    roots: Vec<AptRoot>,
    origin: Origin,
    packages: Vec<Package>,
    _fleet: Option<Fleet>,
    _lan: Lan,
}

impl Drop for World {
    fn drop(&mut self) {
        self.machines.clear();
    }
}

/// Packages of `MiB` each, named `pkg-N`.
fn packages(n: usize, mib: usize) -> Vec<(String, usize)> {
    (0..n).map(|i| (format!("pkg-{i}"), mib << 20)).collect()
}

impl World {
    /// `n` machines (a fleet with peer caching when `fleet`), the origin's link limited
    /// to `rate`, the repository holding `pkgs`.
    fn new(n: usize, fleet: bool, rate: &str, pkgs: &[(String, usize)], seed: u64) -> World {
        system::cache_user();
        let mut lan = Lan::new();
        let origin_host = lan.host("origin", 1);
        shape(&origin_host, rate);
        let hosts: Vec<Host> = (0..n)
            .map(|i| lan.host(&format!("m{i}"), 2 + i as u8))
            .collect();
        let origin = Origin::start(&origin_host);
        let named: Vec<(&str, usize)> = pkgs.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let packages = repo::build(&origin.root().join("debian"), &named, seed);
        let fleet = fleet.then(Fleet::new);
        let machines = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let config = match &fleet {
                    Some(f) => {
                        let others: Vec<String> = hosts
                            .iter()
                            .filter(|o| o.ip != h.ip)
                            .map(|o| format!("{}:{PEER_PORT}", o.ip))
                            .collect();
                        peers_section(&f.issue(&format!("m{i}")), PEER_PORT, &others)
                    }
                    None => String::new(),
                };
                SystemMachine::start(h, &config)
            })
            .collect();
        let uri = format!("ferry+{}", origin.url("debian"));
        let roots = (0..n).map(|_| AptRoot::new(&uri, "")).collect();
        World {
            machines,
            roots,
            origin,
            packages,
            _fleet: fleet,
            _lan: lan,
        }
    }

    /// `apt-get ARGS` on machine `i`.
    fn apt_get(&self, i: usize, args: &[&str]) -> AptRun {
        let m = &self.machines[i];
        self.roots[i].apt_get(&m.host.ns, &m.socket_env(), args)
    }

    /// `apt-get ARGS` on every machine at once; each run, in machine order.
    fn apt_get_everywhere(&self, args: &[&str]) -> Vec<AptRun> {
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..self.machines.len())
                .map(|i| s.spawn(move || self.apt_get(i, args)))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    /// The names of every package.
    fn names(&self) -> Vec<&str> {
        self.packages.iter().map(|p| p.name.as_str()).collect()
    }

    /// Body bytes the origin sent for each package file (by its name).
    fn origin_bytes_by_package(&self) -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for l in self.origin.log() {
            if let Some(p) = self
                .packages
                .iter()
                .find(|p| l.path.ends_with(&p.pool_path))
            {
                *m.entry(p.file_name.clone()).or_default() += l.body_bytes;
            }
        }
        m
    }

    /// Panics unless machine `i`'s archives folder holds every package, byte for byte,
    /// and nothing is left in `partial/`.
    fn assert_archived(&self, i: usize) {
        let root = &self.roots[i];
        for p in &self.packages {
            let got = std::fs::read(root.archives().join(&p.file_name))
                .unwrap_or_else(|e| panic!("machine {i} has no {}: {e}", p.file_name));
            assert!(
                got == p.deb,
                "machine {i}: {} differs from the repository's",
                p.file_name
            );
        }
        assert_eq!(
            root.archived_files().1,
            Vec::<String>::new(),
            "partial/ is empty"
        );
    }

    /// Panics unless apt's method ran as `_apt`: the `_apt` worker of machine `i` has a
    /// store of its own.
    fn assert_apts_worker_did_it(&self, i: usize) {
        let uid = nix::unistd::User::from_name("_apt")
            .unwrap()
            .expect("the _apt user (Debian's apt creates it)")
            .uid;
        let store = self.machines[i]
            .env
            .state_dir
            .join("users")
            .join(uid.to_string());
        assert!(
            store.is_dir(),
            "no store of _apt's worker at {}",
            store.display()
        );
    }
}

/// Panics with apt's output unless `run` succeeded.
fn assert_ok(run: &AptRun, what: &str) {
    assert!(run.ok, "{what} failed:\n{}", run.output);
}

/// A root client of machine `m`'s system-wide ferryd.
async fn manager(m: &SystemMachine) -> Manager {
    Manager::connect_with(ConnectOptions {
        socket: m.env.socket.clone(),
        ..ConnectOptions::default()
    })
    .await
    .expect("connect to the machine's ferryd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nginx, apt-ftparchive, dpkg-deb: .ci/run runs it"]
async fn apt_fleet_four_machines_get_every_package_and_the_origin_sends_each_about_once() {
    let w = World::new(4, true, "100mbit", &packages(4, 8), 1);
    for (i, m) in w.machines.iter().enumerate() {
        let mgr = manager(m).await;
        for (_, other) in w.machines.iter().enumerate().filter(|(j, _)| *j != i) {
            peer_in_state(
                &mgr,
                &format!("{}:{PEER_PORT}", other.host.ip),
                PeerState::Up,
            )
            .await;
        }
    }
    for (i, run) in w.apt_get_everywhere(&["update"]).iter().enumerate() {
        assert_ok(run, &format!("apt-get update on machine {i}"));
        assert!(run.output.contains("ferry+http://"), "{}", run.output);
    }
    let mut args = vec!["install", "--download-only"];
    args.extend(w.names());
    for (i, run) in w.apt_get_everywhere(&args).iter().enumerate() {
        assert_ok(
            run,
            &format!("apt-get install --download-only on machine {i}"),
        );
    }
    for i in 0..w.machines.len() {
        w.assert_archived(i);
        w.assert_apts_worker_did_it(i);
    }
    let one_machine: u64 = w.packages.iter().map(|p| p.deb.len() as u64).sum();
    let by_package = w.origin_bytes_by_package();
    let sent: u64 = by_package.values().sum();
    eprintln!(
        "the origin sent {sent} bytes of packages to four machines: {:.3} × one machine's",
        sent as f64 / one_machine as f64
    );
    assert!(
        sent * 4 <= one_machine * 5,
        "the origin sent {sent} bytes of packages to four machines, more than 1.25 × one \
         machine's {one_machine}: {by_package:?}"
    );
    for p in &w.packages {
        let s = by_package.get(&p.file_name).copied().unwrap_or(0);
        assert!(
            s < 2 * p.deb.len() as u64,
            "{} went out {s} bytes for {}: fetched twice",
            p.file_name,
            p.deb.len()
        );
    }
}

/// The part file of `file_name` in `partial/` (ferry's `.NAME.ferry-JOB-N.part`) and its
/// size.
fn part_file(partial: &Path, file_name: &str) -> Option<u64> {
    let prefix = format!(".{file_name}.ferry-");
    std::fs::read_dir(partial)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nginx, apt-ftparchive, dpkg-deb: .ci/run runs it"]
async fn apt_fleet_ferryd_killed_mid_download_and_apt_finishes_once_it_is_back() {
    // 16 MiB over 16 Mbit/s: about 8 s, time to kill ferryd in the middle.
    let mut w = World::new(1, false, "16mbit", &packages(1, 16), 2);
    assert_ok(&w.apt_get(0, &["update"]), "apt-get update");
    let p = w.packages[0].clone();
    let size = p.deb.len() as u64;
    let partial = w.roots[0].archives().join("partial");
    let ns = w.machines[0].host.ns.clone();
    let env = w.machines[0].socket_env();
    let install = {
        let root = &w.roots[0];
        let mut cmd = root.apt_get_command(&ns, &env, &["install", "--download-only", &p.name]);
        cmd.spawn().expect("run apt-get install")
    };
    // Three fifths of the package on disk (a download started over would cost the origin
    // 1.6 × the package): ferryd goes, every process of it, at once.
    let had = wait_until(DEADLINE, "three fifths of the package in partial/", || {
        part_file(&partial, &p.file_name).filter(|&n| n >= size * 3 / 5)
    });
    w.machines[0].kill();
    w.machines[0].restart();
    let out = tokio::task::spawn_blocking(move || install.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "apt-get install ended badly after ferryd came back:\n{output}\nferryd:\n{}",
        w.machines[0].log()
    );
    w.assert_archived(0);
    let sent = w.origin_bytes_by_package()[&p.file_name];
    assert!(
        sent < size + size / 2,
        "the origin sent {sent} bytes for a {size}-byte package after ferryd was killed with \
         {had} bytes on disk: the download restarted instead of resuming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nginx, apt-ftparchive, dpkg-deb: .ci/run runs it"]
async fn apt_fleet_a_corrupted_package_is_apts_hash_error_and_nothing_lands() {
    let w = World::new(1, false, "200mbit", &packages(2, 2), 3);
    assert_ok(&w.apt_get(0, &["update"]), "apt-get update");
    // pkg-1 goes bad on the origin after the index was made: same length, other bytes.
    let bad = &w.packages[1];
    let mut corrupted = bad.deb.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    w.origin
        .put(&format!("debian/{}", bad.pool_path), &corrupted);
    let run = w.apt_get(0, &["install", "--download-only", "pkg-1"]);
    assert!(
        !run.ok,
        "apt-get succeeded with a corrupted package:\n{}",
        run.output
    );
    assert!(
        run.output.contains("Hash Sum mismatch"),
        "apt does not report the hash mismatch:\n{}",
        run.output
    );
    assert!(
        run.output.contains(&repo::received_sha256_line(&corrupted)),
        "apt shows the received file's SHA-256:\n{}",
        run.output
    );
    let (archived, partial) = w.roots[0].archived_files();
    assert_eq!(archived, Vec::<String>::new(), "nothing in archives/");
    assert_eq!(
        partial,
        Vec::<String>::new(),
        "nothing in archives/partial/"
    );
    // The good package still comes.
    let run = w.apt_get(0, &["install", "--download-only", "pkg-0"]);
    assert_ok(&run, "apt-get install of the intact package");
    assert_eq!(
        std::fs::read(w.roots[0].archives().join(&w.packages[0].file_name)).unwrap(),
        w.packages[0].deb
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, iproute2, nginx, apt-ftparchive, dpkg-deb: .ci/run runs it"]
async fn apt_fleet_apt_interrupted_mid_download_and_run_again_resumes_the_job() {
    let w = World::new(1, false, "16mbit", &packages(1, 16), 4);
    assert_ok(&w.apt_get(0, &["update"]), "apt-get update");
    let p = w.packages[0].clone();
    let size = p.deb.len() as u64;
    let partial = w.roots[0].archives().join("partial");
    let m = &w.machines[0];
    let mut install = w.roots[0]
        .apt_get_command(
            &m.host.ns,
            &m.socket_env(),
            &["install", "--download-only", &p.name],
        )
        .spawn()
        .expect("run apt-get install");
    let had = wait_until(DEADLINE, "three fifths of the package in partial/", || {
        part_file(&partial, &p.file_name).filter(|&n| n >= size * 3 / 5)
    });
    // The user presses Ctrl-C: apt and its method get SIGINT (one process group).
    // SAFETY: kill(2) on the process group of the apt-get this test started.
    unsafe {
        libc::kill(-(install.id() as i32), libc::SIGINT);
    }
    let status = install.wait().unwrap();
    assert!(!status.success(), "apt-get was interrupted");
    assert!(
        part_file(&partial, &p.file_name).is_some(),
        "the job keeps its bytes in partial/ for the next run"
    );
    let run = w.apt_get(0, &["install", "--download-only", &p.name]);
    assert_ok(&run, "apt-get install run again");
    w.assert_archived(0);
    let sent = w.origin_bytes_by_package()[&p.file_name];
    assert!(
        sent < size + size / 2,
        "the origin sent {sent} bytes for a {size}-byte package, apt interrupted with {had} \
         bytes on disk: the second run started over instead of resuming"
    );
}
