//! Network namespaces for tests that need a network of their own: a client namespace and
//! a server namespace joined by a veth pair (10.77.0.1 ↔ 10.77.0.2, the client's default
//! route through the server), optionally shaped with `tc tbf`, and nginx serving a folder
//! in the server namespace. Everything is removed when the [`NetLab`] (and the [`Nginx`])
//! is dropped, also when the test fails. Needs root, `ip`, `tc` and `nginx`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The client's address on the veth pair.
pub const CLIENT_ADDR: &str = "10.77.0.1";
/// The server's address on the veth pair.
pub const SERVER_ADDR: &str = "10.77.0.2";
const CLIENT_DEV: &str = "vc";
const SERVER_DEV: &str = "vs";
/// The subnet of the veth pair.
const SUBNET: &str = "10.77.0.0/24";

/// Runs `program args`, panicking with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair; deleted on drop.
#[derive(Debug)]
pub struct NetLab {
    /// The client namespace's name.
    pub client: String,
    /// The server namespace's name.
    pub server: String,
}

impl NetLab {
    /// Creates `ferry-TAG-PID-N-c` and `…-s`, the veth pair, addresses, loopbacks up,
    /// and the client's default route via the server.
    pub fn create(tag: &str) -> NetLab {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let base = format!(
            "ferry-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let lab = NetLab {
            client: format!("{base}-c"),
            server: format!("{base}-s"),
        };
        // Built before the commands, so a failure below still deletes what was made.
        run("ip", &["netns", "add", &lab.client]);
        run("ip", &["netns", "add", &lab.server]);
        run(
            "ip",
            &[
                "-n",
                &lab.client,
                "link",
                "add",
                CLIENT_DEV,
                "type",
                "veth",
                "peer",
                "name",
                SERVER_DEV,
                "netns",
                &lab.server,
            ],
        );
        for (ns, dev, addr) in [
            (&lab.client, CLIENT_DEV, CLIENT_ADDR),
            (&lab.server, SERVER_DEV, SERVER_ADDR),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", "dev", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "dev", "lo", "up"]);
        }
        lab.add_default_route();
        lab
    }

    fn add_default_route(&self) {
        run(
            "ip",
            &[
                "-n",
                &self.client,
                "route",
                "replace",
                "default",
                "via",
                SERVER_ADDR,
            ],
        );
    }

    /// Shapes the server's sending side (what the client downloads) with a token bucket:
    /// `rate` (tc syntax, e.g. `40mbit`) and a queue that holds `latency` (e.g. `200ms`)
    /// of data: the queue that fills is the delay a delay-based sender or receiver sees.
    pub fn shape_downlink(&self, rate: &str, latency: &str) {
        run(
            "tc",
            &[
                "-n",
                &self.server,
                "qdisc",
                "replace",
                "dev",
                SERVER_DEV,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kb",
                "latency",
                latency,
            ],
        );
    }

    /// Shapes the client's sending side (what the client uploads) as
    /// [`NetLab::shape_downlink`] shapes the server's.
    pub fn shape_uplink(&self, rate: &str, latency: &str) {
        run(
            "tc",
            &[
                "-n",
                &self.client,
                "qdisc",
                "replace",
                "dev",
                CLIENT_DEV,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kb",
                "latency",
                latency,
            ],
        );
    }

    /// Makes the client send to the server with TCP congestion control `algorithm`, as
    /// [`NetLab::set_server_congestion_control`] does for the server.
    pub fn set_client_congestion_control(&self, algorithm: &str) {
        run(
            "ip",
            &[
                "-n",
                &self.client,
                "route",
                "replace",
                SUBNET,
                "dev",
                CLIENT_DEV,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                CLIENT_ADDR,
                "congctl",
                "lock",
                algorithm,
            ],
        );
    }

    /// Makes the server send to the client with TCP congestion control `algorithm` (e.g.
    /// `cubic`), whatever the machine's default: a route attribute (`congctl lock`),
    /// since a namespace other than the first may only pick the allowed algorithms as
    /// its default.
    pub fn set_server_congestion_control(&self, algorithm: &str) {
        run(
            "ip",
            &[
                "-n",
                &self.server,
                "route",
                "replace",
                SUBNET,
                "dev",
                SERVER_DEV,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                SERVER_ADDR,
                "congctl",
                "lock",
                algorithm,
            ],
        );
    }

    /// Takes the client's link down (its routes go with it) or up again (with its
    /// default route), as a laptop losing and finding its network.
    pub fn set_client_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        run(
            "ip",
            &["-n", &self.client, "link", "set", "dev", CLIENT_DEV, state],
        );
        if up {
            self.add_default_route();
        }
    }

    /// A command that runs `program` in the client namespace.
    pub fn in_client(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client])
            .arg(program.as_ref());
        cmd
    }

    /// A command that runs `program` in the server namespace.
    pub fn in_server(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.server])
            .arg(program.as_ref());
        cmd
    }

    /// The prefix that runs a program in the client namespace (for
    /// [`crate::TestEnv::start_daemon_wrapped`]).
    pub fn client_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.client.clone(),
        ]
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// nginx serving a folder on port 80 of the server namespace, and taking uploads (`PUT`,
/// any size) under `/up/` into its own temporary folder; stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// Its configuration, logs and temporary folders.
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in `lab`'s server namespace serving `root` at
    /// `http://10.77.0.2/`; returns once the client namespace gets an answer (bounded
    /// to 20 s).
    pub fn start(lab: &NetLab, root: &Path) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("ferry-nginx-")
            .tempdir()
            .expect("nginx folder");
        let conf = dir.path().join("nginx.conf");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 sendfile on;\n  default_type application/octet-stream;\n  \
                 server {{\n    listen {SERVER_ADDR}:80;\n    root {};\n    \
                 location /up/ {{\n      root {d};\n      dav_methods PUT;\n      \
                 create_full_put_path on;\n      client_max_body_size 0;\n    }}\n  }}\n}}\n",
                root.display()
            ),
        )
        .expect("write nginx.conf");
        let child = lab
            .in_server("nginx")
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; user root;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (Debian package nginx)");
        let mut nginx = Nginx { child, _dir: dir };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}) at start: is it installed (Debian package nginx)?");
            }
            let ok = lab
                .in_client("curl")
                .args(["-s", "-o", "/dev/null", "-m", "2"])
                .arg(format!("http://{SERVER_ADDR}/"))
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return nginx;
            }
            assert!(Instant::now() < end, "nginx did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of `name` in the served folder.
    pub fn url(name: &str) -> String {
        format!("http://{SERVER_ADDR}/{name}")
    }

    /// A URL under `/up/` that takes a `PUT` of `name`.
    pub fn upload_url(name: &str) -> String {
        format!("http://{SERVER_ADDR}/up/{name}")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file of `len` pseudo-random bytes in `dir`, returned with its path.
pub fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, crate::random_bytes(len, seed)).expect("write the test file");
    path
}
