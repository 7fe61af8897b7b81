//! A machine as the Debian package sets one up: the system-wide ferryd (`ferryd
//! --system`: the root broker, a worker per user, `_apt`'s among them, and with peer
//! caching the cache process as `_ferry`) in a namespace of its own, on the test's own
//! socket, store and configuration. Its processes form a process group, so that a test
//! can kill all of them at once (SIGKILL), as a crash would.

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{target_dir_bin, TestEnv};

use crate::peer_cache_kit::Host;

/// A running system-wide ferryd on a host.
pub struct SystemMachine {
    pub env: TestEnv,
    pub host: Host,
    config: PathBuf,
    child: Option<Child>,
}

/// The `[peers]` section of a machine of a fleet: certificates in `certs`, the other
/// machines' `ip:port` as static peers.
pub fn peers_section(certs: &Path, port: u16, others: &[String]) -> String {
    let peers: Vec<String> = others.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[peers]\nenabled = true\nlisten_address = \"0.0.0.0\"\nport = {port}\n\
         discovery = \"static\"\nstatic_peers = [{}]\nlookup_timeout = \"3s\"\n\
         probe_interval = \"300ms\"\nmax_upload_rate = 0\nca_cert = \"{c}/ca.pem\"\n\
         node_cert = \"{c}/node.pem\"\nnode_key = \"{c}/node.key\"\n",
        peers.join(", "),
        c = certs.display()
    )
}

impl SystemMachine {
    /// Writes `config` (after `mode = "system"`) and starts the daemon; returns once its
    /// socket answers.
    pub fn start(host: &Host, config: &str) -> SystemMachine {
        let env = TestEnv::new();
        // Workers run as their users (`_apt`) and the cache process as `_ferry`: they
        // must reach the socket and the store below this folder.
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = env.dir.path().join("ferryd.toml");
        std::fs::write(&path, format!("mode = \"system\"\n{config}")).unwrap();
        let mut m = SystemMachine {
            env,
            host: host.clone(),
            config: path,
            child: None,
        };
        m.restart();
        m
    }

    /// Starts its ferryd (again), in a process group of its own.
    pub fn restart(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env.log_path())
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host.ns])
            .arg(target_dir_bin("ferryd"))
            .arg("--system")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.envs())
            .env("RUST_LOG", "ferryd=debug")
            .env("NO_COLOR", "1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ferryd --system in its namespace");
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

    /// Kills every process of its ferryd (broker, workers, cache process) with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group this test started (its leader's pid).
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
            // The workers and the cache process are gone once nobody answers on the
            // socket's lock: wait (bounded) until no process of the group is left.
            let end = Instant::now() + Duration::from_secs(20);
            // SAFETY: kill with signal 0 only asks whether the group still has members.
            while unsafe { libc::kill(-(c.id() as i32), 0) } == 0 {
                assert!(Instant::now() < end, "ferryd's processes outlived SIGKILL");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// What apt's method needs to find this daemon (`FERRY_SOCKET`).
    pub fn socket_env(&self) -> Vec<(String, String)> {
        vec![(
            "FERRY_SOCKET".to_string(),
            self.env.socket.to_string_lossy().into_owned(),
        )]
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.env.log_path()).unwrap_or_default()
    }
}

impl Drop for SystemMachine {
    fn drop(&mut self) {
        self.kill();
    }
}
