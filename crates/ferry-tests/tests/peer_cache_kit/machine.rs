//! A machine of the fleet: a real `ferryd` with its own state, cache and socket, run in
//! a namespace with `ip netns exec` (its Unix socket lives in the shared file system, so
//! the test talks to it directly), and fleets made with the real `ferry peers` commands.

use std::fs::OpenOptions;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_client::{ConnectOptions, Manager};
use ferry_testkit::{target_dir_bin, TestEnv};

use super::net::Host;

/// A fleet CA made with `ferry peers ca new`, and node certificates issued by it.
pub struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    /// `ferry peers ca new DIR/ca`.
    pub fn new() -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("ferry-fleet-")
            .tempdir()
            .unwrap();
        let out = Command::new(target_dir_bin("ferry"))
            .args(["peers", "ca", "new"])
            .arg(dir.path().join("ca"))
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry peers ca new: {out:?}");
        Fleet { dir }
    }

    /// `ferry peers cert issue --ca DIR/ca NAME --out DIR/NAME`: the folder with
    /// `ca.pem`, `node.pem` and `node.key`.
    pub fn issue(&self, name: &str) -> PathBuf {
        let out_dir = self.dir.path().join(name);
        let out = Command::new(target_dir_bin("ferry"))
            .args(["peers", "cert", "issue", "--ca"])
            .arg(self.dir.path().join("ca"))
            .arg(name)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry peers cert issue: {out:?}");
        out_dir
    }

    /// The CA's folder.
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `ferry peers cert revoke --ca DIR/ca DIR/NAME`, then the fleet's revocation list
    /// copied into the folder of every machine in `to` (what each machine's ferryd reads
    /// as its `crl` when it starts).
    pub fn revoke(&self, name: &str, to: &[&str]) {
        let out = Command::new(target_dir_bin("ferry"))
            .args(["peers", "cert", "revoke", "--ca"])
            .arg(self.dir.path().join("ca"))
            .arg(self.dir.path().join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry peers cert revoke: {out:?}");
        for m in to {
            std::fs::copy(
                self.dir.path().join("ca").join("crl.pem"),
                self.dir.path().join(m).join("crl.pem"),
            )
            .unwrap();
        }
    }

    /// `ferry peers cert renew --ca DIR/ca DIR/NAME --out DIR/NAME-renewed` (same key, or
    /// a new one), then the renewed folder's files copied over `DIR/NAME`'s, as the
    /// README says; that folder.
    pub fn renew(&self, name: &str, new_key: bool) -> PathBuf {
        let renewed = self.dir.path().join(format!("{name}-renewed"));
        // `renew` writes new files only: a second renewal gets a fresh folder.
        let _ = std::fs::remove_dir_all(&renewed);
        let mut cmd = Command::new(target_dir_bin("ferry"));
        cmd.args(["peers", "cert", "renew", "--ca"])
            .arg(self.dir.path().join("ca"))
            .arg(self.dir.path().join(name))
            .arg("--out")
            .arg(&renewed);
        if new_key {
            cmd.arg("--new-key");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "ferry peers cert renew: {out:?}");
        let node = self.dir.path().join(name);
        for f in ["ca.pem", "node.pem", "node.key"] {
            std::fs::copy(renewed.join(f), node.join(f)).unwrap();
        }
        node
    }
}

/// Keys of `[peers]` set for tests unless [`Setup::extra`] sets them: quick lookups and
/// checks, no rate limit.
const TEST_DEFAULTS: &[(&str, &str)] = &[
    ("lookup_timeout", "\"3s\""),
    ("probe_interval", "\"300ms\""),
    ("max_upload_rate", "0"),
];

/// How a machine is set up.
pub struct Setup<'a> {
    pub name: &'a str,
    /// Its certificate folder (from [`Fleet::issue`]).
    pub certs: &'a Path,
    /// `mdns`, `static` or `both`.
    pub discovery: &'a str,
    /// `host:port` of the peers it always asks.
    pub static_peers: Vec<String>,
    /// The peer port.
    pub port: u16,
    /// More lines for `[peers]` (`cache_size = "3MiB"`, …).
    pub extra: &'a str,
}

/// A running ferryd on a host.
pub struct Machine {
    pub env: TestEnv,
    pub host: Host,
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
}

impl Machine {
    /// Writes its `ferryd.toml` and starts it; returns once its socket answers.
    pub fn start(host: &Host, setup: Setup<'_>) -> Machine {
        let env = TestEnv::new();
        let config = env.dir.path().join("ferryd.toml");
        let peers: Vec<String> = setup
            .static_peers
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect();
        let c = setup.certs.display();
        let text = format!(
            "[peers]\nenabled = true\nlisten_address = \"{ip}\"\nport = {port}\n\
             discovery = \"{disc}\"\nstatic_peers = [{peers}]\n\
             ca_cert = \"{c}/ca.pem\"\nnode_cert = \"{c}/node.pem\"\nnode_key = \"{c}/node.key\"\n\
             crl = \"{c}/crl.pem\"\n\
             {defaults}{extra}\n",
            ip = if host.ip == "127.0.0.1" {
                "127.0.0.1"
            } else {
                "0.0.0.0"
            },
            port = setup.port,
            disc = setup.discovery,
            peers = peers.join(", "),
            extra = setup.extra,
            defaults = TEST_DEFAULTS
                .iter()
                .filter(|(key, _)| !setup.extra.contains(key))
                .map(|(key, value)| format!("{key} = {value}\n"))
                .collect::<String>(),
        );
        std::fs::write(&config, text).unwrap();
        let mut m = Machine {
            env,
            host: host.clone(),
            port: setup.port,
            child: None,
            config,
        };
        m.restart();
        m
    }

    /// Starts its ferryd (again).
    pub fn restart(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env.log_path())
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host.ns])
            .arg(target_dir_bin("ferryd"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.envs())
            .env("RUST_LOG", "ferryd=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ferryd in its namespace");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ferryd exited ({status}); log:\n{}", self.log());
            }
            if UnixStream::connect(&self.env.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < end,
                "ferryd did not answer within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills its ferryd (SIGKILL) in whatever it is doing.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `ip:port` of its peer port.
    pub fn peer_address(&self) -> String {
        format!("{}:{}", self.host.ip, self.port)
    }

    /// A client of its daemon.
    pub async fn manager(&self) -> Manager {
        Manager::connect_with(ConnectOptions {
            socket: self.env.socket.clone(),
            autostart: false,
            ..Default::default()
        })
        .await
        .expect("connect to the machine's ferryd")
    }

    /// Runs the real `ferry` command line against its daemon (`--socket`, no autostart);
    /// panics unless it succeeds; its standard output.
    pub fn ferry(&self, args: &[&str]) -> String {
        let out = Command::new(target_dir_bin("ferry"))
            .arg("--no-autostart")
            .arg("--socket")
            .arg(&self.env.socket)
            .args(args)
            .output()
            .expect("run ferry");
        assert!(
            out.status.success(),
            "ferry {args:?}: {out:?}; log:\n{}",
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.env.log_path()).unwrap_or_default()
    }

    /// A destination path in its files folder.
    pub fn file(&self, name: &str) -> String {
        self.env.files.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}
