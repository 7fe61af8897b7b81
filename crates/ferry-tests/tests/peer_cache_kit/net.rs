//! A private LAN for one test: network namespaces joined by a bridge (which lives in a
//! namespace of its own, so the host's network is never touched), each host with an
//! address in 10.99.0.0/24. Every namespace is deleted when the [`Lan`] is dropped, even
//! when the test panics; deleting a namespace removes its veth, and the bridge goes with
//! its namespace.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespaces made by this process, numbered so that parallel tests never collide.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One machine of the LAN: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
}

/// The bridge and the hosts on it.
pub struct Lan {
    prefix: String,
    bridge_ns: String,
    namespaces: Vec<String>,
}

impl Lan {
    /// A bridge with no hosts yet.
    pub fn new() -> Lan {
        let prefix = format!(
            "fpc{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let bridge_ns = format!("{prefix}-br");
        let mut lan = Lan {
            prefix,
            bridge_ns: bridge_ns.clone(),
            namespaces: Vec::new(),
        };
        ip(&["netns", "add", &bridge_ns]);
        lan.namespaces.push(bridge_ns.clone());
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        lan
    }

    /// A namespace of its own with only its loopback up (for tests on 127.0.0.1).
    pub fn loopback_only(&mut self, name: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Host {
            ns,
            ip: "127.0.0.1".into(),
        }
    }

    /// A new host on the bridge, at 10.99.0.`n`.
    pub fn host(&mut self, name: &str, n: u8) -> Host {
        let host = self.loopback_only(name);
        let port = format!("v{n}");
        ip(&[
            "-n",
            &host.ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.bridge_ns,
        ]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "up"]);
        let addr = format!("10.99.0.{n}");
        ip(&[
            "-n",
            &host.ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
        Host { ip: addr, ..host }
    }
}

/// Limits what `host` sends on its LAN link to `rate` (`tc tbf`, e.g. `100mbit`): a slow
/// origin, so that downloads last long enough for a swarm to form. The limit goes with
/// the host's namespace.
pub fn shape(host: &Host, rate: &str) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &host.ns, "tc", "qdisc", "add", "dev", "eth0", "root",
        ])
        .args(["tbf", "rate", rate, "burst", "128kb", "latency", "100ms"])
        .output()
        .expect("run tc (iproute2)");
    assert!(
        out.status.success(),
        "tc qdisc add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
